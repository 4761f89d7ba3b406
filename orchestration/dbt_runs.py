"""Where dbt's runs under Dagster keep their artifacts, and how many are kept.

dagster-dbt gives each dbt invocation a folder of its own (manifest, run results, compiled SQL and dbt.log:
about 9 MB for this project), by default under `dbt_project/target` whatever the project's target path, and
never removes one: the hourly `triggered_messages` job alone would leave 80 GB a year. The assets run dbt in a
folder under the project's target path (`TIDINGS_DBT_TARGET_PATH`, beside the manifest), named like
dagster-dbt's (`<op>-<run id>-<random>`), and once it ends remove that op's folders but the newest
`TIDINGS_DBT_RUN_FOLDERS_KEPT` (default 20), so the last runs' logs and failures stay there to read.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from dagster import AssetExecutionContext

from orchestration.project import tidings_dbt_project

KEPT_ENV = "TIDINGS_DBT_RUN_FOLDERS_KEPT"
DEFAULT_KEPT = 20
PARTIAL_PARSE = "partial_parse.msgpack"


def run_folder(context: AssetExecutionContext) -> Path:
    """A new folder for this step's dbt invocation, holding the project's last parse (`dbt parse` of
    `ensure_manifest`) so dbt re-parses only what changed since (dagster-dbt would copy it from
    `dbt_project/target`, wherever the target path is)."""
    project = tidings_dbt_project()
    target = project.project_dir / project.target_path
    folder = target / f"{context.op_execution_context.op.name}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    folder.mkdir(parents=True)
    if (target / PARTIAL_PARSE).exists():
        shutil.copy(target / PARTIAL_PARSE, folder / PARTIAL_PARSE)
    return folder


def folders_kept() -> int:
    value = os.environ.get(KEPT_ENV, "")
    try:
        kept = int(value) if value else DEFAULT_KEPT
    except ValueError:
        raise ValueError(f"{KEPT_ENV}={value!r}: give a whole number of dbt run folders to keep (at least 1)") from None
    if kept < 1:
        raise ValueError(f"{KEPT_ENV}={value!r}: keep at least 1 dbt run folder (the run's own)")
    return kept


def remove_older_run_folders(folder: Path, kept: int) -> list[Path]:
    """Remove the folders of `folder`'s op but the newest `kept` (by last change; `folder` is always kept).
    Returns the folders removed."""
    op_name = folder.name.rsplit("-", 2)[0]
    siblings = [
        path
        for path in folder.parent.glob(f"{op_name}-*-*")
        if path.is_dir() and path.name.rsplit("-", 2)[0] == op_name and path != folder
    ]
    siblings.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    removed = siblings[max(kept - 1, 0) :]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed
