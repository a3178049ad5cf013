"""``python -m async_db_client``: the command-line tool."""

from .cli import main

main()
