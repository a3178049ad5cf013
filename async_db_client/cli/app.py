"""The ``async-db-client`` commands.

Exit codes: 0 success; 1 the operation failed (database unreachable or refusing, record
missing, records rejected, a tier unhealthy); 2 bad usage (options, arguments, the
configuration, malformed input); 130 interrupted (Ctrl-C). Failures print one line on
stderr, never a traceback. Every command that reads has ``--json``.

Tiers are named as in the configuration (``remote``, ``core``, ``pipeline``) in every
command's output, ``health`` included, whose library call keys them by the predecessor's
names (``local_db``, ``core_db``, ``pipeline_db``: its table shows those alongside).
"""

from __future__ import annotations

import asyncio
import difflib
import heapq
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from .. import __version__, telemetry
from ..client import DBClientFactory, DBInstance
from ..errors import AsyncDBClientError, ConfigurationError, DBConnectionError, InvalidInputError
from ..models import DashboardMetrics, HashRecord, SiteStatus, parse_model
from ..scanner import ScanResult, make_progress
from ..scanner import scan as scan_tree
from ..scanner.progress import human_bytes
from ..tiers import CoreRepository, PipelineRepository, RemoteRepository
from ..validation import LOG_ORDER_COLUMNS
from . import render
from .backup import BackupFormatError, export_jsonl, import_jsonl
from .metrics import serving_metrics
from .settings import Settings, load_settings

__all__ = ["cli"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Failed(click.ClickException):
    """The operation failed: one line on stderr, exit code 1."""

    exit_code = 1


class BadUsage(click.ClickException):
    """The invocation is wrong (configuration, input): one line on stderr, exit code 2."""

    exit_code = 2


class State:
    """The group's options, and the settings they lead to (loaded on first need)."""

    def __init__(self, config_file: str | None) -> None:
        self.config_file = config_file
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file)
            except ConfigurationError as exc:
                raise BadUsage(str(exc)) from None
        return self._settings


def run(work: Callable[[DBInstance], Awaitable[T]]) -> T:
    """Run ``work`` with a client on the configured database, in a fresh event loop.

    This library's errors become one-line failures (exit 1), bad input exit 2.
    """
    settings = click.get_current_context().find_object(State)
    assert settings is not None
    current = settings.settings

    async def main() -> T:
        async with DBClientFactory(current.config).create_client() as db:
            return await work(db)

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        raise  # the reader went away (``| head``): main() ends quietly
    except KeyboardInterrupt:
        # Ctrl-C: asyncio.run cancelled the work, which said how far it got (scan logs
        # it); exit as a shell does for SIGINT, not with Click's "Aborted!" and 1.
        raise click.exceptions.Exit(130) from None
    except (ConfigurationError, InvalidInputError, BackupFormatError) as exc:
        raise BadUsage(str(exc)) from None
    except DBConnectionError as exc:
        raise Failed(f"{exc} (configuration: {current.source})") from None
    except UnicodeDecodeError as exc:
        raise BadUsage(f"input is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except (AsyncDBClientError, NotImplementedError, OSError) as exc:
        raise Failed(str(exc) or type(exc).__name__) from None


def fail(message: str) -> NoReturn:
    raise Failed(message)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of tables."
)


# ------------------------------------------------------------------------ the group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    help="TOML configuration file (wins over $ASYNC_DB_CLIENT_CONFIG and the embedded default).",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log the library's activity: connects, retries, slow statements "
    "(-vv: every statement's duration, debug).",
)
@click.option(
    "--slow",
    type=click.FloatRange(0),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="With -v, log statements that take this long or more.",
)
@click.version_option(__version__, prog_name="async-db-client")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, verbose: int, slow: float) -> None:
    """Hash directory trees and query the hash-record database.

    Configuration, first found wins: --config FILE; the file named by
    $ASYNC_DB_CLIENT_CONFIG; the embedded default, a SQLite file in the per-user data
    directory ($ASYNC_DB_CLIENT_DATA_DIR, else $XDG_DATA_HOME/async_db_client, else
    ~/.local/share/async_db_client).
    """
    ctx.obj = State(config_file)
    _configure_logging(verbose)
    telemetry.log_statements(slow if verbose else None)


class _Stderr:
    """Whatever sys.stderr is at write time (a live progress display swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_handler: logging.Handler | None = None


def _configure_logging(verbose: int) -> None:
    global _handler
    library = logging.getLogger("async_db_client")
    if _handler is not None:  # called again in one process (the demo, tests)
        library.removeHandler(_handler)
    _handler = logging.StreamHandler(_Stderr())
    _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if verbose:
        library.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    else:
        # Quiet by default: failures are reported once, by the command. The scanner's
        # warnings (unreadable files) are shown, though.
        library.setLevel(logging.WARNING)
        _handler.addFilter(lambda record: record.name == "async_db_client.scanner")
    library.addHandler(_handler)


# ------------------------------------------------------------------------ scanning


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-x",
    "--exclude",
    multiple=True,
    metavar="PATTERN",
    help="Leave out names matching PATTERN (fnmatch, at any depth). Repeatable.",
)
@click.option(
    "--cache",
    "cache_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scan cache file [default: <data dir>/scan-cache.db].",
)
@click.option("--no-cache", is_flag=True, help="Hash every file; do not use the scan cache.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=8,
    show_default=True,
    help="Threads listing and hashing at once.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    help="Records stored per database call.",
)
@click.option("--site-id", help="Site id for the logs and the core tier [default: host name].")
@click.option("--progress/--no-progress", default=True, help="Show progress on stderr.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on this port during the scan (needs the prometheus extra).",
)
@click.option(
    "--metrics-address", default="127.0.0.1", show_default=True, help="Address to serve them on."
)
@json_option
@click.pass_obj
def scan(
    state: State,
    path: Path,
    exclude: tuple[str, ...],
    cache_file: Path | None,
    no_cache: bool,
    concurrency: int,
    batch_size: int,
    site_id: str | None,
    progress: bool,
    metrics_port: int | None,
    metrics_address: str,
    as_json: bool,
) -> None:
    """Hash the tree under PATH and store one hash record per directory."""
    cache = None if no_cache else (cache_file or state.settings.scan_cache)
    reporter = make_progress(sys.stderr, enabled=progress and not as_json)

    async def work(db: DBInstance) -> ScanResult:
        with serving_metrics(db, metrics_port, metrics_address):
            return await scan_tree(
                db,
                stored_path(str(path)),
                cache=cache,
                concurrency=concurrency,
                batch_size=batch_size,
                exclude=exclude,
                progress=reporter,
                site_id=site_id or socket.gethostname()[:64] or None,
            )

    result = run(work)
    if as_json:
        render.emit_json(result.as_dict())
    else:
        c = result.counters
        render.pairs_table(
            f"scan of {result.root}",
            {
                "session": render.Whole(result.session_id),
                "root hash": render.whole(result.root_hash),
                "directories": c.directories,
                "files": f"{c.files} ({c.files_hashed} hashed, {c.files_cached} unchanged)",
                "links": c.links,
                "bytes": f"{human_bytes(c.bytes_seen)} ({human_bytes(c.bytes_hashed)} read)",
                "unreadable": c.unreadable,
                "left out": c.skipped,
                "records": f"{result.records_stored} stored, {result.records_rejected} rejected",
                "seconds": f"{result.seconds:.2f}",
            },
        )
    if result.root_hash is None:
        fail(f"{result.root} could not be read")


# ------------------------------------------------------------------------ records

#: How far up from a path without a record to look for a recorded ancestor to suggest
#: from: one indexed lookup each, never a scan of the store.
MAX_ANCESTORS = 32


def stored_path(typed: str) -> str:
    """A path typed on the command line as scan stores it: absolute, normalised (no
    trailing slash, no ``.`` or ``..``), links kept (the scanner's own rule)."""
    return os.path.abspath(typed)


async def no_record(db: DBInstance, path: str, typed: str) -> str:
    """The error for ``path`` (resolved from ``typed``), with what is stored near it."""
    message = f"no record for {path}"
    # The same path in another spelling, as put or another tool may have stored it.
    for other in dict.fromkeys((typed, path + "/")):
        if other != path and await db.get_hash_record(other) is not None:
            return f"{message}; did you mean {other}?"
    # The nearest recorded ancestor, and what it lists under the next name down.
    ancestor = path
    below: list[str] = []  # the names from the ancestor down to path
    for _ in range(MAX_ANCESTORS):
        ancestor, name = os.path.split(ancestor)
        if not name:
            return message  # reached the root
        below.insert(0, name)
        record = await db.get_hash_record(ancestor)
        if record is not None:
            return f"{message}{await _listed_near(db, record, below)}"
    return message


async def _listed_near(db: DBInstance, ancestor: HashRecord, below: list[str]) -> str:
    """What ``ancestor``'s record says of ``below[0]``: a file, a directory without a
    record, or the recorded directory with the closest name (with ``below[1:]``, or
    alone); "" if nothing useful."""
    child = below[0]
    for kind, names in (("file", ancestor.files), ("link", ancestor.links)):
        if child in names:
            return f"; {ancestor.path} lists {child} as a {kind} (records are per directory)"
    if child in ancestor.dirs:
        return f"; {ancestor.path} lists {child}, which has no record (see untracked)"
    for close in difflib.get_close_matches(child, ancestor.dirs, n=1):
        deeper = os.path.join(ancestor.path, close, *below[1:])
        for candidate in dict.fromkeys((deeper, os.path.join(ancestor.path, close))):
            if await db.get_hash_record(candidate) is not None:
                return f"; did you mean {candidate}?"
    return ""


@cli.command()
@click.argument("path")
@json_option
def get(path: str, as_json: bool) -> None:
    """Show the hash record stored for PATH (resolved as scan stores it: absolute)."""
    stored = stored_path(path)

    async def work(db: DBInstance) -> tuple[HashRecord | None, str]:
        record = await db.get_hash_record(stored)
        return record, "" if record else await no_record(db, stored, path)

    record, missing = run(work)
    if as_json:
        render.emit_json(record.model_dump() if record else None)
    elif record is not None:
        render.record_table(record)
    if record is None:
        fail(missing)


@cli.command()
@json_option
def put(as_json: bool) -> None:
    """Store the hash record given as JSON on stdin (an object, or a list of them).

    Rotation applies as for any write: a new hash moves the old one to prev_hash.
    """
    try:
        value = json.loads(sys.stdin.read())
    except json.JSONDecodeError as exc:
        raise BadUsage(f"stdin is not JSON: {exc}") from None
    if isinstance(value, dict):
        try:
            record = parse_model(HashRecord, value, "record")
        except InvalidInputError as exc:
            raise BadUsage(str(exc)) from None
        run(lambda db: db.insert_or_update_hash(record))
        stored, rejected = 1, []
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise BadUsage(f"stdin: list item #{index} is not a JSON object")
        result = run(lambda db: db.insert_or_update_hashes(value))
        stored, rejected = result.stored, [r.model_dump() for r in result.rejected]
    else:
        raise BadUsage("stdin must hold a JSON object or a list of objects")
    if as_json:
        render.emit_json({"stored": stored, "rejected": rejected})
    else:
        render.note(f"stored {stored} record(s)")
        for reject in rejected:
            where = reject["path"] or "no path"
            render.note(f"rejected #{reject['index']} ({where}): {reject['reason']}")
    if rejected:
        fail(f"{len(rejected)} record(s) rejected")


@cli.command("set-target")
@click.argument("path")
@click.argument("target_hash", required=False)
def set_target(path: str, target_hash: str | None) -> None:
    """Set the hash PATH should have (omit TARGET_HASH to clear it); see priority."""
    stored = stored_path(path)

    async def work(db: DBInstance) -> str:
        found = await db.set_target_hash(stored, target_hash)
        return "" if found else await no_record(db, stored, path)

    missing = run(work)
    if missing:
        fail(missing)
    what = f"set to {target_hash}" if target_hash else "cleared"
    render.note(f"target hash of {stored} {what}")


def show_paths(paths: list[str], what: str, as_json: bool) -> None:
    if as_json:
        render.emit_json(paths)
    else:
        render.table(f"{what} ({len(paths)})", ("path",), ((p,) for p in paths), empty=f"no {what}")


def paths_command(
    name: str,
    query: Callable[[DBInstance], Awaitable[list[str]]],
    what: str,
    help_text: str,
) -> click.Command:
    """The command ``name``: the paths ``query`` lists, as :func:`show_paths` shows them."""

    def command(as_json: bool) -> None:
        show_paths(run(query), what, as_json)

    command.__doc__ = help_text
    return cli.command(name)(json_option(command))


priority = paths_command(
    "priority",
    DBInstance.get_priority_updates,
    "priority updates",
    "Paths whose target hash is set and differs from their current hash.",
)
orphans = paths_command(
    "orphans",
    DBInstance.find_orphaned_entries,
    "orphaned records",
    "Records whose parent's record does not list them.",
)
untracked = paths_command(
    "untracked",
    DBInstance.find_untracked_children,
    "untracked children",
    "Directories a record lists that have no record of their own.",
)


@dataclass(slots=True)
class _Ranked:
    rank: tuple[int, str]
    item: dict[str, Any]

    def __lt__(self, other: _Ranked) -> bool:
        return self.rank > other.rank  # inverted: heapq's min-heap becomes a max-heap


class _Top:
    """The ``size`` items of smallest rank pushed so far, in bounded memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.heap: list[_Ranked] = []  # heap[0]: the largest rank kept

    def push(self, rank: tuple[int, str], item: dict[str, Any]) -> None:
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, _Ranked(rank, item))
        elif rank < self.heap[0].rank:
            heapq.heapreplace(self.heap, _Ranked(rank, item))

    def items(self) -> list[dict[str, Any]]:
        return [entry.item for entry in sorted(self.heap, key=lambda e: e.rank)]


@cli.command()
@click.option("--top", type=click.IntRange(1, 1000), default=5, show_default=True)
@json_option
def summary(top: int, as_json: bool) -> None:
    """Count the records; show the slowest-changing and the newest directories.

    Slowest-changing: the current hash has held the longest (oldest current_dtg_first).
    Newest: the current hash appeared most recently. Streams every record once.
    """

    async def work(db: DBInstance) -> dict[str, Any]:
        count = 0
        oldest, newest = _Top(top), _Top(top)
        async for record in db.iter_hash_records():
            count += 1
            first = record.current_dtg_first or 0
            item = {"path": record.path, "current_hash": record.current_hash, "since": first}
            oldest.push((first, record.path), item)
            newest.push((-first, record.path), item)
        return {"records": count, "slowest_changing": oldest.items(), "newest": newest.items()}

    data = run(work)
    if as_json:
        render.emit_json(data)
        return
    render.out().print(f"hash records: {data['records']}")
    if not data["records"]:
        return
    for key, title in (("slowest_changing", "slowest-changing"), ("newest", "newest")):
        render.table(
            f"{title} directories",
            ("path", "current hash", "since"),
            (
                (i["path"], render.short_hash(i["current_hash"]), render.epoch_text(i["since"]))
                for i in data[key]
            ),
        )


# ---------------------------------------------------------------------------- logs


@cli.command()
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True)
@click.option("--all", "everything", is_flag=True, help="No limit.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--order-by", type=click.Choice(LOG_ORDER_COLUMNS), default="timestamp", show_default=True
)
@click.option(
    "--order",
    type=click.Choice(["ASC", "DESC"], case_sensitive=False),
    default="DESC",
    show_default=True,
)
@click.option("--session", help="Only this session's entries.")
@click.option("--older-than", type=click.IntRange(0), metavar="DAYS", help="Only older entries.")
@json_option
def logs(
    limit: int,
    everything: bool,
    offset: int,
    order_by: str,
    order: str,
    session: str | None,
    older_than: int | None,
    as_json: bool,
) -> None:
    """Show log entries, filtered, ordered and paged."""
    entries = run(
        lambda db: db.get_logs(
            None if everything else limit, offset, order_by, order, session, older_than
        )
    )
    if as_json:
        render.emit_json([e.model_dump(mode="json") for e in entries])
    else:
        render.log_table(f"log entries ({len(entries)})", entries)


@cli.command("prune-logs")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(0),
    required=True,
    metavar="DAYS",
    help="Delete entries older than DAYS days.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@json_option
def prune_logs(days: int, dry_run: bool, as_json: bool) -> None:
    """Delete log entries older than a number of days (in pages of 1,000)."""
    page_size = 1000

    async def work(db: DBInstance) -> int:
        total = 0
        while True:
            page = await db.get_logs(
                page_size, total if dry_run else 0, "log_id", "ASC", None, days
            )
            if dry_run:
                total += len(page)
            elif page:
                total += (await db.delete_log_entries([e.log_id or 0 for e in page]))[0]
            if len(page) < page_size:
                return total

    count = run(work)
    if as_json:
        render.emit_json({"deleted": 0 if dry_run else count, "matching": count})
    else:
        verb = "would delete" if dry_run else "deleted"
        render.out().print(f"{verb} {count} log entries older than {days} days")


# ----------------------------------------------------------------- core, operations


@cli.command()
@json_option
def dashboard(as_json: bool) -> None:
    """The core tier's dashboard: sites by sync and liveness state, then every site.

    --json: the eleven counters, and "sites", a list of every site's status.
    """

    async def work(db: DBInstance) -> tuple[DashboardMetrics, list[SiteStatus]]:
        return await db.get_dashboard_content(), await db.get_sites()

    metrics, sites = run(work)
    if as_json:
        render.emit_json({**metrics.model_dump(), "sites": sites})
        return
    render.pairs_table("dashboard", metrics.model_dump())
    # The root hash cut short: with it whole, a row per site cannot fit 80 columns.
    render.table(
        f"sites ({len(sites)})",
        ("site", "last heartbeat", "records", "root hash", "root hash computed"),
        (
            (
                s.site_id,
                render.time_text(s.last_heartbeat),
                s.hash_record_count,
                render.short_hash(s.root_hash),
                render.time_text(s.root_hash_at),
            )
            for s in sites
        ),
        empty="no sites",
    )


#: health_report()'s keys (the predecessor's names) to the tiers' names.
TIER_OF_HEALTH_KEY = {
    repo.health_key: repo.tier for repo in (RemoteRepository, CoreRepository, PipelineRepository)
}


@cli.command()
@json_option
@click.pass_obj
def health(state: State, as_json: bool) -> None:
    """Check that every configured tier answers (exit 1 if one does not).

    --json: {"remote": true, "core": false, ...}, by tier as migrate names them.
    """
    reports = run(lambda db: db.health_report())
    failures = {_tier_name(key): failure for key, failure in reports.items()}
    if as_json:
        render.emit_json({tier: failure is None for tier, failure in failures.items()})
    else:
        render.table(
            "health",
            ("tier", "status", "health_check() key"),
            (
                (_tier_name(key), "ok" if failure is None else "FAILED", key)
                for key, failure in reports.items()
            ),
        )
        render.out().print(f"configuration: {state.settings.source}")
    # One line: tiers that failed alike (one server for two tiers) share their reason.
    tiers_by_reason: dict[str, list[str]] = {}
    for tier, failure in failures.items():
        if failure is not None:
            tiers_by_reason.setdefault(failure, []).append(tier)
    if tiers_by_reason:
        groups = (f"{', '.join(tiers)}: {reason}" for reason, tiers in tiers_by_reason.items())
        fail("unhealthy: " + "; ".join(groups))


def _tier_name(key: str) -> str:
    """``local_db`` -> ``remote``; a server's key ``local_db@host:port`` -> ``remote@host:port``."""
    base, at, server = key.partition("@")
    return TIER_OF_HEALTH_KEY[base] + at + server


@cli.command()
@json_option
def migrate(as_json: bool) -> None:
    """Bring every configured tier's schema up to date."""
    versions = run(lambda db: db.migrate())
    if as_json:
        render.emit_json(versions)
    else:
        render.table("schema versions", ("tier", "version"), versions.items())


@cli.command("pool-stats")
@json_option
def pool_stats(as_json: bool) -> None:
    """Connection-pool statistics (after a health check has opened the pools)."""

    async def work(db: DBInstance) -> dict[str, dict[str, object]]:
        await db.health_check()
        return {name: stats.as_dict() for name, stats in db.pool_stats().items()}

    stats = run(work)
    if as_json:
        render.emit_json(stats)
        return
    columns: tuple[str, ...] = (
        "size",
        "idle",
        "in_use",
        "acquired_total",
        "connections_opened",
        "retries",
    )
    if any(values["role"] for values in stats.values()):  # a tier with several servers
        columns = ("role", *columns)
    render.table(
        "connection pools",
        ("pool", *columns),
        ((name, *(values[c] for c in columns)) for name, values in stats.items()),
        empty="no connection pools",
    )


@cli.command()
@json_option
def topology(as_json: bool) -> None:
    """The servers of tiers configured with `hosts`: roles, lag, deny-listing, pools."""
    described = run(lambda db: db.topology())
    if as_json:
        render.emit_json(described)
        return
    if not described:
        render.note("no tier is configured with several hosts")
        return
    for tier, info in described.items():
        writer = info["writer"] or "NO SERVER"
        render.table(
            f"{tier}: {info['mode']}, {info['read_consistency']}, writes go to {writer}",
            ("host", "role", "lag", "serves", "deny-listed", "pool in use/size", "why"),
            (
                (
                    host["address"],
                    host["role"],
                    "" if host["lag_s"] is None else f"{host['lag_s']:g}s",
                    ", ".join(host["serves"]) or "nothing",
                    f"{host['deny_listed_s']:.1f}s" if host["deny_listed_s"] else "",
                    f"{host['pool']['in_use']}/{host['pool']['size']}",
                    host["why"] or "",
                )
                for host in info["hosts"]
            ),
        )


# -------------------------------------------------------------------------- outbox


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def outbox(ctx: click.Context, as_json: bool) -> None:
    """The remote tier's outbox: what waits, what was given up on.

    Without a subcommand: its counts and the dead entries (writes the database refused
    for good). `outbox retry` queues dead entries again, `outbox drop` deletes them.
    """
    if ctx.invoked_subcommand is not None:
        return

    async def work(db: DBInstance) -> tuple[Any, list[Any]]:
        return await db.outbox_stats(), await db.outbox_dead_entries(limit=1000)

    stats, dead = run(work)
    if stats is None:
        fail("no outbox is configured (remote_config.outbox.path)")
    if as_json:
        render.emit_json({"stats": stats.as_dict(), "dead": [vars(d) for d in dead]})
        return
    render.pairs_table("outbox", stats.as_dict())
    if not dead:
        render.note("no dead entries")
        return
    render.table(
        "dead entries",
        ("seq", "kind", "path or summary", "attempts", "died", "error"),
        ((d.seq, d.kind, d.subject, d.attempts, d.died_at.isoformat(timespec="seconds"),
          d.error) for d in dead),
    )  # fmt: skip


def _dead_selection(seqs: tuple[int, ...], everything: bool) -> list[int] | None:
    if bool(seqs) == everything:
        raise BadUsage("name the dead entries (their seq numbers), or give --all")
    return None if everything else list(seqs)


def dead_entries_arguments(command: F) -> F:
    """SEQ... and --all (``seqs``, ``everything``): the dead entries a command acts on,
    for :func:`_dead_selection`."""
    command = click.option("--all", "everything", is_flag=True, help="Every dead entry.")(
        command
    )
    return click.argument("seqs", nargs=-1, type=int)(command)


@outbox.command("retry")
@dead_entries_arguments
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the queue to be replayed.",
)
def outbox_retry(seqs: tuple[int, ...], everything: bool, wait: float) -> None:
    """Queue dead entries again, behind what is queued, and replay (SEQ as `outbox`
    lists them); exit 1 if writes still wait after --wait seconds."""
    chosen = _dead_selection(seqs, everything)

    async def work(db: DBInstance) -> tuple[int, int]:
        moved = await db.outbox_retry_dead(chosen)
        return moved, await db.flush_outbox(wait)

    moved, left = run(work)
    render.note(f"queued again: {moved}; still waiting: {left}")
    if left:
        fail(f"{left} writes still wait in the outbox (see `async-db-client outbox`)")


@outbox.command("drop")
@dead_entries_arguments
def outbox_drop(seqs: tuple[int, ...], everything: bool) -> None:
    """Delete dead entries for good (SEQ as `outbox` lists them)."""
    chosen = _dead_selection(seqs, everything)
    dropped = run(lambda db: db.outbox_drop_dead(chosen))
    render.note(f"dropped: {dropped}")


# -------------------------------------------------------------------------- backup


@cli.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (complete or not at all) [default: stdout].",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True)
def export(output: Path | None, batch_size: int) -> None:
    """Write every hash record and log entry as JSON Lines (streamed)."""
    if output is None:
        counts = run(lambda db: export_jsonl(db, sys.stdout, batch_size=batch_size))
    else:
        partial = output.with_name(output.name + ".partial")

        async def work(db: DBInstance) -> dict[str, int]:
            try:
                with partial.open("w", encoding="utf-8") as stream:
                    done = await export_jsonl(db, stream, batch_size=batch_size)
                os.replace(partial, output)
            except OSError as exc:
                # Named as the user gave it: the partial file is ours, not theirs.
                raise Failed(f"cannot write {output}: {exc.strerror or exc}") from None
            return done

        try:
            counts = run(work)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    where = output or "stdout"
    render.note(
        f"exported {counts['hash_records']} hash records, {counts['logs']} log entries to {where}"
    )


@cli.command("import")
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@json_option
def import_(source: Any, batch_size: int, as_json: bool) -> None:
    """Restore a JSON Lines backup made by export (from SOURCE, default stdin), streamed."""
    result = run(lambda db: import_jsonl(db, source, batch_size=batch_size))
    rejected = [{"line": line, "reason": reason} for line, reason in result.rejected]
    if as_json:
        render.emit_json(
            {"hash_records": result.hash_records, "logs": result.logs, "rejected": rejected}
        )
    else:
        render.note(f"imported {result.hash_records} hash records, {result.logs} log entries")
        for item in rejected[:20]:
            render.note(f"  line {item['line']} rejected: {item['reason']}")
    if rejected:
        fail(f"{len(rejected)} line(s) rejected")
