"""The blocking facade: from scripts, from threads beside a running loop, never inside one."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import async_db_client
from async_db_client import PoolClosedError, SyncUsageError
from async_db_client.sync import DBClientFactory, DBInstance

ROOT = Path(__file__).resolve().parent.parent
ALL_LOCAL = {"database": {"remote_type": "local", "core_type": "local", "pipeline_type": "local"}}


def run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_plain_script_round_trip() -> None:
    result = run_script(
        """
        from async_db_client.sync import DBClientFactory
        with DBClientFactory({'database': {'remote_type': 'local'}}).create_client() as db:
            assert db.insert_or_update_hash({'path': '/a', 'current_hash': 'h', 'files': ['f']})
            record = db.get_hash_record('/a')
            print(record['files'], record.get('current_hash'))
        print('closed', db.closed)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['f'] h", "closed True"]
    assert result.stderr == ""


def test_forgotten_close_does_not_hang_the_interpreter() -> None:
    # The subprocess's timeout is the hang detector: exit at all is the point.
    result = run_script(
        """
        from async_db_client.sync import DBClientFactory
        db = DBClientFactory({'database': {'remote_type': 'local'}}).create_client()
        print(db.health_check())
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'local_db': True}"


def test_fork_child_gets_its_own_event_loop() -> None:
    result = run_script(
        """
        import os
        from async_db_client.sync import DBClientFactory
        db = DBClientFactory({'database': {'remote_type': 'local'}}).create_client()
        db.insert_or_update_hash({'path': '/parent', 'current_hash': 'p'})
        pid = os.fork()
        if pid == 0:
            # the child inherits the data (memory), not the parent's event loop thread
            ok = db.get_hash_record('/parent') is not None
            ok = ok and db.insert_or_update_hash({'path': '/child', 'current_hash': 'c'})
            db.close()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print('child', os.waitstatus_to_exitcode(status))
        print('parent sees child write', db.get_hash_record('/child') is not None)
        db.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["child 0", "parent sees child write False"]


def test_refuses_to_block_inside_a_running_loop() -> None:
    db = DBClientFactory(ALL_LOCAL).create_client()

    async def misuse() -> None:
        with pytest.raises(SyncUsageError, match="use the async API"):
            db.get_hash_record("/a")
        with pytest.raises(SyncUsageError), db.transaction():
            pass

    try:
        asyncio.run(misuse())
    finally:
        db.close()


def test_usable_from_a_thread_while_another_loop_runs() -> None:
    with DBClientFactory(ALL_LOCAL).create_client() as db:

        in_thread, loop_ran = threading.Event(), threading.Event()

        def blocking_work() -> int | None:
            db.insert_or_update_hash({"path": "/t", "current_hash": "h"})
            in_thread.set()
            # The caller's loop runs while this thread works (the facade never blocks it).
            assert loop_ran.wait(60)
            return db.put_log({"summary_message": "from a worker thread"})

        async def main() -> int | None:
            async def ticker() -> None:
                while True:
                    if in_thread.is_set():
                        loop_ran.set()
                    await asyncio.sleep(0.001)

            tick_task = asyncio.create_task(ticker())
            log_id = await asyncio.to_thread(blocking_work)
            tick_task.cancel()
            return log_id

        assert asyncio.run(main()) == 1
        assert db.get_single_field("/t", "current_hash") == "h"


def test_many_threads_share_one_client() -> None:
    errors: list[BaseException] = []
    with DBClientFactory(ALL_LOCAL).create_client() as db:

        def worker(n: int) -> None:
            try:
                for i in range(25):
                    assert db.insert_or_update_hash({"path": f"/w{n}/{i}", "current_hash": "h"})
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert all(db.get_hash_record(f"/w{n}/24") is not None for n in range(16))


def test_transaction_joins_calls_from_the_same_thread() -> None:
    with DBClientFactory(ALL_LOCAL).create_client() as db:
        with pytest.raises(RuntimeError), db.transaction():
            db.insert_or_update_hash({"path": "/rolled", "current_hash": "h"})
            assert db.get_hash_record("/rolled") is not None
            raise RuntimeError
        assert db.get_hash_record("/rolled") is None
        with db.transaction() as tx:
            tx.insert_or_update_hash({"path": "/kept", "current_hash": "h"})
        assert db.get_hash_record("/kept") is not None


def test_close_is_final_and_idempotent() -> None:
    db = DBClientFactory(ALL_LOCAL).create_client()
    assert db.health_check()["local_db"]
    db.close()
    db.close()
    with pytest.raises(PoolClosedError):
        db.get_hash_record("/a")


def test_errors_propagate_unchanged() -> None:
    with DBClientFactory(ALL_LOCAL).create_client() as db:
        with pytest.raises(ValueError, match="order_by"):
            db.get_logs(order_by="x; DROP TABLE remote_logs")
        with pytest.raises(NotImplementedError):
            DBClientFactory({"database": {}}).create_client().get_hash_record("/a")


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and name not in {"aclose", "close"}
    }


def test_facade_signatures_match_the_async_client() -> None:
    async_methods = _public_methods(async_db_client.DBInstance)
    sync_methods = _public_methods(DBInstance)
    assert set(async_methods) == set(sync_methods)
    for name, signature in async_methods.items():
        assert list(signature.parameters) == list(sync_methods[name].parameters), name
        for param, spec in signature.parameters.items():
            other = sync_methods[name].parameters[param]
            assert (spec.kind, spec.default) == (other.kind, other.default), f"{name}({param})"
