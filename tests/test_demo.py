"""`make demo`'s script: scans, rescans faster, shows the store, rotates a copy's hash."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AN_HOUR_AGO = time.time() - 3600


def run_demo(data_dir: Path, demo_dir: Path | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNC_DB_CLIENT")}
    env["ASYNC_DB_CLIENT_DATA_DIR"] = str(data_dir)
    env["DEMO_DIR"] = str(demo_dir or "")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.splitlines()


def line_starting(lines: list[str], prefix: str) -> str:
    return next(line for line in lines if line.strip().startswith(prefix))


def test_demo_on_a_given_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / "guide.md").write_text("# guide\n")
    (tree / "notes.txt").write_text("notes\n")
    for path in (tree / "docs" / "guide.md", tree / "notes.txt", tree / "docs", tree):
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    lines = run_demo(tmp_path / "data", tree)
    assert line_starting(lines, "first scan").split(";")[1].strip().startswith("2 files hashed")
    assert "0 files hashed, 2 unchanged" in line_starting(lines, "second scan")
    assert "hash records: 2" in lines
    assert any("scan finished: 2 dirs, 2 files (0 hashed, 2 unchanged)" in line for line in lines)
    assert "the copy hashes like the original: True" in [line.strip() for line in lines]
    assert line_starting(lines, "appended a line to").endswith("/docs/guide.md")
    assert "1 files hashed, 1 unchanged" in line_starting(lines, "rescan")
    priority = lines[lines.index(line_starting(lines, "priority updates (1)")) :]
    copy = re.compile(rf"async_db_client-demo-{os.getuid()}-\w+/tree")  # the run's own folder
    assert any(copy.search(line) for line in priority[1:])
    assert line_starting(lines, "demo finished in")


def test_demo_on_this_project_by_default(tmp_path: Path) -> None:
    lines = run_demo(tmp_path / "data", None)
    assert f"== 1. scan {ROOT}, then scan it again" in lines
    first, second = line_starting(lines, "first scan"), line_starting(lines, "second scan")
    assert first.split("->")[1] == second.split("->")[1]  # same root hash
    assert line_starting(lines, "configuration: embedded default")


def test_demo_with_its_store_inside_the_tree_it_scans(tmp_path: Path) -> None:
    # `make demo`'s default: the store (.demo) lies in the checkout the demo scans, and
    # its files change between the two scans.
    tree = tmp_path / "tree"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / "guide.md").write_text("# guide\n")
    for path in (tree / "docs" / "guide.md", tree / "docs", tree):
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    lines = run_demo(tree / ".demo", tree)
    first, second = line_starting(lines, "first scan"), line_starting(lines, "second scan")
    assert first.split("->")[1] == second.split("->")[1]  # same root hash
    assert "0 files hashed, 1 unchanged" in second
