"""Scan a directory tree into hash records: the scanner behind `async-db-client scan`.

    python examples/scanner.py [PATH]        (default: this examples directory)

It hashes every file (SHA-256, streamed), computes a Merkle hash per directory, stores one
hash record per directory through the bulk call, logs the session, then scans again to
show that unchanged files are not read twice. Like the other examples it uses the
in-memory backend unless ASYNC_DB_CLIENT_EXAMPLE_CONFIG names a JSON config file.

The implementation lives in the package (``async_db_client.scanner``), so the installed
command-line tool can import it; this module re-exports it, so with examples/ on
``sys.path`` ``from scanner import scan`` works too.
"""

import asyncio
import sys
import tempfile
from pathlib import Path

from _config import example_config

from async_db_client import DBClientFactory
from async_db_client.scanner import ScanResult, make_progress, scan

__all__ = ["ScanResult", "main", "scan"]


async def main(root: Path) -> None:
    config = example_config(
        {"database": {"remote_type": "sqlite", "remote_config": {"path": "hashes.db"}}}
    )
    async with DBClientFactory(config).create_client() as db:
        with tempfile.TemporaryDirectory() as state:
            cache = Path(state) / "scan-cache.db"
            exclude = ["__pycache__"]  # Python writes there while this runs
            first = await scan(db, root, cache=cache, exclude=exclude, progress=make_progress())
            c = first.counters
            print(f"Scanned {first.root}: {c.directories} directories, {c.files} files, "
                  f"root hash {first.root_hash}")
            second = await scan(db, root, cache=cache, exclude=exclude)
            print(f"Second scan hashed {second.counters.files_hashed} of "
                  f"{second.counters.files} files (the others were unchanged)")
        record = await db.get_hash_record(str(first.root))
        print(f"Root record lists {len(record['dirs'])} dirs and {len(record['files'])} files")
        for entry in await db.get_logs(session_id_filter=first.session_id, order_direction="ASC"):
            print(f"Log: {entry['log_level']} {entry['summary_message']}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)))
