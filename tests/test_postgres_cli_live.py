"""The command-line tool and ``make demo``, unchanged, with a PostgreSQL configuration
(the README's example), in subprocesses as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.postgres import PG

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent
AN_HOUR_AGO = time.time() - 3600


def write_config(path: Path, database: str) -> Path:
    tier = (
        f'host = "{PG["host"]}"\nport = {PG["port"]}\ndatabase = "{database}"\n'
        f'user = "{PG["user"]}"\npassword = "{PG["password"]}"\n'
        'ssl = { sslmode = "disable" }\npool = { max_size = 4 }\n'
    )
    path.write_text(
        '[database]\nremote_type = "postgresql"\ncore_type = "postgresql"\n'
        f"[database.remote_config]\n{tier}[database.core_config]\n{tier}"
    )
    return path


def make_tree(root: Path) -> Path:
    tree = root / "tree"
    (tree / "sub").mkdir(parents=True)
    for name, text in (("a.txt", "a\n"), ("sub/b.txt", "b\n")):
        (tree / name).write_text(text)
        os.utime(tree / name, (AN_HOUR_AGO, AN_HOUR_AGO))
    return tree


def env_for(config: Path, data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNC_DB_CLIENT")}
    return {**env, "ASYNC_DB_CLIENT_CONFIG": str(config), "ASYNC_DB_CLIENT_DATA_DIR": str(data)}


def cli(*args: str, env: dict[str, str]) -> object:
    result = subprocess.run(
        [sys.executable, "-m", "async_db_client", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_the_cli_on_postgresql(own_postgres_database: str, tmp_path: Path) -> None:
    env = env_for(write_config(tmp_path / "pg.toml", own_postgres_database), tmp_path / "data")
    tree = make_tree(tmp_path)
    assert cli("migrate", env=env) == {"remote": 1, "core": 1}
    scanned = cli("scan", str(tree), "--site-id", "site-a", env=env)
    assert isinstance(scanned, dict) and scanned["records_stored"] == 2
    record = cli("get", str(tree), env=env)
    assert isinstance(record, dict) and record["current_hash"] == scanned["root_hash"]
    assert cli("health", env=env) == {"remote": True, "core": True}
    assert cli("orphans", env=env) == [] and cli("untracked", env=env) == []
    dashboard = cli("dashboard", env=env)
    assert isinstance(dashboard, dict) and dashboard["hash_record_count"] == 2


def test_make_demo_on_postgresql(own_postgres_database: str, tmp_path: Path) -> None:
    env = env_for(write_config(tmp_path / "pg.toml", own_postgres_database), tmp_path / "data")
    env["DEMO_DIR"] = str(make_tree(tmp_path))
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "store: as configured in" in result.stdout
    assert "demo finished" in result.stdout
