"""Where things live. Every path can be overridden by an environment variable; defaults sit inside the repo."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
AS_OF_ENV = "TIDINGS_AS_OF_DATE"  # the date dbt's as_of_date() and the sample-data generator take for "today"


def _path_from_env(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def dbt_project_dir() -> Path:
    return _path_from_env("TIDINGS_DBT_PROJECT_DIR", REPO_ROOT / "dbt_project")


def warehouse_path(project_dir: Path | None = None) -> Path:
    """The DuckDB warehouse file; dbt's profiles.yml reads the same variable. `project_dir` stands in for
    TIDINGS_DBT_PROJECT_DIR (the CLI's --project-dir)."""
    return _path_from_env("TIDINGS_WAREHOUSE", (project_dir or dbt_project_dir()) / "warehouse" / "warehouse.duckdb")


def destinations_file(project_dir: Path | None = None) -> Path:
    return _path_from_env("TIDINGS_DESTINATIONS_FILE", (project_dir or dbt_project_dir()) / "destinations.yml")


def exports_dir() -> Path:
    return _path_from_env("TIDINGS_EXPORTS_DIR", REPO_ROOT / "exports")


def models_schema() -> str:
    """Schema dbt builds models into (dbt-duckdb target schema)."""
    return os.environ.get("TIDINGS_MODELS_SCHEMA", "analytics")


def duckdb_memory_limit() -> str:
    """DuckDB memory limit for sync engine connections (`TIDINGS_DUCKDB_MEMORY_LIMIT`, e.g. 512MB; empty: DuckDB's
    default of 80% of RAM)."""
    return os.environ.get("TIDINGS_DUCKDB_MEMORY_LIMIT", "512MB")


def commit_interval_seconds() -> float:
    """How long an acknowledged batch may wait for others to share its state commit
    (`TIDINGS_COMMIT_INTERVAL_SECONDS`, default 0.25; 0 commits each batch as soon as the committer is free)."""
    text = os.environ.get("TIDINGS_COMMIT_INTERVAL_SECONDS", "").strip()
    if not text:
        return 0.25
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:
        raise ValueError(f"TIDINGS_COMMIT_INTERVAL_SECONDS must be a number of seconds from 0 to 60, got {text!r}")
    return seconds


STATE_SCHEMA = "tidings"
RAW_SCHEMA = "raw"
