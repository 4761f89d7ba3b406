"""The test session's set-up, imported by tests/conftest.py before collection and by the tests that need it.

Environment variables that modules read at import time are set here at module level, before collection
(see STACK_NOTES: dagster-dbt reads the manifest and the warehouse path when definitions are imported). This is
a module of its own, not tests/conftest.py, because pytest imports a conftest under its own name: a test that
imported `tests.conftest` would run it a second time, in a second work directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

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
# The session build's parse of the dbt project, which `dbt` starts every new target folder from.
SESSION_PARSE = WORK_DIR / "target" / "partial_parse.msgpack"
CompletedDbt = subprocess.CompletedProcess[str]


def dbt(
    *args: str, warehouse: Path, target_path: Path, as_of: date = AS_OF, vars: dict[str, str] | None = None
) -> CompletedDbt:
    """Run the dbt CLI against `warehouse` as of `as_of`, with dbt `vars` if given; the caller checks the result.

    A full parse of the project costs about as much as a small run (15 s on a slow core), and dbt reuses an
    earlier parse only if it was made with the same profile and vars. So dbt runs in the warehouse's folder with
    the file named relative to it, giving every copy of the sample warehouse (all named `warehouse.duckdb`) the
    same profile; the as-of date goes in TIDINGS_AS_OF_DATE, not in vars, so another date re-parses only the
    models that read it; and a new target folder starts from the session build's parse (dbt checks each file's
    checksum before it reuses one).
    """
    target_path.mkdir(parents=True, exist_ok=True)
    if SESSION_PARSE.exists() and not (target_path / SESSION_PARSE.name).exists():
        shutil.copy(SESSION_PARSE, target_path)
    cmd = [
        "dbt", *args,
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target_path),
        *(["--vars", json.dumps(vars)] if vars else []),
    ]  # fmt: skip
    env = {**os.environ, "TIDINGS_WAREHOUSE": warehouse.name, "TIDINGS_AS_OF_DATE": as_of.isoformat()}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=warehouse.parent)


def run_dbt(*args: str, warehouse: Path, target_path: Path, as_of: date = AS_OF) -> CompletedDbt:
    """`dbt`, raising with dbt's output when it fails."""
    result = dbt(*args, warehouse=warehouse, target_path=target_path, as_of=as_of)
    if result.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}")
    return result
