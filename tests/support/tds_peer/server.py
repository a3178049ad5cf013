"""``TDSPeer``: a recording fake SQL Server on 127.0.0.1 for tests through the real driver.

The TDS engine runs in a child Python process (standard library only, started from this
package) so that it keeps serving while the test process holds the GIL: pyodbc's
``fast_executemany`` calls SQLDescribeParam without releasing the GIL, and the driver then
waits for the server's answer to ``sp_describe_undeclared_parameters``. Recordings and
responder calls travel over the child's stdin/stdout; the responder runs in this process
(in the peer's reader thread), so it may close over test state.

Every request is recorded before its reply is written, and reading ``peer.requests`` first
syncs with the child, so a request is visible as soon as the client call that sent it
returns.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from ..waiting import PATIENCE, wait_until
from ._child import read_frame, write_frame
from .engine import normalize_sql
from .models import Reply, Request, ServerError, as_reply

Responder = Callable[[Request], Any]

DRIVER_NAME = "ODBC Driver 18 for SQL Server"


class PeerError(AssertionError):
    """The peer failed to parse something, or the responder raised (see ``TDSPeer.errors``)."""


class TDSPeer:
    """Loopback TDS 7.4 server that records what the driver sends and replies with canned data.

    ``responder(request) -> Reply | ResultSet | int | ServerError | None`` is called for every
    batch and RPC request that is not driver housekeeping; None means the default reply.
    Housekeeping (``request.housekeeping``: sp_datatype_info_100, sp_describe_undeclared_
    parameters, sp_unprepare, ...) is answered by the peer itself and only recorded.
    ``param_types`` maps statement text (with ``?`` or ``@Pn`` markers) to the T-SQL types
    that ``sp_describe_undeclared_parameters`` reports for it (used by ``fast_executemany``
    and for None parameters); unknown statements get ``nvarchar(4000)`` for every marker.
    With ``strict`` (default), leaving the ``with`` block raises ``PeerError`` if the peer
    recorded errors (parse failures, responder exceptions).
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        server_name: str = "TDSPEER",
        server_version: tuple[int, int, int] = (16, 0, 1000),
        language: str = "us_english",
        login_error: ServerError | None = None,
        param_types: dict[str, list[str]] | None = None,
        trace: bool = False,
        strict: bool = True,
        start_timeout: float = 30.0,
        on_request: Callable[[Request], None] | None = None,
    ) -> None:
        self.responder = responder
        # Sees every request (logins and TM requests too) in arrival order, before any
        # later request of the same connection is answered: e.g. to follow transactions.
        self.on_request = on_request
        self.host = "127.0.0.1"
        self.port = 0
        self.strict = strict
        self.errors: list[str] = []
        # (connection id, "in"/"out", packet type, payload) of every message, if trace=True
        self.trace: list[tuple[int, str, int, bytes]] = []
        self._config: dict[str, Any] = {
            "server_name": server_name,
            "server_version": tuple(server_version),
            "language": language,
            "login_error": login_error,
            "trace": trace,
            "param_types": dict(param_types or {}),
        }
        self._start_timeout = start_timeout
        self._rules: list[tuple[Callable[[Request], bool], Any]] = []
        self._requests: list[Request] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._dead = threading.Event()
        self._sync_ids = itertools.count(1)
        self._synced: set[int] = set()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> TDSPeer:
        if self._proc is not None:
            raise RuntimeError("already started")
        package = __name__.rsplit(".", 1)[0]  # e.g. "tests.support.tds_peer"
        root = Path(__file__).resolve().parents[package.count(".") + 1]
        code = (
            f"import sys; sys.path.insert(0, {str(root)!r}); "
            f"from {package}._child import main; main()"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self._reader = threading.Thread(target=self._read_loop, name="tds-peer-reader", daemon=True)
        self._reader.start()
        try:
            self._send(("config", self._config))
            if not self._ready.wait(self._start_timeout) or self._dead.is_set():
                raise RuntimeError("tds_peer child process did not start")
        except BaseException:
            self._shutdown()
            raise
        return self

    def stop(self) -> None:
        self._shutdown()
        if self.strict and self.errors:
            raise PeerError("tds_peer recorded errors:\n" + "\n".join(self.errors))

    def _shutdown(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._send(("stop",))
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._proc = None

    def __enter__(self) -> TDSPeer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        else:
            self._shutdown()

    # -- client-side helpers ----------------------------------------------------------------
    def connection_string(
        self,
        database: str = "testdb",
        user: str = "tester",
        password: str = "Secr3t!pw",
        *,
        driver: str = DRIVER_NAME,
        **extra: str | int,
    ) -> str:
        """A full ODBC connection string for the MS driver pointing at this peer."""

        def q(v: str | int) -> str:
            s = str(v)
            if any(c in s for c in ";{}= ") or s != s.strip():
                return "{" + s.replace("}", "}}") + "}"
            return s

        parts = {
            "DRIVER": "{" + driver + "}",
            "SERVER": f"{self.host},{self.port}",
            "DATABASE": q(database),
            "UID": q(user),
            "PWD": q(password),
            "Encrypt": "no",
            "TrustServerCertificate": "yes",
        }
        parts.update({k: q(v) for k, v in extra.items()})
        return ";".join(f"{k}={v}" for k, v in parts.items()) + ";"

    def set_param_types(self, sql: str, types: list[str]) -> None:
        """What sp_describe_undeclared_parameters reports for ``sql`` (``?`` or ``@Pn``)."""
        self._config["param_types"][normalize_sql(sql)] = list(types)
        if self._proc is not None:
            self._send(("param_types", sql, list(types)))
            self._sync()

    def on(self, match: str | re.Pattern[str] | Callable[[Request], bool], reply: Any) -> TDSPeer:
        """Canned answer: for batch/RPC requests whose SQL matches ``match`` (a regex searched
        in ``request.qmark_sql``, case-insensitive, or a predicate), reply with ``reply``
        (a ``Reply``, ``ResultSet``, rowcount ``int``, ``ServerError``, or a callable taking
        the request). Rules are tried in the order added, before the responder."""
        if callable(match) and not isinstance(match, re.Pattern):
            pred = match
        else:
            rx = re.compile(match, re.IGNORECASE) if isinstance(match, str) else match

            def pred(req: Request) -> bool:
                return req.qmark_sql is not None and rx.search(req.qmark_sql) is not None

        with self._cond:
            self._rules.append((pred, reply))
        return self

    # -- recordings -----------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        """Everything recorded so far, in arrival order (all connections)."""
        self._sync()
        with self._cond:
            return list(self._requests)

    def clear(self) -> None:
        self._sync()
        with self._cond:
            self._requests.clear()
            self.trace.clear()

    def of_kind(self, *kinds: str) -> list[Request]:
        return [r for r in self.requests if r.kind in kinds]

    def app_requests(self) -> list[Request]:
        """Batch and RPC requests that execute application statements: no housekeeping, no
        sp_prepare (its statement is recorded again by the sp_execute calls that run it)."""
        return [r for r in self.requests if r.executes and not r.housekeeping and r.sql is not None]

    def statements(self) -> list[str]:
        """SQL texts of the executed batch and RPC requests (see ``app_requests``)."""
        return [r.sql for r in self.app_requests() if r.sql is not None]

    def tm_ops(self) -> list[str]:
        """Transaction-manager operations in order: "begin", "commit", "rollback", ..."""
        return [r.tm for r in self.requests if r.kind == "tm" and r.tm is not None]

    def logins(self) -> list[Request]:
        return self.of_kind("login")

    def wait_for(
        self, predicate: Callable[[Request], bool], timeout: float = PATIENCE
    ) -> Request:
        """Wait until a matching request is recorded (e.g. an attention sent on cancel);
        returns at once when it is, so the generous default costs nothing."""
        return wait_until(
            lambda: next((r for r in self.requests if predicate(r)), None),
            timeout,
            what="a matching request recorded by the tds_peer",
        )

    def check(self) -> None:
        """Raise ``PeerError`` if the peer recorded errors so far."""
        self._sync()
        if self.errors:
            raise PeerError("tds_peer recorded errors:\n" + "\n".join(self.errors))

    # -- IPC ------------------------------------------------------------------------------------
    def _send(self, obj: Any) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("tds_peer is not running")
        with self._write_lock:
            write_frame(proc.stdin, obj)

    def _sync(self) -> None:
        """Barrier: every event the child sent before this call has been processed."""
        if self._proc is None or self._dead.is_set() or threading.current_thread() is self._reader:
            return
        n = next(self._sync_ids)
        try:
            self._send(("sync", n))
        except (OSError, ValueError, RuntimeError):
            return
        deadline = time.monotonic() + 30
        with self._cond:
            while n not in self._synced and not self._dead.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("tds_peer child did not answer a sync")
                self._cond.wait(left)
            self._synced.discard(n)

    def _read_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stream = proc.stdout
        try:
            while True:
                try:
                    msg = read_frame(stream)
                except (EOFError, OSError, ValueError):
                    break
                kind = msg[0]
                if kind == "record":
                    self._append(msg[1])
                elif kind == "call":
                    self._append(msg[2])
                    self._answer(msg[1], msg[2])
                elif kind == "sync_ack":
                    with self._cond:
                        self._synced.add(msg[1])
                        self._cond.notify_all()
                elif kind == "error":
                    self.errors.append(msg[1])
                elif kind == "trace":
                    self.trace.append(tuple(msg[1:]))
                elif kind == "ready":
                    self.port = msg[1]
                    self._ready.set()
                elif kind == "bye":
                    break
        finally:
            self._dead.set()
            self._ready.set()
            with self._cond:
                self._cond.notify_all()

    def _append(self, req: Request) -> None:
        if self.on_request is not None:
            try:
                self.on_request(req)
            except Exception:
                self.errors.append(f"on_request raised on {req!r}:\n{traceback.format_exc()}")
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    def _answer(self, call_id: int, req: Request) -> None:
        reply: Reply | None = None
        try:
            with self._cond:
                rules = list(self._rules)
            for pred, canned in rules:
                if pred(req):
                    value = canned(req) if callable(canned) else canned
                    reply = as_reply(value)
                    if reply is not None:
                        break
            if reply is None and self.responder is not None:
                reply = as_reply(self.responder(req))
        except Exception as exc:
            self.errors.append(f"responder raised on {req.sql!r}:\n{traceback.format_exc()}")
            reply = Reply(ServerError(50000, f"tds_peer responder raised {exc!r}"))
        try:
            self._send(("reply", call_id, reply))
        except Exception:
            self.errors.append(f"cannot send reply for {req.sql!r}:\n{traceback.format_exc()}")
            with contextlib.suppress(Exception):
                self._send(("reply", call_id, Reply(ServerError(50000, "unpicklable reply"))))
