"""Session-wide set-up shared by every test package.

Environment variables that modules read at import time are set here at module level, before collection
(see STACK_NOTES: dagster-dbt reads the manifest and the warehouse path when definitions are imported).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.figures import FIGURES

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
WORK_DIR = Path(tempfile.mkdtemp(prefix="tidings-tests-"))
# Sample data is generated relative to a fixed date so every run of the suite sees the same warehouse.
AS_OF = date(2026, 11, 1)
SAMPLE_CUSTOMERS = 1000
SAMPLE_SEED = 7

os.environ["TIDINGS_WAREHOUSE"] = str(WORK_DIR / "warehouse.duckdb")
os.environ["TIDINGS_EXPORTS_DIR"] = str(WORK_DIR / "exports")
os.environ["TIDINGS_AS_OF_DATE"] = AS_OF.isoformat()
os.environ["DBT_PROFILES_DIR"] = str(DBT_PROJECT_DIR)
os.environ["DAGSTER_HOME"] = str(WORK_DIR / "dagster_home")
(WORK_DIR / "dagster_home").mkdir(exist_ok=True)
# dagster-dbt and our helpers run the `dbt` executable from PATH: use the one next to this interpreter.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def run_dbt(*args: str, warehouse: Path, target_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the dbt CLI against `warehouse`; raises with dbt's output when it fails."""
    env = {**os.environ, "TIDINGS_WAREHOUSE": str(warehouse)}
    cmd = [
        "dbt",
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target_path),
        "--vars",
        f"{{as_of_date: '{AS_OF.isoformat()}'}}",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=DBT_PROJECT_DIR)
    if result.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}")
    return result


@pytest.fixture(scope="session")
def work_dir() -> Path:
    return WORK_DIR


@pytest.fixture(scope="session")
def built_warehouse() -> Path:
    """The sample warehouse (raw data + every dbt model) at TIDINGS_WAREHOUSE, built once per session.

    Tests that write to it must only touch their own sync state; tests that need to mutate models
    should copy it (`warehouse_copy`).
    """
    from syncs.sample_data import generate

    warehouse = Path(os.environ["TIDINGS_WAREHOUSE"])
    if not warehouse.exists():
        generate(warehouse, customers=SAMPLE_CUSTOMERS, seed=SAMPLE_SEED, as_of=AS_OF)
        run_dbt("build", warehouse=warehouse, target_path=WORK_DIR / "target")
    return warehouse


@pytest.fixture
def warehouse_copy(built_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the built sample warehouse that a test may change freely."""
    import shutil

    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(built_warehouse, copy)
    return copy


@pytest.fixture(scope="session")
def sandbox() -> Iterator[object]:
    """Every HTTP sandbox app on one loopback server; TIDINGS_SANDBOX_URL points the default profile at it."""
    from syncs.sandbox.apps import all_apps
    from syncs.sandbox.server import SandboxServer

    server = SandboxServer(all_apps()).start()
    previous = os.environ.get("TIDINGS_SANDBOX_URL")
    os.environ["TIDINGS_SANDBOX_URL"] = server.url
    try:
        yield server
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("TIDINGS_SANDBOX_URL", None)
        else:
            os.environ["TIDINGS_SANDBOX_URL"] = previous


def restore_sandbox(sandbox: object) -> None:
    for app in sandbox.apps.values():  # type: ignore[attr-defined]
        app.restore_defaults()


@pytest.fixture
def clean_sandbox(sandbox: object) -> Iterator[object]:
    """The session sandbox with every app's received data, stats, faults and rate limits reset, before the test
    and again after it, so no fault a test injects leaks into the tests that share the session sandbox."""
    restore_sandbox(sandbox)
    yield sandbox
    restore_sandbox(sandbox)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the reliability tally to the controller
        workeroutput["reliability_figures"] = FIGURES.as_dict()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist controller: add up each worker's reliability tally."""
    FIGURES.add(getattr(node, "workeroutput", {}).get("reliability_figures", {}))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not FIGURES.any():
        return
    path = WORK_DIR / "reliability-figures.json"
    FIGURES.write(path)
    terminalreporter.write_sep("-", "reliability figures")
    terminalreporter.write_line(FIGURES.summary_line())
    terminalreporter.write_line(f"figures written to {path}")
