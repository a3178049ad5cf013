"""The command-line tool, ``async-db-client`` (also ``python -m async_db_client``).

* :mod:`.app`: the commands (Click), exit codes, error reporting.
* :mod:`.settings`: where the configuration comes from (precedence, embedded default).
* :mod:`.render`: tables and JSON output.
* :mod:`.backup`: ``export`` / ``import`` as streamed JSON Lines.
"""

from __future__ import annotations

import os
import sys

from .app import cli

__all__ = ["cli", "main"]


def main() -> None:
    """The console script's entry point."""
    try:
        cli(prog_name="async-db-client")
    except BrokenPipeError:
        # The reader of stdout went away (``... | head``): stop quietly, and keep Python
        # from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
