"""Session-wide fixtures and hooks shared by every test package (the set-up they build on: tests/session.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.figures import FIGURES
from tests.session import AS_OF, SAMPLE_CUSTOMERS, SAMPLE_SEED, WORK_DIR, run_dbt

FIGURES_FILE = WORK_DIR / "reliability-figures.json"
# Work directories a failed session keeps for inspection: this process's, and under pytest-xdist its workers'.
KEPT_WORK_DIRS = pytest.StashKey[list[str]]()


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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    kept = session.config.stash.setdefault(KEPT_WORK_DIRS, [])
    xdist_controller = session.config.pluginmanager.hasplugin("dsession")  # runs no test: nothing to inspect
    if exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) and not xdist_controller:
        kept.append(str(WORK_DIR))
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the reliability tally to the controller
        workeroutput["reliability_figures"] = FIGURES.as_dict()
        workeroutput["kept_work_dirs"] = kept


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist controller: add up each worker's reliability tally, and note the work directories it kept."""
    output = getattr(node, "workeroutput", {})
    FIGURES.add(output.get("reliability_figures", {}))
    node.config.stash.setdefault(KEPT_WORK_DIRS, []).extend(output.get("kept_work_dirs", []))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    kept = config.stash.get(KEPT_WORK_DIRS, [])
    if kept:
        terminalreporter.write_line(f"work directories kept for inspection: {' '.join(sorted(set(kept)))}")
    if FIGURES.any():
        FIGURES.write(FIGURES_FILE)
        terminalreporter.write_sep("-", "reliability figures")
        terminalreporter.write_line(FIGURES.summary_line())
        terminalreporter.write_line(f"figures written to {FIGURES_FILE}")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the work directory (the sample warehouse, dbt targets, sandbox drops: over 100 MB a process) but
    the reliability figures, unless the session failed."""
    if str(WORK_DIR) in config.stash.get(KEPT_WORK_DIRS, []):
        return
    for entry in WORK_DIR.iterdir():
        if entry == FIGURES_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if not any(WORK_DIR.iterdir()):
        WORK_DIR.rmdir()
