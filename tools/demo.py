"""`make demo`: the library doing its real job on this machine, with no server.

1. Scans a tree (``$DEMO_DIR``, default: this project) into the embedded SQLite store,
   twice: the second scan skips every unchanged file (timings printed).
2. Shows the record count, the slowest-changing and newest directories, the session's
   log lines and the health check.
3. Copies the tree to a temporary directory, scans the copy and declares the original's
   root hash its target; changes one file in the copy, rescans, and shows the rotated
   hashes and the priority list (the copy no longer matches its target).

Every step runs the real ``async-db-client`` command (in this process, to be quick) and
prints the command line first, so each can be repeated by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from async_db_client.cli import cli
from async_db_client.cli.settings import data_dir

PROJECT = Path(__file__).resolve().parent.parent
#: Left out of the demo's scans and copy: tool caches, VCS data, the virtualenv, and the
#: demo's own store (in the checkout, which is the tree scanned by default: its files
#: change between the two scans, so the root hash would too).
EXCLUDE = (
    ".git", ".venv", "__pycache__", "*_cache", ".hypothesis", "*.egg-info", "build", ".demo"
)
#: The demo's own scan cache, reset on every run so the first scan hashes everything.
DEMO_CACHE = "demo-scan-cache.db"
#: The demo's own store, inside the checkout: it leaves nothing (not even the temporary
#: copy's records) in the user's store. ASYNC_DB_CLIENT_DATA_DIR, if set, wins.
DEMO_STORE = PROJECT / ".demo"


def title(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def command(*args: str, quiet: bool = False) -> None:
    """Run ``async-db-client ARGS`` as a user would, showing the command line."""
    if not quiet:
        print(f"$ async-db-client {shlex.join(args)}", flush=True)
    try:
        cli.main(list(args), prog_name="async-db-client", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None


def query(*args: str) -> Any:
    """Run a command with ``--json`` and return its parsed output (nothing shown)."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        command(*args, "--json", quiet=True)
    return json.loads(captured.getvalue())


def scan(tree: Path, cache: Path, label: str) -> dict[str, Any]:
    args = ["scan", str(tree), "--cache", str(cache), "--no-progress"]
    for pattern in EXCLUDE:
        args += ["-x", pattern]
    print(f"$ async-db-client {shlex.join(args)}", flush=True)
    result: dict[str, Any] = query(*args)
    counters = result["counters"]
    print(
        f"  {label}: {counters['files']} files, {counters['directories']} directories; "
        f"{counters['files_hashed']} files hashed, {counters['files_cached']} unchanged "
        f"(skipped) in {result['seconds']:.3f}s -> root hash {result['root_hash'][:16]}…",
        flush=True,
    )
    return result


def file_to_change(tree: Path) -> Path:
    """A file of the copy to change: the first by name in a subdirectory (so the change
    shows in two records, the subdirectory's and the root's), else at the top."""
    candidates = []
    for directory, dirs, files in os.walk(tree):
        dirs.sort()
        candidates += [Path(directory, name) for name in sorted(files)]
    regular = [path for path in candidates if not path.is_symlink()]
    nested = [path for path in regular if path.parent != tree]
    if not (nested or regular):
        raise SystemExit(f"no file to change under {tree}")
    return (nested or regular)[0]


def main() -> None:
    started = time.monotonic()
    tree = Path(os.environ.get("DEMO_DIR") or PROJECT).resolve()
    os.environ.setdefault("ASYNC_DB_CLIENT_DATA_DIR", str(DEMO_STORE))
    store = data_dir()
    cache = store / DEMO_CACHE
    store.mkdir(parents=True, exist_ok=True)
    cache.unlink(missing_ok=True)
    configured = os.environ.get("ASYNC_DB_CLIENT_CONFIG")
    if configured:  # e.g. a PostgreSQL or MySQL configuration (see the README's CLI section)
        print(f"store: as configured in {configured} (ASYNC_DB_CLIENT_CONFIG)")
    else:
        print(f"embedded store: {store / 'hashes.db'} (SQLite; override: ASYNC_DB_CLIENT_DATA_DIR)")

    title(f"1. scan {tree}, then scan it again")
    first = scan(tree, cache, "first scan ")
    second = scan(tree, cache, "second scan")
    assert second["root_hash"] == first["root_hash"]
    speedup = first["seconds"] / max(second["seconds"], 1e-3)
    print(f"  the re-scan read {second['counters']['files_hashed']} files: {speedup:.1f}x faster")

    title("2. what the store holds")
    command("summary", "--top", "5")
    command("logs", "--session", second["session_id"], "--order", "asc")
    command("health")

    title("3. change one file in a copy, rescan, see the rotation")
    # A folder of this run's own: a fixed one was shared by every checkout's demo (and test
    # run) on the machine, and one run's clean-up deleted another's copy mid-scan.
    copy = Path(tempfile.mkdtemp(prefix=f"async_db_client-demo-{os.getuid()}-")) / tree.name
    shutil.copytree(tree, copy, symlinks=True, ignore=shutil.ignore_patterns(*EXCLUDE))
    try:
        before = scan(copy, cache, "copy      ")
        print("  the copy hashes like the original:", before["root_hash"] == first["root_hash"])
        command("set-target", str(copy), first["root_hash"])
        changed = file_to_change(copy)
        with changed.open("ab") as handle:
            handle.write(b"\n# changed by make demo\n")
        print(f"  appended a line to {changed}")
        after = scan(copy, cache, "rescan    ")
        print("  (files modified within 2 s of a scan are always hashed again: see")
        print("   async_db_client/scanner/cache.py; a file changed since is found either way)")
        command("get", str(changed.parent))
        if changed.parent != copy:
            command("get", str(copy))
        command("priority")
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    assert after["counters"]["files_hashed"] >= 1 and after["root_hash"] != before["root_hash"]
    elapsed = time.monotonic() - started
    print(f"\ndemo finished in {elapsed:.1f}s. Next: .venv/bin/async-db-client --help")
    if store == DEMO_STORE:
        print(f"(the demo's store: ASYNC_DB_CLIENT_DATA_DIR={store} async-db-client summary)")


if __name__ == "__main__":
    main()
