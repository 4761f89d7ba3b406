"""The Tidings code location: `dagster dev -m orchestration.definitions`.

dbt models and tests (`orchestration.dbt_assets`: the history metrics partitioned by day, everything else
unpartitioned), one asset per declared sync (`orchestration.sync_assets`), the Great Expectations gates on every
model a sync reads (`orchestration.quality_checks`), jobs, schedules and automation (`orchestration.schedules`),
the sensor that reports state left by removed syncs (`orchestration.leftover_state`), and resources configured
by environment variables.

DuckDB allows one writing process at a time, so warehouse writers are serialized twice over:
- every job, and every run launched from the UI, uses the in-process executor: the steps of one run execute
  one after another in a single process instead of one process per step;
- dbt assets, sync assets and gates share the concurrency pool `duckdb`; with `concurrency: pools:
  default_limit: 1` in `$DAGSTER_HOME/dagster.yaml` (written by `make dev`), two runs never touch the
  warehouse at the same time either.
"""

from __future__ import annotations

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from orchestration.dbt_assets import tidings_dbt_metrics, tidings_dbt_models
from orchestration.leftover_state import build_leftover_state_sensor
from orchestration.quality_checks import build_quality_checks, group_by_model
from orchestration.resources import default_resources
from orchestration.schedules import build_automation_sensor, build_jobs, build_schedules
from orchestration.sync_assets import build_sync_assets
from syncs.engine import load_project


def build_definitions() -> dg.Definitions:
    syncs = list(load_project().syncs.values())
    syncs_by_model = group_by_model(syncs)
    model_keys = {model: get_asset_key_for_model([tidings_dbt_models], model) for model in syncs_by_model}
    jobs = build_jobs(syncs, tidings_dbt_metrics)
    return dg.Definitions(
        assets=[tidings_dbt_models, tidings_dbt_metrics, *build_sync_assets(syncs, model_keys)],
        asset_checks=build_quality_checks(syncs_by_model, model_keys),
        jobs=jobs,
        schedules=build_schedules(jobs),
        sensors=[build_automation_sensor(), build_leftover_state_sensor()],
        resources=default_resources(),
        executor=dg.in_process_executor,
    )


defs = build_definitions()
