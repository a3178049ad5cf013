"""Every backend answers as the in-memory reference does, operation by operation.

The same seeded random operations (see ``tests/support/differential.py``) run on each
backend and on the fakes; the first answer that differs fails the test with the seed,
the step and the operations that led there. ``make test`` runs a bounded number of steps;
``ADC_DIFF_STEPS`` and ``ADC_DIFF_SEEDS`` ask for longer runs, e.g.
``ADC_DIFF_STEPS=5000 ADC_DIFF_SEEDS=20 pytest tests/test_differential.py``.
"""

from __future__ import annotations

import os

import pytest

from async_db_client import FakeClock
from tests.conftest import START
from tests.support.backends import BACKENDS, Backend, MemoryBackend
from tests.support.differential import run

pytestmark = pytest.mark.asyncio

STEPS = int(os.environ.get("ADC_DIFF_STEPS", "250"))
SEEDS = range(int(os.environ.get("ADC_DIFF_SEEDS", "3")))
#: Compared with the reference: every backend but the reference itself and the ones that
#: are the same engine as another (least privilege) or need a server not here (mssql).
SKIPPED = {"memory", "mysql-least-privilege", "mssql"}


def _cases() -> list[object]:
    cases = []
    for make in BACKENDS:
        backend = make()
        if backend.name in SKIPPED:
            continue
        for tier in backend.tiers:
            for seed in SEEDS:
                cases.append(
                    pytest.param(backend, tier, seed, id=f"{backend.name}-{tier}-{seed}",
                                 marks=backend.marks)
                )  # fmt: skip
    return cases


@pytest.mark.parametrize(("backend", "tier", "seed"), _cases())
async def test_backend_answers_as_the_reference(
    backend: Backend, tier: str, seed: int, request: pytest.FixtureRequest
) -> None:
    backend.setup(request)
    ref_clock, clock = FakeClock(START), FakeClock(START)
    reference = getattr(MemoryBackend(), tier)(ref_clock)
    candidate = getattr(backend, tier)(clock)
    compared = await run(tier, seed, STEPS, reference, candidate, ref_clock, clock, backend.name)
    assert compared > STEPS // 2
