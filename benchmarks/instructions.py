"""Instructions per call by callgrind: a figure the machine's load does not move.

A benchmark script that accepts ``--count MODE N`` (make N calls of contender MODE and
nothing else) is run under ``valgrind --tool=callgrind`` for two values of N; the
difference of the two totals, divided by the difference of N, is what one call costs,
start-up and tear-down cancelling out. Slow (valgrind runs Python some 50 times slower),
so the benchmarks count a few hundred calls.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path


def per_call(
    script: str | Path, modes: Iterable[str], *, small: int = 200, large: int = 1_200
) -> dict[str, int] | None:
    """Instructions per call of each mode of ``script``, or None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in modes:
            totals = []
            for calls in (small, large):
                run = subprocess.run(
                    [valgrind, "--tool=callgrind", f"--callgrind-out-file={scratch}/out",
                     sys.executable, str(script), "--count", mode, str(calls)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                collected = [ln for ln in run.stderr.splitlines() if "Collected :" in ln]
                totals.append(int(collected[-1].split()[-1]))
            counts[mode] = (totals[1] - totals[0]) // (large - small)
    return counts
