"""A statement-level stand-in for SQL Server behind the recording TDS peer.

No SQL Server can run here. To run the pipeline contract suite through the real
Microsoft ODBC driver anyway, this emulator answers exactly the statements that
:class:`~async_db_client.dialects.tsql.TSQLDialect` emits for the pipeline tier (and
for migrations and health checks), keeping the tables in Python. It follows
transactions from the driver's transaction-manager requests: a BEGIN takes a snapshot,
a ROLLBACK restores it. Any statement it does not know gets SQL Server's error 2812, so
a dialect change that the emulator does not mirror fails loudly.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from async_db_client.dialects.tsql import TSQLDialect
from tests.support.tds_peer import Column, Reply, Request, ResultSet, ServerError

D = TSQLDialect()
UPDATE_COLUMNS = [
    Column("update_id", "bigint"),
    Column("site_id", "nvarchar(64)"),
    Column("path", "nvarchar(max)"),
    Column("requested_at", "datetime2(6)"),
    Column("hash_value", "nvarchar(128)"),
    Column("answered_at", "datetime2(6)"),
]


@dataclass
class Tables:
    updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    sites: dict[str, datetime] = field(default_factory=dict)
    completions: list[tuple[int, str, datetime]] = field(default_factory=list)
    versions: dict[tuple[str, int], str] = field(default_factory=dict)
    next_id: int = 1


class PipelineEmulator:
    """``TDSPeer(responder=emulator.respond, on_request=emulator.observe)``."""

    def __init__(self) -> None:
        self.tables = Tables()
        self._snapshots: dict[int, Tables] = {}
        self._lock = threading.Lock()
        self.ddl: list[str] = []
        self.handlers = {
            "SELECT 1": self._select_one,
            D.lock_migrations(): lambda r: Reply.rows([("ok", "int")], [(1,)]),
            D.unlock_migrations(): lambda r: Reply.rows([("result", "int")], [(0,)]),
            D.create_version_table(): self._ddl,
            D.current_version: self._current_version,
            D.record_version: self._record_version,
            D.pending_updates: self._pending,
            D.answer_updates: self._answer,
            D.insert_update: self._insert_update,
            D.official_sites: self._official_sites,
            D.official_site_exists: self._site_exists,
            D.insert_site: self._insert_site,
            D.insert_completion: self._insert_completion,
            D.completions(one_site=False): self._completions,
            D.completions(one_site=True): self._completions,
        }
        for migration in D.migrations("pipeline"):
            for statement in migration.statements:
                self.handlers[statement] = self._ddl

    # --------------------------------------------------------------- the peer's hooks

    def observe(self, request: Request) -> None:
        """Follow transactions: BEGIN snapshots, ROLLBACK restores, COMMIT forgets."""
        if request.kind != "tm":
            return
        with self._lock:
            conn = request.connection_id
            if request.tm == "rollback" and conn in self._snapshots:
                self.tables = self._snapshots.pop(conn)
            elif request.tm in ("commit", "rollback"):
                self._snapshots.pop(conn, None)
            if request.tm == "begin" or request.tm_begin_new:
                self._snapshots[conn] = copy.deepcopy(self.tables)

    def respond(self, request: Request) -> Reply | None:
        if not request.executes:
            return None  # sp_prepare of a long statement: the peer hands out the handle
        sql = request.qmark_sql
        handler = self.handlers.get(sql or "")
        if handler is None:
            return Reply(ServerError(2812, f"emulator: unknown statement {sql!r}"))
        with self._lock:
            return handler(request)

    # ------------------------------------------------------------------- statements

    def _select_one(self, request: Request) -> Reply:
        return Reply.rows([("one", "int")], [(1,)])

    def _ddl(self, request: Request) -> Reply:
        assert request.sql is not None
        self.ddl.append(request.sql)
        return Reply()

    def _current_version(self, request: Request) -> Reply:
        (tier,) = request.values
        versions = [v for (t, v) in self.tables.versions if t == tier]
        return Reply.rows([("version", "int")], [(max(versions) if versions else None,)])

    def _record_version(self, request: Request) -> Reply:
        tier, version, description, _applied = request.values
        if (tier, version) in self.tables.versions:
            return Reply(ServerError(2627, "Violation of PRIMARY KEY constraint", severity=14))
        self.tables.versions[(tier, version)] = description
        return Reply(1)

    def _row(self, update: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(update[c.name] for c in UPDATE_COLUMNS)

    def _pending(self, request: Request) -> Reply:
        pending = sorted(
            (u for u in self.tables.updates.values() if u["hash_value"] is None),
            key=lambda u: (u["requested_at"], u["update_id"]),
        )
        return Reply(ResultSet(UPDATE_COLUMNS, [self._row(u) for u in pending]))

    def _answer(self, request: Request) -> Reply:
        hash_value, answered_at, key = request.values
        changed = 0
        for update in self.tables.updates.values():
            if update["path_key"] == key and update["hash_value"] is None:
                update.update(hash_value=hash_value, answered_at=answered_at)
                changed += 1
        return Reply(changed)

    def _insert_update(self, request: Request) -> Reply:
        site_id, path, key, requested_at = request.values
        update_id = self.tables.next_id
        self.tables.next_id += 1
        self.tables.updates[update_id] = {
            "update_id": update_id,
            "site_id": site_id,
            "path": path,
            "path_key": key,
            "requested_at": requested_at,
            "hash_value": None,
            "answered_at": None,
        }
        return Reply.rows([("update_id", "bigint")], [(update_id,)])

    def _official_sites(self, request: Request) -> Reply:
        return Reply.rows([("site_id", "nvarchar(64)")], [(s,) for s in sorted(self.tables.sites)])

    def _site_exists(self, request: Request) -> Reply:
        (site,) = request.values
        return Reply.rows([("one", "int")], [(1,)] if site in self.tables.sites else [])

    def _insert_site(self, request: Request) -> Reply:
        site, registered_at = request.values
        if site in self.tables.sites:
            return Reply(
                ServerError(2627, "Violation of PRIMARY KEY constraint 'pk_pipeline_sites'", 1, 14)
            )
        self.tables.sites[site] = registered_at
        return Reply(1)

    def _insert_completion(self, request: Request) -> Reply:
        site, completed_at = request.values
        self.tables.completions.append((len(self.tables.completions) + 1, site, completed_at))
        return Reply(1)

    def _completions(self, request: Request) -> Reply:
        wanted = request.values[0] if request.values else None
        rows = sorted(
            (c for c in self.tables.completions if wanted is None or c[1] == wanted),
            key=lambda c: (c[2], c[0]),
        )
        return Reply.rows(
            [("site_id", "nvarchar(64)"), ("completed_at", "datetime2(6)")],
            [(site, at) for _, site, at in rows],
        )
