"""The scanner on generated trees: hashes checked against an independent computation,
records, logs, unreadable entries, re-scans that skip unchanged files, bounded
concurrency, batching."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from async_db_client import DBClientFactory, DBConnectionError, DBInstance, FakeClock
from async_db_client.scanner import ScanCounters, scan, survey
from tests.support.waiting import PATIENCE

pytestmark = pytest.mark.asyncio

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
UNREADABLE_FILE = "secret.txt"
UNREADABLE_DIR = "locked"
AN_HOUR_AGO = time.time() - 3600


# ------------------------------------------------------------ independent hashing


def expected_hash(directory: bytes, left_out: set[bytes], unreadable: set[bytes]) -> str:
    """The Merkle hash as the scanner's docstring defines it, computed from scratch:
    bytes paths, lstat, whole-file reads; nothing shared with the scanner's code."""
    parts = []
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        if full in left_out:
            continue
        info = os.lstat(full)
        if stat.S_ISLNK(info.st_mode):
            kind, value = b"l", os.readlink(full)
        elif stat.S_ISDIR(info.st_mode):
            value = (
                b"unreadable"
                if full in unreadable
                else expected_hash(full, left_out, unreadable).encode()
            )
            kind = b"d"
        else:
            assert stat.S_ISREG(info.st_mode), full
            kind = b"f"
            if full in unreadable:
                value = b"unreadable"
            else:
                with open(full, "rb") as handle:
                    value = hashlib.sha256(handle.read()).hexdigest().encode()
        parts.append(kind + b"\0" + name + b"\0" + value + b"\0")
    return hashlib.sha256(b"".join(parts)).hexdigest()


# ---------------------------------------------------------------------- the tree


def age(root: Path) -> None:
    """Every mtime an hour old: nothing is "racily clean" (see scanner/cache.py)."""
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO), follow_symlinks=False)


class Tree:
    """A generated tree with every kind of entry the scanner must handle."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.left_out: set[bytes] = set()  # not hashed, not listed
        self.unreadable: set[bytes] = set()
        self.files = 0  # regular files the scanner should hash successfully
        root.mkdir()
        self.write("a.txt", b"hello\n")
        self.write("nested/g.txt", b"g" * 10)
        self.write("nested/deeper/deepest/big.bin", os.urandom(3 * 1024 * 1024 + 17))
        self.write("ünïcödé 日本/ß.txt", "grüße".encode())
        self.write("tab\tand\nnewline", b"odd names are names")
        (root / "empty").mkdir()
        os.symlink("a.txt", root / "link_to_a")
        os.symlink("nowhere/at/all", root / "dangling")
        os.symlink("nested", root / "dir_link")  # a link, never followed
        self.write(UNREADABLE_FILE, b"top secret", counted=False)
        (root / UNREADABLE_FILE).chmod(0)
        self.unreadable.add(os.fsencode(root / UNREADABLE_FILE))
        self.write(f"{UNREADABLE_DIR}/inside.txt", b"x", counted=False)
        (root / UNREADABLE_DIR).chmod(0)
        self.unreadable.add(os.fsencode(root / UNREADABLE_DIR))
        bad_name = os.path.join(os.fsencode(root), b"latin1-\xe9.txt")
        os.close(os.open(bad_name, os.O_CREAT | os.O_WRONLY, 0o644))
        self.left_out.add(bad_name)
        os.mkfifo(root / "pipe")
        self.left_out.add(os.fsencode(root / "pipe"))
        self.age()

    def write(self, relative: str, data: bytes, *, counted: bool = True) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files += counted

    def age(self) -> None:
        age(self.root)

    def expected(self, relative: str = "") -> str:
        return expected_hash(os.fsencode(self.root / relative), self.left_out, self.unreadable)

    def restore_permissions(self) -> None:
        for name in (UNREADABLE_FILE, UNREADABLE_DIR):
            (self.root / name).chmod(0o755)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tree]:
    generated = Tree(tmp_path / "tree")
    if AS_ROOT:
        # chmod does not stop root: make the same two paths fail the way they would.
        open_file, open_directory = survey.open_file, survey.open_directory

        def refuse_file(name: str, dir_fd: int | None) -> int:
            if name.endswith(UNREADABLE_FILE):
                raise PermissionError(13, "Permission denied", name)
            return open_file(name, dir_fd)

        def refuse_dir(path: str, *, follow: bool) -> int:
            if path.endswith(UNREADABLE_DIR):
                raise PermissionError(13, "Permission denied", path)
            return open_directory(path, follow=follow)

        monkeypatch.setattr(survey, "open_file", refuse_file)
        monkeypatch.setattr(survey, "open_directory", refuse_dir)
    yield generated
    generated.restore_permissions()


@pytest_asyncio.fixture
async def db(tmp_path: Path, clock: FakeClock) -> AsyncIterator[DBInstance]:
    config = {
        "database": {
            "remote_type": "sqlite",
            "remote_config": {"path": str(tmp_path / "hashes.db")},
            "core_type": "sqlite",
            "core_config": {"path": str(tmp_path / "hashes.db")},
        }
    }
    async with DBClientFactory(config, clock=clock).create_client() as client:
        yield client


# ------------------------------------------------------------------------ tests


async def test_hashes_match_an_independent_computation(tree: Tree, db: DBInstance) -> None:
    result = await scan(db, tree.root, concurrency=3, batch_size=2)
    assert result.root_hash == tree.expected()
    for relative in ("nested", "nested/deeper", "empty", "ünïcödé 日本"):
        record = await db.get_hash_record(str(tree.root / relative))
        assert record is not None and record.current_hash == tree.expected(relative), relative
    assert tree.expected("empty") == hashlib.sha256(b"").hexdigest()


async def test_records_list_children_and_skip_what_cannot_be_stored(
    tree: Tree, db: DBInstance
) -> None:
    result = await scan(db, tree.root)
    root = await db.get_hash_record(str(tree.root))
    assert root is not None
    assert root.dirs == ["empty", UNREADABLE_DIR, "nested", "ünïcödé 日本"]
    assert root.files == ["a.txt", UNREADABLE_FILE, "tab\tand\nnewline"]
    assert root.links == ["dangling", "dir_link", "link_to_a"]
    assert root.session_id == result.session_id
    # One record per readable directory (root, empty, nested and its two, the Unicode
    # one); the unreadable one is listed but has none.
    assert result.records_stored == result.counters.directories == 6
    assert await db.get_hash_record(str(tree.root / UNREADABLE_DIR)) is None
    assert await db.find_untracked_children() == [str(tree.root / UNREADABLE_DIR)]
    assert await db.find_orphaned_entries() == []
    counters = result.counters
    assert (counters.files, counters.links) == (tree.files + 1, 3)  # + the unreadable file
    assert counters.files_hashed == tree.files
    assert (counters.unreadable, counters.skipped) == (2, 2)  # file + dir; bad name + FIFO


async def test_session_is_logged_with_warnings(
    tree: Tree, db: DBInstance, caplog: pytest.LogCaptureFixture
) -> None:
    result = await scan(db, tree.root, site_id="site-7")
    logs = await db.get_logs(
        session_id_filter=result.session_id, order_by="log_id", order_direction="ASC"
    )
    assert logs[0].summary_message == f"scan started: {tree.root}"
    assert logs[-1].summary_message.startswith("scan finished: 6 dirs, ")
    warnings = [e.summary_message for e in logs if e.log_level == "WARNING"]
    assert len(warnings) == 2
    assert any(UNREADABLE_FILE in w and "cannot read file" in w for w in warnings)
    assert any(UNREADABLE_DIR in w and "cannot list directory" in w for w in warnings)
    assert {e.site_id for e in logs} == {"site-7"}
    assert sum(r.levelname == "WARNING" for r in caplog.records) == 2
    # With a core tier, the site reported its heartbeat and root hash.
    [site] = await db.get_sites()
    assert (site.site_id, site.root_hash, site.hash_record_count) == ("site-7", result.root_hash, 6)


async def test_rescan_skips_unchanged_files_and_rotates_on_change(
    tree: Tree, db: DBInstance, tmp_path: Path, clock: FakeClock
) -> None:
    cache = tmp_path / "scan-cache.db"
    first = await scan(db, tree.root, cache=cache)
    assert first.counters.files_hashed == tree.files and first.counters.files_cached == 0

    clock.advance(60)
    second = await scan(db, tree.root, cache=cache)
    assert second.root_hash == first.root_hash
    assert second.counters.files_hashed == 0
    assert second.counters.files_cached == tree.files
    assert second.counters.bytes_hashed == 0 < first.counters.bytes_hashed

    clock.advance(60)
    changed = tree.root / "nested" / "g.txt"
    changed.write_bytes(b"changed")
    third = await scan(db, tree.root, cache=cache)
    assert third.counters.files_hashed == 1
    assert third.root_hash == tree.expected() != first.root_hash
    record = await db.get_hash_record(str(tree.root / "nested"))
    assert record is not None
    assert record.prev_hash is not None and record.current_hash == tree.expected("nested")
    assert record.prev_dtg_latest is not None and record.current_dtg_first > record.prev_dtg_latest


async def test_a_file_changed_just_before_hashing_is_hashed_again(
    tree: Tree, db: DBInstance, tmp_path: Path
) -> None:
    cache = tmp_path / "scan-cache.db"
    (tree.root / "a.txt").write_bytes(b"just written")  # mtime: now, within the racy window
    await scan(db, tree.root, cache=cache)
    again = await scan(db, tree.root, cache=cache)
    assert again.counters.files_hashed == 1  # only the racily clean file
    assert again.root_hash == tree.expected()


def cached_names(cache: Path, directory: str) -> set[str]:
    conn = sqlite3.connect(cache)
    try:
        return {
            row[0] for row in conn.execute("SELECT name FROM files WHERE dir = ?", (directory,))
        }
    finally:
        conn.close()


async def test_deleted_files_are_forgotten_by_the_cache(
    tree: Tree, db: DBInstance, tmp_path: Path
) -> None:
    cache = tmp_path / "scan-cache.db"
    await scan(db, tree.root, cache=cache)
    (tree.root / "a.txt").unlink()
    after = await scan(db, tree.root, cache=cache)
    assert after.root_hash == tree.expected()
    names = cached_names(cache, str(tree.root))
    assert "a.txt" not in names and "tab\tand\nnewline" in names


async def test_a_damaged_cache_is_rebuilt(tree: Tree, db: DBInstance, tmp_path: Path) -> None:
    cache = tmp_path / "scan-cache.db"
    cache.write_bytes(b"this is not an SQLite database" * 100)
    result = await scan(db, tree.root, cache=cache)
    assert result.counters.files_hashed == tree.files
    assert (await scan(db, tree.root, cache=cache)).counters.files_hashed == 0


async def test_an_unusable_cache_only_costs_time(
    tree: Tree, db: DBInstance, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    cache = blocker / "scan-cache.db"  # its "directory" is a file: cannot be created
    first = await scan(db, tree.root, cache=cache)
    second = await scan(db, tree.root, cache=cache)
    assert first.root_hash == second.root_hash == tree.expected()
    assert second.counters.files_hashed == tree.files  # nothing remembered, all hashed
    warnings = [r.getMessage() for r in caplog.records if "going on without it" in r.getMessage()]
    assert len(warnings) == 2 and "cannot be opened" in warnings[0]


async def test_concurrency_is_bounded(
    tmp_path: Path, db: DBInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "wide"
    for d in range(6):
        for f in range(10):
            (root / f"d{d}").mkdir(parents=True, exist_ok=True)
            (root / f"d{d}" / f"f{f}").write_bytes(b"x" * f)
    active = peak = 0
    real = survey.open_file
    lock = threading.Lock()
    overlapped = threading.Event()

    def slow_open(name: str, dir_fd: int | None) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
            if active > 1:
                overlapped.set()
        # The first hashes wait for a second one to start beside them (no fixed pause
        # that a loaded machine may not fill): a scan that hashed one file at a time
        # would leave this waiting until the deadline, with peak 1.
        overlapped.wait(PATIENCE)
        with lock:
            active -= 1
        return real(name, dir_fd)

    monkeypatch.setattr(survey, "open_file", slow_open)
    # Small budgets: a thread call per directory and per batch of 3 files.
    monkeypatch.setattr(survey, "EXPLORE_ENTRIES", 1)
    monkeypatch.setattr(survey, "BATCH_FILES", 3)
    result = await scan(db, root, concurrency=3)
    assert result.counters.files_hashed == 60
    assert 1 < peak <= 3


async def test_records_are_written_in_batches(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "batched"
    for n in range(9):
        (root / f"d{n}").mkdir(parents=True)
    async with DBClientFactory(
        {"database": {"remote_type": "local"}}, clock=clock
    ).create_client() as db:
        sizes: list[int] = []
        bulk = db.insert_or_update_hashes

        async def counting(records: Any) -> Any:
            sizes.append(len(records))
            return await bulk(records)

        db.insert_or_update_hashes = counting  # type: ignore[method-assign]
        result = await scan(db, root, batch_size=4)
    assert sizes == [4, 4, 2] and result.records_stored == 10


def make_chain(top: str, depth: int) -> list[str]:
    """``top/d/d/.../d/leaf.txt``; os.makedirs and shutil.rmtree recurse, so: loops."""
    chain = [top + "/d" * level for level in range(depth + 1)]
    for directory in chain:
        os.mkdir(directory)
    with open(chain[-1] + "/leaf.txt", "wb") as handle:
        handle.write(b"leaf")
    return chain


async def test_a_tree_deeper_than_the_recursion_limit(tmp_path: Path, db: DBInstance) -> None:
    depth = 1100  # deeper than sys.getrecursionlimit(); 2,200+ bytes of path
    deep = str(tmp_path / "deep")
    chain = make_chain(deep, depth)
    try:
        result = await scan(db, deep)
    finally:
        os.unlink(chain[-1] + "/leaf.txt")
        for directory in reversed(chain):
            os.rmdir(directory)
    assert result.counters.directories == depth + 1
    # The reference, bottom up (a chain: each directory holds only the next one).
    leaf = hashlib.sha256(b"leaf").hexdigest().encode()
    value = hashlib.sha256(b"f\0leaf.txt\0" + leaf + b"\0").hexdigest()
    for _ in range(depth):
        value = hashlib.sha256(b"d\0d\0" + value.encode() + b"\0").hexdigest()
    assert result.root_hash == value


async def test_database_failures_raise_as_themselves(tree: Tree, clock: FakeClock) -> None:
    async with DBClientFactory(
        {"database": {"remote_type": "local"}}, clock=clock
    ).create_client() as db:

        async def down(records: Any) -> Any:
            raise DBConnectionError("the database went away")

        db.insert_or_update_hashes = down  # type: ignore[method-assign]
        with pytest.raises(DBConnectionError, match="went away"):
            await scan(db, tree.root, batch_size=1)


async def test_rejects_a_file_as_root_and_bad_arguments(tree: Tree, db: DBInstance) -> None:
    with pytest.raises(NotADirectoryError):
        await scan(db, tree.root / "a.txt")
    with pytest.raises(ValueError, match="concurrency"):
        await scan(db, tree.root, concurrency=0)
    with pytest.raises(ValueError, match="site"):
        await scan(db, tree.root, site_id="s" * 65)


async def test_exclusions_leave_names_out_of_hash_and_record(tree: Tree, db: DBInstance) -> None:
    result = await scan(db, tree.root, exclude=["nested", "*.txt"])
    tree.left_out |= {os.fsencode(tree.root / "nested"), os.fsencode(tree.root / "a.txt")}
    tree.left_out.add(os.fsencode(tree.root / UNREADABLE_FILE))
    tree.left_out.add(os.fsencode(tree.root / "ünïcödé 日本" / "ß.txt"))
    assert result.root_hash == tree.expected()
    root = await db.get_hash_record(str(tree.root))
    assert root is not None and "nested" not in root.dirs and root.files == ["tab\tand\nnewline"]


async def test_scans_run_side_by_side(tmp_path: Path, db: DBInstance) -> None:
    roots = []
    for n in range(3):
        root = tmp_path / f"side{n}"
        (root / "sub").mkdir(parents=True)
        (root / "sub" / "f").write_bytes(bytes([n]))
        roots.append(root)
    results = await asyncio.gather(*(scan(db, root) for root in roots))
    assert len({r.root_hash for r in results}) == 3
    assert all(r.records_stored == 2 for r in results)


# ------------------------------------------------------------ the pinned root hash


def pattern(size: int) -> bytes:
    """``size`` deterministic bytes (different for every size)."""
    return hashlib.shake_256(b"pinned tree %d" % size).digest(size)


def build_pinned_tree(root: Path) -> None:
    """A fixed tree: every kind of entry, empty files, sizes around 2 KiB (hashlib's
    GIL threshold), 64 KiB, 1 MiB and 4 MiB, a 9 MiB file, a wide directory of 300 small
    files, names that sort differently as UTF-16 and as code points."""
    files: dict[str, bytes] = {
        "a.txt": b"hello\n",
        "empty-file": b"",
        "nested/g.txt": b"g" * 10,
        "nested/deeper/deepest/big.bin": pattern(9 * 1024 * 1024 + 17),
        "ünïcödé 日本/ß.txt": "grüße".encode(),
        "tab\tand\nnewline": b"odd names are names",
        "sort/\U0001f600 emoji": b"astral",
        "sort/\uff5e fullwidth tilde": b"bmp",
        "sort/Z": b"upper",
        "sort/a": b"lower",
    }
    for size in (1, 2047, 2048, 2049, 65535, 65536, 65537):
        files[f"sizes/{size}"] = pattern(size)
    for size in (1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1, 4 * 1024 * 1024 + 1):
        files[f"sizes/{size}"] = pattern(size)
    for n in range(300):
        files[f"wide/f{n:03d}"] = pattern(n * 37)
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty-dir").mkdir()
    (root / "nested" / "empty-too").mkdir()
    os.symlink("a.txt", root / "link_to_a")
    os.symlink("nowhere/at/all", root / "dangling")
    os.symlink("nested", root / "dir_link")
    os.symlink(b"\xff-not-utf8", os.path.join(os.fsencode(root), b"raw_target"))
    os.mkfifo(root / "sizes" / "pipe")  # left out
    os.close(os.open(os.path.join(os.fsencode(root), b"latin1-\xe9"), os.O_CREAT, 0o644))


#: The root hash of build_pinned_tree, computed by the scanner before the batched
#: rewrite (commit b785048). The Merkle definitions must never change it.
PINNED_ROOT_HASH = "c806c12e493a30629e52a85d2b4192aff96638017c1bc5388b6226f713a2ccb6"
#: The same tree scanned with ``exclude=["wide", "*.bin"]``.
PINNED_EXCLUDED_HASH = "e455e492ea746dc5ed49c679d32180a71ae865ed0b0901f36a0ca3b5e9585623"


async def test_the_root_hash_of_a_fixed_tree_is_pinned(tmp_path: Path, clock: FakeClock) -> None:
    root = tmp_path / "pinned"
    build_pinned_tree(root)
    async with DBClientFactory(
        {"database": {"remote_type": "local"}}, clock=clock
    ).create_client() as db:
        full = await scan(db, root, concurrency=2)
        excluded = await scan(db, root, exclude=["wide", "*.bin"])
    assert (full.root_hash, excluded.root_hash) == (PINNED_ROOT_HASH, PINNED_EXCLUDED_HASH)
    assert full.counters.files == 300 + 10 + 11 and full.counters.skipped == 2
    left_out = {
        os.fsencode(root / "sizes" / "pipe"),
        os.path.join(os.fsencode(root), b"latin1-\xe9"),
    }
    assert expected_hash(os.fsencode(root), left_out, set()) == PINNED_ROOT_HASH


#: Budgets small enough that the pinned tree is split every way: a directory per call,
#: batches of 3 files, 3 KB "large" files read in 4 KiB chunks, groups of 2 directories.
TINY_BUDGETS = {
    "SMALL_FILE": 3000,
    "BATCH_BYTES": 5000,
    "BATCH_FILES": 3,
    "CHUNK": 4096,
    "EXPLORE_ENTRIES": 1,
    "GROUP_DIRS": 2,
}


@pytest.mark.parametrize("budgets", ["default", "tiny"])
@pytest.mark.parametrize("concurrency", [1, 3])
async def test_however_the_work_is_split_the_hashes_and_the_cache_are_the_same(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    budgets: str,
    concurrency: int,
) -> None:
    calls = {"explore": 0, "hash_batch": 0, "hash_large": 0}
    for name in calls:
        real = getattr(survey, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(survey, name, counted)
    if budgets == "tiny":
        for name, value in TINY_BUDGETS.items():
            monkeypatch.setattr(survey, name, value)
    root = tmp_path / "pinned"
    build_pinned_tree(root)
    age(root)
    cache = tmp_path / "scan-cache.db"
    async with DBClientFactory(
        {"database": {"remote_type": "local"}}, clock=clock
    ).create_client() as db:
        first = await scan(db, root, cache=cache, concurrency=concurrency)
        again = await scan(db, root, cache=cache, concurrency=concurrency)
        wide = await db.get_hash_record(str(root / "wide"))
    assert first.root_hash == again.root_hash == PINNED_ROOT_HASH
    assert first.counters.files_hashed == 321 == again.counters.files_cached
    assert again.counters.files_hashed == 0
    assert first.counters.bytes_hashed == first.counters.bytes_seen == again.counters.bytes_seen
    assert first.records_stored == again.records_stored == 10
    assert wide is not None and wide.files == [f"f{n:03d}" for n in range(300)]
    assert calls["hash_large"] == (3 if budgets == "default" else 226)  # files over SMALL_FILE
    if budgets == "tiny":
        assert calls["explore"] > 10 and calls["hash_batch"] > 10


async def test_cancelling_stops_the_threads_within_a_chunk_and_keeps_the_cache(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "big"
    root.mkdir()
    (root / "small.txt").write_bytes(b"small")
    (root / "big.bin").write_bytes(b"x" * (survey.SMALL_FILE + 1))
    cache = tmp_path / "scan-cache.db"
    monkeypatch.setattr(survey, "CHUNK", 4096)  # 257 chunks
    stops: list[threading.Event] = []
    real_large, real_read = survey.hash_large, survey._read_into

    def spy_large(path: str, name: str, rules: survey.Rules) -> survey.Done:
        stops.append(rules.stop)
        return real_large(path, name, rules)

    reads = 0
    reading = threading.Event()

    def held_read(fd: int, buffer: bytearray) -> int:
        nonlocal reads
        if stops:  # the large file: hold its first chunk until the scan is cancelled
            reads += 1
            reading.set()
            stops[0].wait(timeout=30)
        return real_read(fd, buffer)

    monkeypatch.setattr(survey, "hash_large", spy_large)
    monkeypatch.setattr(survey, "_read_into", held_read)
    async with DBClientFactory(
        {"database": {"remote_type": "local"}}, clock=clock
    ).create_client() as db:
        task = asyncio.ensure_future(scan(db, root, cache=cache))
        assert await asyncio.to_thread(reading.wait, 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stops[0].is_set() and reads == 1  # gave up right after the chunk it held
    assert cached_names(cache, str(root)) == {"small.txt"}  # committed on the way out


async def test_a_file_that_changes_while_read_is_hashed_again_next_time(
    tree: Tree, db: DBInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "scan-cache.db"
    target = tree.root / "a.txt"
    inode = target.stat().st_ino
    real_read = survey._read_into
    changed = False

    def changing_read(fd: int, buffer: bytearray) -> int:
        nonlocal changed
        if not changed and os.fstat(fd).st_ino == inode:
            changed = True
            with open(target, "ab") as handle:
                handle.write(b"more")
            os.utime(target, (AN_HOUR_AGO + 5, AN_HOUR_AGO + 5))  # changed, yet not racy
        return real_read(fd, buffer)

    monkeypatch.setattr(survey, "_read_into", changing_read)
    first = await scan(db, tree.root, cache=cache)
    again = await scan(db, tree.root, cache=cache)  # (changing_read changes a.txt once)
    assert first.counters.files_hashed == tree.files
    assert again.counters.files_hashed == 1  # only the file that changed while read
    assert again.root_hash == tree.expected()


class Recorder:
    """A progress reporter that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start(self, root: str) -> None:
        self.calls.append(("start", root))

    def update(self, counters: ScanCounters) -> None:
        self.calls.append(("update", dataclasses.replace(counters)))

    def stop(self, counters: ScanCounters) -> None:
        self.calls.append(("stop", dataclasses.replace(counters)))


async def test_progress_follows_the_work(tree: Tree, db: DBInstance) -> None:
    recorder = Recorder()
    result = await scan(db, tree.root, progress=recorder)
    kinds = [kind for kind, _ in recorder.calls]
    assert recorder.calls[0] == ("start", str(tree.root))
    assert kinds[-1] == "stop" and kinds.count("update") >= 1
    assert recorder.calls[-1][1] == result.counters
    seen = [counters.files for _, counters in recorder.calls[1:]]
    assert seen == sorted(seen) and seen[-1] == tree.files + 1
