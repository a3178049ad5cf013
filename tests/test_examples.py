"""Every example in examples/ runs, against the in-memory backend by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.live import client_config
from tests.support.postgres import pg_client_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "quick_start.py": ["Hash record stored", "Current hash: abc123def456"],
    "complete_workflow.py": [
        "Hash record stored",
        "Log entry created with ID: 1",
        "System health: 0 sites online",
        "Database health: {'local_db': True, 'core_db': True, 'pipeline_db': True}",
    ],
    "batch_operations.py": [
        "Successfully updated 2 of 2 records",
        "Bulk call stored 2, rejected 1",
        "  record #2 (/bad): current_hash: hash must not be empty",
    ],
    "multi_database.py": [
        "Remote hash: abc123def456",
        "Dashboard shows 0 errors in last 24 hours",
        "Pipeline has 0 updates for 0 sites",
    ],
    "error_handling.py": ["Database connection failed", "Connection error: cannot connect to"],
    "async_quick_start.py": ["Hash record stored", "['abc123def456', None]"],
    "scanner.py": [
        f"Scanned {EXAMPLES}: 1 directories, ",
        # 0 unless an example file changed in the last 2 s (tests/test_scanner.py pins it)
        "Second scan hashed ",
        "Root record lists 0 dirs and ",
        f"Log: INFO scan started: {EXAMPLES}",
        "Log: INFO scan finished: 1 dirs, ",
    ],
}


def run_example(name: str, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def test_every_example_is_covered() -> None:
    on_disk = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    lines = run_example(name)
    for expected in EXPECTED[name]:
        assert any(line.startswith(expected) for line in lines), (expected, lines)


def test_error_example_never_prints_the_password() -> None:
    lines = run_example("error_handling.py")
    assert not any("wrong_password" in line or "secret" in line for line in lines)
    assert any("database.remote_config.usr" in line for line in lines)


@pytest.mark.live
@pytest.mark.parametrize(
    "name", ["quick_start.py", "complete_workflow.py", "batch_operations.py", "multi_database.py"]
)
def test_seed_examples_run_against_mariadb(name: str, mysql_database: str, tmp_path: Path) -> None:
    """The predecessor's examples, through the sync facade, on a real server."""
    config = client_config(mysql_database)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    lines = run_example(name, {"ASYNC_DB_CLIENT_EXAMPLE_CONFIG": str(config_file)})
    expected = [line for line in EXPECTED[name] if "pipeline" not in line.lower()]
    for line in expected:
        if line.startswith(("Log entry created", "Database health")):
            continue  # ids and the tier list differ from the in-memory run
        assert any(out.startswith(line) for out in lines), (line, lines)
    if name == "complete_workflow.py":
        assert "Database health: {'local_db': True, 'core_db': True}" in lines
    if name == "multi_database.py":
        assert "Pipeline database not available" in lines


@pytest.mark.live
@pytest.mark.parametrize(
    "name", ["quick_start.py", "complete_workflow.py", "batch_operations.py", "multi_database.py"]
)
def test_seed_examples_run_against_postgresql(
    name: str, postgres_database: str, tmp_path: Path
) -> None:
    """The predecessor's examples, through the sync facade, on PostgreSQL: all three
    tiers (the configuration is the only change)."""
    config = pg_client_config(postgres_database)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    lines = run_example(name, {"ASYNC_DB_CLIENT_EXAMPLE_CONFIG": str(config_file)})
    for line in EXPECTED[name]:
        if line.startswith(("Log entry created", "Pipeline has")):
            continue  # ids, and what earlier runs on the session's database left
        assert any(out.startswith(line) for out in lines), (line, lines)
