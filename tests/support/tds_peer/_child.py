"""Child-process side of ``TDSPeer``: runs the ``Engine`` and talks to the test process.

Frames on stdin/stdout: 4-byte big-endian length + pickle (both ends are this package,
started by the same user). Stray prints go to stderr, never into the frame stream.

child -> parent: ("ready", port) ("record", Request) ("call", id, Request) ("error", text)
                 ("trace", cid, direction, ptype, payload) ("sync_ack", n)
parent -> child: ("config", kwargs) ("reply", id, Reply | None) ("sync", n)
                 ("param_types", sql, [types]) ("stop",)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import struct
import sys
import threading
from typing import IO, Any

from .engine import Engine, normalize_sql
from .models import Reply, Request, ServerError

_LEN = struct.Struct(">I")
CALL_TIMEOUT = 120.0


def write_frame(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError
    (n,) = _LEN.unpack(head)
    data = stream.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


class PipeHost:
    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, list[Any]] = {}
        self._closed = False

    def send(self, obj: Any) -> None:
        with self._lock:
            write_frame(self._out, obj)

    def record(self, req: Request) -> None:
        self.send(("record", req))

    def error(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send(("error", text))

    def trace(self, cid: int, direction: str, ptype: int, payload: bytes) -> None:
        self.send(("trace", cid, direction, ptype, payload))

    def call(self, req: Request) -> Reply | None:
        call_id = next(self._ids)
        slot: list[Any] = [threading.Event(), None]
        with self._lock:
            if self._closed:
                return Reply(ServerError(50000, "tds_peer is shutting down"))
            self._pending[call_id] = slot
            write_frame(self._out, ("call", call_id, req))
        if not slot[0].wait(CALL_TIMEOUT):
            self.error(f"responder did not answer within {CALL_TIMEOUT}s: {req.sql!r}")
            return Reply(ServerError(50000, "tds_peer: the test process did not answer"))
        reply: Reply | None = slot[1]
        return reply

    def deliver(self, call_id: int, reply: Reply | None) -> None:
        with self._lock:
            slot = self._pending.pop(call_id, None)
        if slot is not None:
            slot[1] = reply
            slot[0].set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._pending.values())
            self._pending.clear()
        for slot in pending:
            slot[1] = Reply(ServerError(50000, "tds_peer is shutting down"))
            slot[0].set()


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed lands on stderr, not in the frame stream
    inp = sys.stdin.buffer
    kind, config = read_frame(inp)
    assert kind == "config"
    host = PipeHost(out)
    engine = Engine(host, **config)
    host.send(("ready", engine.port))
    try:
        while True:
            try:
                msg = read_frame(inp)
            except EOFError:
                break
            if msg[0] == "reply":
                host.deliver(msg[1], msg[2])
            elif msg[0] == "sync":
                host.send(("sync_ack", msg[1]))
            elif msg[0] == "param_types":
                engine.param_types[normalize_sql(msg[1])] = list(msg[2])
            elif msg[0] == "stop":
                break
    finally:
        host.close()
        engine.stop()
        with contextlib.suppress(OSError, ValueError):
            host.send(("bye",))
            out.close()


if __name__ == "__main__":
    main()
