"""Resources, configured by environment variables with working defaults.

Paths resolve when a run starts, not when the code location loads, so `TIDINGS_WAREHOUSE` is read in one
place (`syncs.settings`) by dbt, the sync engine and the quality gates alike. Destination secrets never pass
through Dagster config: `destinations.yml` names the environment variables (`*_env` fields) and the sync
engine reads them when it connects, so no secret can land in run config or run history.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from pydantic import Field

from orchestration.project import tidings_dbt_project
from syncs import settings


class TidingsResource(dg.ConfigurableResource):
    """Where the warehouse lives and how strict the audience-size gate is."""

    warehouse: str | None = Field(
        default=None, description="DuckDB file; unset means TIDINGS_WAREHOUSE or the repo default."
    )
    audience_max_shrink: float = Field(
        default=0.5, description="Largest allowed drop of an audience's size against its last passing check."
    )
    audience_max_growth: float = Field(
        default=1.0, description="Largest allowed growth of an audience's size against its last passing check."
    )

    def warehouse_path(self) -> Path:
        return Path(self.warehouse).expanduser().resolve() if self.warehouse else settings.warehouse_path()


def default_resources() -> dict[str, object]:
    project = tidings_dbt_project()
    return {
        "dbt": DbtCliResource(project_dir=project, profiles_dir=str(project.profiles_dir)),
        "tidings": TidingsResource(
            audience_max_shrink=float(os.environ.get("TIDINGS_AUDIENCE_MAX_SHRINK", "0.5")),
            audience_max_growth=float(os.environ.get("TIDINGS_AUDIENCE_MAX_GROWTH", "1.0")),
        ),
    }
