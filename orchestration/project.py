"""The dbt project as dagster-dbt sees it, and the manifest its assets are read from.

`@dbt_assets` reads `manifest.json` when the definitions are imported, so the manifest must exist first:
`ensure_manifest()` runs `dbt parse` when it is missing or older than a file of the project (a model, test or
YAML edited since: a stale manifest lacks their nodes, and a `dbt build` then fails mapping its events to
assets), and `dagster dev` re-parses on every load.
`TIDINGS_DBT_TARGET_PATH` moves dbt's artifacts elsewhere (tests use it so parallel dbt runs never share
a target folder). dagster-dbt runs `dbt` from PATH; when the virtualenv is not activated (e.g. `dagster dev`
started by its full path), the interpreter's own bin folder is added so the `dbt` installed beside it is found.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import cache
from pathlib import Path

from dagster_dbt import DbtProject

from syncs import settings


def dbt_target_path() -> Path:
    return Path(os.environ.get("TIDINGS_DBT_TARGET_PATH", "target"))


@cache
def tidings_dbt_project() -> DbtProject:
    if shutil.which("dbt") is None:
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    project_dir = settings.dbt_project_dir()
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir, target_path=dbt_target_path())


PROJECT_SOURCES = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
PROJECT_SUFFIXES = frozenset({".sql", ".yml", ".yaml", ".csv", ".py", ".md"})


def ensure_manifest() -> Path:
    """Path to a loadable manifest: parsed now if absent or stale, or if `dagster dev` asks for a fresh one."""
    project = tidings_dbt_project()
    manifest = project.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_change(project.project_dir):
        project.prepare_if_dev()
    else:
        project.preparer.prepare(project)
    return manifest


def _newest_source_change(project_dir: Path) -> float:
    candidates = [project_dir / "dbt_project.yml", project_dir / "packages.yml"]
    for folder in PROJECT_SOURCES:
        candidates += (path for path in (project_dir / folder).rglob("*") if path.suffix in PROJECT_SUFFIXES)
    return max((path.stat().st_mtime for path in candidates if path.is_file()), default=0.0)
