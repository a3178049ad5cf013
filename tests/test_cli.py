"""The command-line tool through its real entry points, in subprocesses: --json outputs
parsed and checked, exit codes, one-line errors, configuration precedence, backups, tier
names, paths as typed, tables at 80 columns, Ctrl-C during a scan."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from async_db_client.models import DashboardMetrics

COMMANDS = [
    "scan",
    "get",
    "put",
    "priority",
    "set-target",
    "logs",
    "prune-logs",
    "orphans",
    "untracked",
    "dashboard",
    "health",
    "migrate",
    "export",
    "import",
    "pool-stats",
    "summary",
    "outbox",
]
AN_HOUR_AGO = time.time() - 3600


def cli_env(data_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ASYNC_DB_CLIENT")}
    environment.update({"ASYNC_DB_CLIENT_DATA_DIR": str(data_dir), **(env or {})})
    return environment


def run_cli(
    *args: str,
    data_dir: Path,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "async_db_client", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(data_dir, env),
        cwd=cwd,
    )


def ok(*args: str, data_dir: Path, stdin: str | None = None, **kw: Any) -> Any:
    """Run a command with --json; it must succeed; its parsed output."""
    result = run_cli(*args, "--json", data_dir=data_dir, stdin=stdin, **kw)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    return lines[0]


def table_rows(text: str) -> list[list[str]]:
    """The cells of each line of a bordered table's body (a folded row gives several)."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


#: A terminal 80 columns wide, for the human output.
NARROW = {"COLUMNS": "80"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.txt").write_text("beta")
    (root / "sub" / "deeper" / "c.txt").write_text("gamma")
    os.symlink("a.txt", root / "link")
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(Path(directory, name), (AN_HOUR_AGO, AN_HOUR_AGO), follow_symlinks=False)
    return root


# --------------------------------------------------------------------- the tool


def test_console_script_and_module_are_the_same_tool(data: Path) -> None:
    script = Path(sys.executable).with_name("async-db-client")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "async-db-client, version 0.1.0"
    helped = run_cli("--help", data_dir=data)
    assert helped.returncode == 0
    for command in COMMANDS:
        assert f"  {command} " in helped.stdout, command


def test_scan_then_read_it_back(tree: Path, data: Path) -> None:
    scanned = ok("scan", str(tree), "--site-id", "site-a", data_dir=data)
    assert scanned["root"] == str(tree) and len(scanned["root_hash"]) == 64
    assert scanned["counters"]["directories"] == 4 and scanned["records_stored"] == 4
    assert scanned["counters"]["files_hashed"] == 3 and scanned["counters"]["links"] == 1

    record = ok("get", str(tree), data_dir=data)
    assert record["current_hash"] == scanned["root_hash"]
    assert (record["dirs"], record["files"], record["links"]) == (
        ["empty", "sub"],
        ["a.txt"],
        ["link"],
    )
    assert record["session_id"] == scanned["session_id"]

    logs = ok("logs", "--session", scanned["session_id"], "--order", "asc", data_dir=data)
    assert [e["summary_message"].split(":")[0] for e in logs] == ["scan started", "scan finished"]
    assert {e["site_id"] for e in logs} == {"site-a"}

    summary = ok("summary", "--top", "2", data_dir=data)
    assert summary["records"] == 4 and len(summary["newest"]) == 2
    assert ok("untracked", data_dir=data) == [] and ok("orphans", data_dir=data) == []
    dashboard = ok("dashboard", data_dir=data)
    assert (dashboard["live_current"], dashboard["sync_unknown"]) == (1, 1)
    assert dashboard["hash_record_count"] == 4

    again = ok("scan", str(tree), data_dir=data)
    assert again["root_hash"] == scanned["root_hash"]
    assert again["counters"]["files_hashed"] == 0 and again["counters"]["files_cached"] == 3
    (data / "scan-cache.db").unlink()
    assert ok("scan", str(tree), "--no-cache", data_dir=data)["counters"]["files_hashed"] == 3


def test_scan_progress_is_plain_lines_when_not_a_terminal(tree: Path, data: Path) -> None:
    result = run_cli("scan", str(tree), data_dir=data)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == f"scanning {tree}"
    assert "done in" in result.stderr and "files (" in result.stderr
    assert str(tree) in result.stdout and "root hash" in result.stdout  # the table


def test_put_priority_orphans_untracked(data: Path) -> None:
    record = {"path": "/srv", "current_hash": "h1", "dirs": ["a", "gone"], "target_hash": "t"}
    assert ok("put", data_dir=data, stdin=json.dumps(record)) == {"stored": 1, "rejected": []}
    bulk = [{"path": "/srv/a", "current_hash": "x"}, {"path": "/srv/stray", "current_hash": "y"}]
    assert ok("put", data_dir=data, stdin=json.dumps(bulk))["stored"] == 2
    assert ok("priority", data_dir=data) == ["/srv"]
    assert ok("orphans", data_dir=data) == ["/srv/stray"]
    assert ok("untracked", data_dir=data) == ["/srv/gone"]
    ok("put", data_dir=data, stdin=json.dumps({"path": "/srv", "current_hash": "t"}))
    stored = ok("get", "/srv", data_dir=data)
    assert (stored["current_hash"], stored["prev_hash"]) == ("t", "h1")
    assert ok("priority", data_dir=data) == []
    assert run_cli("set-target", "/srv/a", "wanted", data_dir=data).returncode == 0
    assert ok("priority", data_dir=data) == ["/srv/a"]
    assert run_cli("set-target", "/srv/a", data_dir=data).returncode == 0  # cleared
    assert ok("priority", data_dir=data) == []
    assert "no record for /nope" in one_line_error(
        run_cli("set-target", "/nope", "h", data_dir=data), 1
    )
    assert run_cli("set-target", "/srv/a", "bad hash", data_dir=data).returncode == 2

    bad = run_cli("put", data_dir=data, stdin='{"path": "/p", "current_hash": "has space"}')
    assert "current_hash" in one_line_error(bad, 2)
    assert "not JSON" in one_line_error(run_cli("put", data_dir=data, stdin="{"), 2)
    partly = run_cli(
        "put", "--json", data_dir=data, stdin='[{"path": "/ok", "current_hash": "h"}, {}]'
    )
    assert partly.returncode == 1
    assert json.loads(partly.stdout)["stored"] == 1


def test_logs_paging_ordering_and_pruning(tree: Path, data: Path) -> None:
    for _ in range(2):
        ok("scan", str(tree), data_dir=data)
    everything = ok("logs", "--order-by", "log_id", "--order", "ASC", data_dir=data)
    assert [e["log_id"] for e in everything] == [1, 2, 3, 4]
    page = ok("logs", "--limit", "2", "--offset", "1", "--order-by", "log_id", data_dir=data)
    assert [e["log_id"] for e in page] == [3, 2]
    assert ok("logs", "--older-than", "1", data_dir=data) == []
    assert ok("prune-logs", "--older-than", "1", data_dir=data) == {"deleted": 0, "matching": 0}
    time.sleep(0.01)  # "older than 0 days": strictly before now
    assert ok("prune-logs", "--older-than", "0", "--dry-run", data_dir=data)["matching"] == 4
    assert len(ok("logs", data_dir=data)) == 4
    assert ok("prune-logs", "--older-than", "0", data_dir=data)["deleted"] == 4
    assert ok("logs", "--all", data_dir=data) == []


def test_operations_commands(data: Path) -> None:
    assert ok("migrate", data_dir=data) == {"remote": 1, "core": 1}
    assert ok("health", data_dir=data) == {"remote": True, "core": True}
    stats = ok("pool-stats", data_dir=data)
    [(name, pool)] = stats.items()
    assert name == f"sqlite://{data / 'hashes.db'}"
    assert pool["size"] >= 1 and pool["acquired_total"] >= 2
    human = run_cli("health", data_dir=data)
    assert human.returncode == 0
    assert f"configuration: embedded default ({data / 'hashes.db'})" in human.stdout


def test_export_then_import_gives_identical_records(tree: Path, data: Path, tmp_path: Path) -> None:
    ok("scan", str(tree), data_dir=data)
    ok("put", data_dir=data, stdin=json.dumps({"path": str(tree), "current_hash": "rotated"}))
    backup = tmp_path / "backup.jsonl"
    exported = run_cli("export", "-o", str(backup), data_dir=data)
    assert exported.returncode == 0, exported.stderr
    assert "exported 4 hash records, 2 log entries" in exported.stderr
    lines = [json.loads(line) for line in backup.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["header"] + ["hash_record"] * 4 + ["log"] * 2

    fresh = tmp_path / "fresh"
    imported = ok("import", str(backup), data_dir=fresh)
    assert imported == {"hash_records": 4, "logs": 2, "rejected": []}
    assert ok("import", str(backup), data_dir=fresh)["logs"] == 2  # again: stored once
    again = run_cli("export", data_dir=fresh)
    assert again.returncode == 0
    copied = [json.loads(line) for line in again.stdout.splitlines()]

    def records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [row for row in rows if row["type"] == "hash_record"]

    def logs(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        fields = ("summary_message", "log_level", "timestamp", "session_id", "site_id")
        return [tuple(row[f] for f in fields) for row in rows if row["type"] == "log"]

    assert records(copied) == records(lines)
    rotated = next(r for r in records(copied) if r["path"] == str(tree))
    assert rotated["current_hash"] == "rotated" and rotated["prev_hash"] is not None
    assert logs(copied) == logs(lines)

    from_stdin = ok("import", data_dir=tmp_path / "third", stdin=backup.read_text())
    assert from_stdin["hash_records"] == 4
    # Malformed input is bad usage (2), as for put.
    broken = run_cli("import", data_dir=fresh, stdin='{"type": "hash_record"}\nnot json\n')
    assert "line 2: not JSON" in one_line_error(broken, 2)
    unknown = run_cli("import", data_dir=fresh, stdin='{"type": "table"}\n')
    assert "line 1: unknown type 'table'" in one_line_error(unknown, 2)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(
        b'{"type": "header", "format": "async_db_client.export", "version": 1}\n\xff\n'
    )
    assert "not UTF-8" in one_line_error(run_cli("import", str(binary), data_dir=fresh), 2)


# -------------------------------------------------------------- failures, config


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_unreachable_database_is_one_clear_line(tmp_path: Path, data: Path) -> None:
    config = write_config(
        tmp_path / "down.toml",
        '[database]\nremote_type = "mysql"\n[database.remote_config]\n'
        'host = "127.0.0.1"\nport = 1\ndatabase = "x"\nuser = "u"\npassword = "hunter2"\n'
        "pool = { acquire_timeout = 1, connect_timeout = 0.5 }\n",
    )
    result = run_cli("--config", str(config), "get", "/x", data_dir=data)
    line = one_line_error(result, 1)
    assert "cannot connect to mysql://u@127.0.0.1:1/x" in line
    assert f"(configuration: --config {config})" in line
    assert "hunter2" not in result.stderr + result.stdout
    unhealthy = run_cli("--config", str(config), "health", "--json", data_dir=data)
    assert unhealthy.returncode == 1 and json.loads(unhealthy.stdout) == {"remote": False}
    assert "Error: unhealthy: remote: cannot connect to mysql://u@127.0.0.1:1/x" in (
        unhealthy.stderr
    )

    missing_dir = write_config(
        tmp_path / "nodir.toml",
        '[database]\nremote_type = "sqlite"\n'
        '[database.remote_config]\npath = "/no/such/dir/h.db"\n',
    )
    line = one_line_error(run_cli("--config", str(missing_dir), "logs", data_dir=data), 1)
    assert "cannot open sqlite:///no/such/dir/h.db" in line


def test_bad_usage_exits_2(tmp_path: Path, data: Path) -> None:
    assert run_cli("logs", "--order", "sideways", data_dir=data).returncode == 2
    assert run_cli("no-such-command", data_dir=data).returncode == 2
    assert run_cli("prune-logs", data_dir=data).returncode == 2  # --older-than is required
    assert run_cli("scan", str(tmp_path / "missing"), data_dir=data).returncode == 2
    typo = write_config(tmp_path / "typo.toml", '[database]\nremote_type = "postgres"\n')
    assert "database.remote_type" in one_line_error(
        run_cli("--config", str(typo), "logs", data_dir=data), 2
    )
    not_toml = write_config(tmp_path / "bad.toml", "[database\n")
    assert "not valid TOML" in one_line_error(
        run_cli("--config", str(not_toml), "logs", data_dir=data), 2
    )
    line = one_line_error(
        run_cli("--config", str(tmp_path / "none.toml"), "logs", data_dir=data), 2
    )
    assert "config file not found" in line
    assert "core tier is not configured" in one_line_error(
        run_cli(
            "--config",
            str(write_config(tmp_path / "remote-only.toml", '[database]\nremote_type = "local"\n')),
            "dashboard",
            data_dir=data,
        ),
        1,
    )


def test_configuration_precedence(tmp_path: Path, data: Path) -> None:
    # A file's relative SQLite path is relative to the file.
    (tmp_path / "env").mkdir()
    (tmp_path / "flag").mkdir()
    env_file = write_config(
        tmp_path / "env" / "c.toml",
        '[database]\nremote_type = "sqlite"\n[database.remote_config]\npath = "env.db"\n',
    )
    flag_file = write_config(
        tmp_path / "flag" / "c.toml",
        '[database]\nremote_type = "sqlite"\n[database.remote_config]\npath = "flag.db"\n',
    )
    from_env = {"ASYNC_DB_CLIENT_CONFIG": str(env_file)}

    def source(*args: str, env: dict[str, str] | None = None) -> str:
        result = run_cli(*args, "health", data_dir=data, env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    assert source() == f"configuration: embedded default ({data / 'hashes.db'})"
    assert source(env=from_env) == f"configuration: $ASYNC_DB_CLIENT_CONFIG={env_file}"
    assert (
        source("--config", str(flag_file), env=from_env) == f"configuration: --config {flag_file}"
    )
    assert (tmp_path / "env" / "env.db").exists() and (tmp_path / "flag" / "flag.db").exists()
    assert (data / "hashes.db").exists()


def test_default_data_dir_follows_xdg(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_DB_CLIENT", "XDG_"))}
    for extra, expected in (
        ({"HOME": str(home)}, home / ".local" / "share" / "async_db_client"),
        (
            {"HOME": str(home), "XDG_DATA_HOME": str(tmp_path / "xdg")},
            tmp_path / "xdg" / "async_db_client",
        ),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "async_db_client", "health"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **extra},
        )
        assert result.returncode == 0, result.stderr
        assert (expected / "hashes.db").exists()


def test_outbox_lists_retries_and_drops_dead_entries(tmp_path: Path, data: Path) -> None:
    import sqlite3

    outbox = tmp_path / "outbox.db"
    config = write_config(
        tmp_path / "outbox.toml",
        '[database]\nremote_type = "sqlite"\n[database.remote_config]\n'
        f'path = "{tmp_path / "h.db"}"\noutbox = {{ path = "{outbox}" }}\n',
    )
    assert ok("--config", str(config), "outbox", data_dir=data)["dead"] == []
    # Two entries the replayer gave up on, as it leaves them in the file.
    with sqlite3.connect(outbox) as db:
        for seq, path in ((7, "/given-up"), (8, "/also")):
            payload = json.dumps({"path": path, "current_hash": "h"})
            db.execute(
                "INSERT INTO dead (seq, kind, payload, at, key, attempts, error, died_at)"
                " VALUES (?, 'hash', ?, 1700000000, NULL, 5, 'QueryError: (1644) refused', 0)",
                (seq, payload),
            )
    listed = ok("--config", str(config), "outbox", data_dir=data)
    assert [(d["seq"], d["subject"], d["attempts"]) for d in listed["dead"]] == [
        (7, "/given-up", 5),
        (8, "/also", 5),
    ]
    assert listed["stats"]["dead"] == 2 and listed["stats"]["pending"] == 0
    table = run_cli("--config", str(config), "outbox", data_dir=data)
    assert table.returncode == 0 and "/given-up" in table.stdout and "refused" in table.stdout

    one_line_error(run_cli("--config", str(config), "outbox", "retry", data_dir=data), 2)
    retried = run_cli("--config", str(config), "outbox", "retry", "7", data_dir=data)
    assert retried.returncode == 0 and "queued again: 1" in retried.stdout + retried.stderr
    assert ok("--config", str(config), "get", "/given-up", data_dir=data)["current_hash"] == "h"
    dropped = run_cli("--config", str(config), "outbox", "drop", "--all", data_dir=data)
    assert dropped.returncode == 0 and "dropped: 1" in dropped.stdout + dropped.stderr
    assert ok("--config", str(config), "outbox", data_dir=data)["dead"] == []
    no_outbox = run_cli("outbox", data_dir=data)
    assert "no outbox is configured" in one_line_error(no_outbox, 1)


# ------------------------------------------------------------------ tier names


def test_every_command_names_the_tiers_as_the_configuration_does(
    tmp_path: Path, data: Path
) -> None:
    config = str(
        write_config(
            tmp_path / "tiers.toml",
            '[database]\nremote_type = "sqlite"\ncore_type = "sqlite"\npipeline_type = "sqlite"\n'
            '[database.remote_config]\npath = "tiers.db"\n'
            '[database.core_config]\npath = "tiers.db"\n'
            '[database.pipeline_config]\npath = "pipeline.db"\n',
        )
    )
    assert ok("--config", config, "migrate", data_dir=data) == {
        "remote": 1,
        "core": 1,
        "pipeline": 1,
    }
    assert ok("--config", config, "health", data_dir=data) == {
        "remote": True,
        "core": True,
        "pipeline": True,
    }
    migrated = run_cli("--config", config, "migrate", data_dir=data)
    assert [row[0] for row in table_rows(migrated.stdout)] == ["remote", "core", "pipeline"]
    # health's table shows the library's health_check() key beside each tier.
    healthy = run_cli("--config", config, "health", data_dir=data)
    assert table_rows(healthy.stdout) == [
        ["remote", "ok", "local_db"],
        ["core", "ok", "core_db"],
        ["pipeline", "ok", "pipeline_db"],
    ]


# ----------------------------------------------------------------------- paths


def test_paths_are_resolved_as_scan_stores_them(tmp_path: Path, tree: Path, data: Path) -> None:
    # As in the issue: from the tree's parent, a relative path with a trailing slash.
    scanned = ok("scan", "tree/", data_dir=data, cwd=tmp_path)
    assert scanned["root"] == str(tree)
    for typed, cwd in (
        ("tree", tmp_path),
        ("tree/", tmp_path),
        (".", tree),
        (f"{tree}/", tmp_path),
        ("sub/..", tree),
    ):
        record = ok("get", typed, data_dir=data, cwd=cwd)
        assert (record["path"], record["current_hash"]) == (str(tree), scanned["root_hash"])
    assert ok("get", "./sub/deeper/", data_dir=data, cwd=tree)["path"] == f"{tree}/sub/deeper"

    changed = run_cli("set-target", "tree/sub/", "wanted", data_dir=data, cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert changed.stderr == f"target hash of {tree}/sub set to wanted\n"
    assert ok("priority", data_dir=data) == [f"{tree}/sub"]
    assert run_cli("set-target", "sub", data_dir=data, cwd=tree).returncode == 0  # cleared
    assert ok("priority", data_dir=data) == []


def test_a_path_without_a_record_is_told_what_is_stored_near_it(
    tmp_path: Path, tree: Path, data: Path
) -> None:
    ok("scan", str(tree), data_dir=data)

    def error(*args: str) -> str:
        return one_line_error(run_cli(*args, data_dir=data, cwd=tmp_path), 1)

    typo = f"Error: no record for {tree}/sbu; did you mean {tree}/sub?"
    assert error("get", "tree/sbu") == typo
    assert error("set-target", "tree/sbu", "h") == typo
    assert error("get", "tree/sbu/deeper/") == (
        f"Error: no record for {tree}/sbu/deeper; did you mean {tree}/sub/deeper?"
    )
    assert error("get", "tree/a.txt") == (
        f"Error: no record for {tree}/a.txt; {tree} lists a.txt as a file "
        "(records are per directory)"
    )
    assert error("get", "tree/link") == (
        f"Error: no record for {tree}/link; {tree} lists link as a link (records are per directory)"
    )
    assert error("get", "tree/unlike") == f"Error: no record for {tree}/unlike"
    assert error("get", "/nowhere/at/all") == "Error: no record for /nowhere/at/all"

    # Records stored by put as given: the same path with a trailing slash, a directory
    # listed without a record of its own.
    ok("put", data_dir=data, stdin=json.dumps({"path": "/srv/", "current_hash": "h"}))
    assert error("get", "/srv") == "Error: no record for /srv; did you mean /srv/?"
    listed = {"path": "/data", "current_hash": "h", "dirs": ["gone"]}
    ok("put", data_dir=data, stdin=json.dumps(listed))
    assert error("get", "/data/gone") == (
        "Error: no record for /data/gone; /data lists gone, which has no record (see untracked)"
    )


# ---------------------------------------------------------------------- output


def test_hashes_are_never_folded_at_80_columns(tree: Path, data: Path) -> None:
    scanned = run_cli("scan", str(tree), "--no-progress", data_dir=data, env=NARROW)
    assert scanned.returncode == 0, scanned.stderr
    root_hash = ok("get", str(tree), data_dir=data)["current_hash"]
    assert ["root", "hash", root_hash] in [line.split() for line in scanned.stdout.splitlines()]
    assert max(map(len, scanned.stdout.splitlines())) <= 80

    new_hash, target = "f" * 64, "e" * 64
    ok("put", data_dir=data, stdin=json.dumps({"path": str(tree), "current_hash": new_hash}))
    assert run_cli("set-target", str(tree), target, data_dir=data).returncode == 0
    shown = run_cli("get", str(tree), data_dir=data, env=NARROW)
    lines = shown.stdout.splitlines()
    assert lines[0] == str(tree)
    pairs = [line.split() for line in lines]
    for pair in (["current_hash", new_hash], ["prev_hash", root_hash], ["target_hash", target]):
        assert pair in pairs
    assert max(map(len, lines)) <= 80

    # Too narrow a terminal: the line runs past it (the terminal wraps it, and a copy of
    # the hash is whole), rather than fold or cut the hash.
    tight = run_cli("get", str(tree), data_dir=data, env={"COLUMNS": "60"})
    assert ["current_hash", new_hash] in [line.split() for line in tight.stdout.splitlines()]


def test_empty_results_are_one_line(data: Path) -> None:
    for command, line in (
        ("orphans", "no orphaned records"),
        ("untracked", "no untracked children"),
        ("priority", "no priority updates"),
        ("logs", "no log entries"),
    ):
        result = run_cli(command, data_dir=data, env=NARROW)
        assert (result.returncode, result.stdout) == (0, line + "\n"), result.stderr
    board = run_cli("dashboard", data_dir=data, env=NARROW)
    assert board.returncode == 0 and board.stdout.endswith("\nno sites\n")


def test_cells_and_titles_are_shown_as_they_are(data: Path) -> None:
    record = {"path": "/x/[bold]y[/bold]", "current_hash": "h", "dirs": ["[red]z"]}
    ok("put", data_dir=data, stdin=json.dumps(record))
    shown = run_cli("get", "/x/[bold]y[/bold]", data_dir=data)
    assert shown.stdout.splitlines()[0] == "/x/[bold]y[/bold]"
    assert ["dirs", "(1)", "[red]z"] in [line.split() for line in shown.stdout.splitlines()]


def test_the_dashboard_shows_a_row_per_site(tree: Path, data: Path) -> None:
    first = ok("scan", str(tree), "--site-id", "site-a", data_dir=data)
    (tree / "new.txt").write_text("new")
    second = ok("scan", str(tree), "--site-id", "site-b", data_dir=data)
    board = ok("dashboard", data_dir=data)
    # The eleven counters as before, and the sites beside them.
    assert set(board) == {*DashboardMetrics.model_fields, "sites"}
    assert (board["live_current"], board["hash_record_count"]) == (2, 8)
    assert [(s["site_id"], s["root_hash"], s["hash_record_count"]) for s in board["sites"]] == [
        ("site-a", first["root_hash"], 4),
        ("site-b", second["root_hash"], 4),
    ]
    human = run_cli("dashboard", data_dir=data, env=NARROW)
    assert human.returncode == 0 and max(map(len, human.stdout.splitlines())) <= 80
    sites = [row for row in table_rows(human.stdout) if row[0]]
    assert [(row[0], row[2], row[3]) for row in sites] == [
        ("site-a", "4", first["root_hash"][:16] + "…"),
        ("site-b", "4", second["root_hash"][:16] + "…"),
    ]


def test_scan_options_say_what_they_do(data: Path) -> None:
    helped = run_cli("scan", "--help", data_dir=data)
    text = " ".join(helped.stdout.split())
    assert "--concurrency INTEGER RANGE Threads listing and hashing at once." in text
    assert "--batch-size INTEGER RANGE Records stored per database call." in text


# --------------------------------------------------------------- input, errors


def test_malformed_input_exits_2_and_errors_name_the_path_given(tmp_path: Path, data: Path) -> None:
    not_objects = run_cli("put", data_dir=data, stdin='[{"path": "/a", "current_hash": "h"}, 1]')
    assert "stdin: list item #1 is not a JSON object" in one_line_error(not_objects, 2)
    assert run_cli("get", "/a", data_dir=data).returncode == 1  # nothing was stored

    target = tmp_path / "no-such-dir" / "backup.jsonl"
    line = one_line_error(run_cli("export", "-o", str(target), data_dir=data), 1)
    assert line == f"Error: cannot write {target}: No such file or directory"


# --------------------------------------------------------------------- Ctrl-C


def default_sigint() -> None:
    # Whoever started the tests may ignore SIGINT (a background job of a shell without
    # job control), and a child inherits that; Python only raises KeyboardInterrupt for
    # a SIGINT that was not ignored when it started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_a_scan_with_130_and_says_how_far_it_got(tmp_path: Path, data: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for number in range(3):
        (tree / f"small{number}.txt").write_text(str(number))
    # A sparse file of a tebibyte: hashing it takes minutes, so the scan is still running
    # whenever the signal comes after it started.
    with (tree / "huge").open("wb") as huge:
        huge.truncate(2**40)
    scan = subprocess.Popen(
        [sys.executable, "-m", "async_db_client", "scan", str(tree), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data),
        preexec_fn=default_sigint,
    )
    try:
        assert scan.stderr is not None
        assert scan.stderr.readline() == f"scanning {tree}\n"  # progress: the walk began
        scan.send_signal(signal.SIGINT)
        _, stderr = scan.communicate(timeout=60)
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.wait()
    assert scan.returncode == 130, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    interrupted = re.compile(r"scan interrupted after (\d+) files: " + re.escape(str(tree)))
    [line] = [line for line in stderr.splitlines() if interrupted.search(line)]
    assert line.startswith("WARNING async_db_client.scanner: ")
    # The session's log ends with the same words.
    last = ok("logs", "--limit", "1", data_dir=data)[0]
    assert last["log_level"] == "WARNING" and interrupted.fullmatch(last["summary_message"])
