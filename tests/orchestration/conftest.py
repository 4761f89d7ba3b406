"""Fixtures for the orchestration tests: the whole Dagster graph on a copy of the sample warehouse.

dagster-dbt reads the manifest when `orchestration.definitions` is imported, so its target folder is set here at
import time; a fresh folder per session means the manifest is parsed from the models as they are now.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["TIDINGS_DBT_TARGET_PATH"] = str(Path(os.environ["TIDINGS_WAREHOUSE"]).parent / "orchestration-target")


@pytest.fixture(scope="session")
def defs():  # type: ignore[no-untyped-def]
    from orchestration.definitions import defs

    return defs


@pytest.fixture(scope="session")
def sftp_sandbox(work_dir: Path) -> Iterator[object]:
    """The mail-house SFTP drop box; TIDINGS_SANDBOX_SFTP_PORT points the default profile at it."""
    from syncs.sandbox.sftp import SftpSandbox

    with SftpSandbox(work_dir / "orchestration-sftp") as server, pytest.MonkeyPatch.context() as env:
        env.setenv("TIDINGS_SANDBOX_SFTP_PORT", str(server.port))
        yield server


@pytest.fixture(scope="module")
def graph_warehouse(
    built_warehouse: Path, work_dir: Path, sandbox: object, sftp_sandbox: object, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """A private copy of the sample warehouse, with TIDINGS_WAREHOUSE (read by dbt and the engine) pointing at it."""
    from syncs.sandbox.apps import use_sandbox_credentials

    use_sandbox_credentials()
    copy = work_dir / f"orchestration-{request.module.__name__.rsplit('.', 1)[-1]}.duckdb"
    shutil.copy(built_warehouse, copy)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TIDINGS_WAREHOUSE", str(copy))
        env.setenv("TIDINGS_EXPORTS_DIR", str(work_dir / "orchestration-exports"))
        yield copy
