"""The directory scanner: hashes a tree and stores one hash record per directory.

::

    from async_db_client import DBClientFactory
    from async_db_client.scanner import scan

    async with DBClientFactory(config).create_client() as db:
        result = await scan(db, "/data", cache="scan-cache.db")
        print(result.root_hash, result.counters.files_hashed)

* :mod:`.merkle`: what the hashes are (the exact definition).
* :mod:`.walk`: the asynchronous walk, batching and logging.
* :mod:`.cache`: the per-file state that lets a re-scan skip unchanged files.
* :mod:`.progress`: progress bar / plain progress lines.
"""

from .cache import FileStateCache
from .merkle import UNREADABLE, directory_hash, hash_file
from .progress import ScanCounters, make_progress
from .walk import ScanResult, scan

__all__ = [
    "UNREADABLE",
    "FileStateCache",
    "ScanCounters",
    "ScanResult",
    "directory_hash",
    "hash_file",
    "make_progress",
    "scan",
]
