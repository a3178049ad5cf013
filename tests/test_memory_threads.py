"""The in-memory stores shared by several threads' event loops (the sync facade gives each
calling thread a loop and a client of its own, over the same in-memory data)."""

from __future__ import annotations

import threading
import time
from typing import Any

from async_db_client.backends.memory import MemoryRemoteStore
from async_db_client.sync import DBClientFactory

LOCAL = {"database": {"remote_type": "local", "core_type": "local"}}


def waiters_of(store: Any) -> int:
    return len(store._state._slot._waiters)  # white box: who waits for the write slot


def test_a_write_from_another_thread_waits_for_an_open_transaction() -> None:
    with DBClientFactory(LOCAL).create_client() as db:
        store = db.async_client.remote_db.store  # type: ignore[union-attr]
        assert isinstance(store, MemoryRemoteStore)
        inside, release = threading.Event(), threading.Event()

        def transaction() -> None:
            with db.transaction():
                assert db.insert_or_update_hash({"path": "/x", "current_hash": "a"})
                inside.set()
                assert release.wait(30)

        first = threading.Thread(target=transaction)
        first.start()
        assert inside.wait(30)
        second = threading.Thread(
            target=lambda: db.insert_or_update_hash({"path": "/x", "current_hash": "b"})
        )
        second.start()
        deadline = time.monotonic() + 30
        while waiters_of(store) != 1:  # the second write waits, on its own loop
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert db.get_hash_record("/x") is None  # reads see the committed state meanwhile
        release.set()
        first.join()
        second.join()
        record = db.get_hash_record("/x")
        assert record is not None and (record.current_hash, record.prev_hash) == ("b", "a")


def test_many_threads_writing_and_reading_lose_nothing() -> None:
    with DBClientFactory(LOCAL).create_client() as db:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(200):
                    assert db.insert_or_update_hash({"path": f"/w/{n}/{i}", "current_hash": "h"})
                    assert db.put_log({"summary_message": f"{n}/{i}"}) is not None
                    if i % 20 == 0:
                        db.find_untracked_children()  # reads whole dicts while others write
                        with db.transaction("core"):
                            db.put_site_heartbeat(f"site-{n}", hash_record_count=i)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert sum(1 for _ in db.iter_hash_records()) == 8 * 200
        assert len(db.get_logs()) == 8 * 200
        ids = [entry.log_id for entry in db.get_logs()]
        assert len(set(ids)) == len(ids)  # no id handed out twice
        assert db.get_hash_record_count() == 8 * 180
