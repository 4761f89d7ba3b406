"""Fixtures of the reliability suite and its size knobs (its end-of-session figures: tests/conftest.py).

Two forms: the fast form runs inside `make test`; the long form (`make soak`, TIDINGS_SOAK=1) runs only the
tests marked `soak`, with `SOAK_ITERATIONS` kill/recovery cycles per sync mode (TIDINGS_SOAK=<n> sets n).
Random choices use one seed per test, printed on failure and settable with TIDINGS_RELIABILITY_SEED.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import make_env
from tests.syncs.conftest import SyncEnv, write_project  # noqa: F401 - write_project is a shared fixture

SOAK_DEFAULT_ITERATIONS = 25
FAST_ITERATIONS = 1


def soak_iterations() -> int:
    """Kill/recovery cycles per sync mode: TIDINGS_SOAK=1 means the default soak size, a larger number sets it."""
    value = int(os.environ.get("TIDINGS_SOAK", "0") or 0)
    if value <= 0:
        return FAST_ITERATIONS
    return SOAK_DEFAULT_ITERATIONS if value == 1 else value


@pytest.fixture
def rel_env(tmp_path: Path, clean_sandbox: Any) -> SyncEnv:
    return make_env(tmp_path, clean_sandbox)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    seed = int(os.environ.get("TIDINGS_RELIABILITY_SEED") or time.time_ns() % 1_000_000)
    request.node.user_properties.append(("seed", seed))
    print(f"random seed {seed} (rerun with TIDINGS_RELIABILITY_SEED={seed})")
    return random.Random(seed)
