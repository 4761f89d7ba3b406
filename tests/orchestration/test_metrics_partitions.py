"""A partition of `daily_metrics` rebuilds the history metrics as of its own date (dbt var `as_of_date`)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from orchestration_helpers import check_evaluations, materialized_metadata

from orchestration.dbt_assets import METRICS_MODELS

pytestmark = pytest.mark.slow

SCHEMA = "analytics"


def last_day_measured(warehouse: Path) -> tuple[date, date]:
    """The last daily period of two metrics: both end the day before the as-of date."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        kpis = con.execute(
            f"select max(period_start) from {SCHEMA}.metrics_business_kpis where period_grain = 'day'"
        ).fetchone()[0]
        stages = con.execute(
            f"select max(period_start) from {SCHEMA}.metrics_lifecycle_stage_counts where period_grain = 'day'"
        ).fetchone()[0]
    return kpis, stages


def test_a_partition_rebuilds_the_metrics_as_of_its_date(defs: dg.Definitions, graph_warehouse: Path):
    # Not the session's TIDINGS_AS_OF_DATE (2026-11-01), which dbt would use without the partition's var.
    partition = "2026-10-15"
    job = defs.resolve_job_def("daily_metrics")

    result = job.execute_in_process(
        partition_key=partition, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )

    assert result.success
    materialized = materialized_metadata(result)
    assert set(materialized) == {dg.AssetKey([model]) for model in METRICS_MODELS}
    assert {metadata["as_of_date"] for metadata in materialized.values()} == {partition}
    assert {event.partition for event in result.all_events if event.event_type_value == "ASSET_MATERIALIZATION"} == {
        partition
    }
    checks = check_evaluations(result)
    assert checks and all(evaluation.passed for evaluation in checks.values())
    day_before = date.fromisoformat(partition) - timedelta(days=1)
    assert last_day_measured(graph_warehouse) == (day_before, day_before)
