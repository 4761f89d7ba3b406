"""A partition of `daily_metrics` rebuilds the history metrics as of its own date (dbt var `as_of_date`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from orchestration_helpers import check_evaluations, materialized_metadata

from orchestration import dbt_runs
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


PARTITION = "2026-10-15"  # not the session's TIDINGS_AS_OF_DATE (2026-11-01), which dbt would use without the var
REPO_TARGET = Path(__file__).resolve().parents[2] / "dbt_project" / "target"
PartitionRun = tuple[dg.ExecuteInProcessResult, Path, set[Path]]


@pytest.fixture(scope="module")
def partition_run(defs: dg.Definitions, graph_warehouse: Path) -> Iterator[PartitionRun]:
    """One partition of `daily_metrics`, keeping one dbt run folder, after two older metrics runs and a models run
    left theirs in the target folder; yields the result, the target folder and what appeared in dbt_project/target."""
    target = Path(os.environ["TIDINGS_DBT_TARGET_PATH"])
    for age, name in enumerate(("tidings_dbt_metrics-0000001-aaaaaaa", "tidings_dbt_metrics-0000002-bbbbbbb")):
        (target / name).mkdir(parents=True)
        (target / name / "dbt.log").write_text("an earlier run")
        os.utime(target / name, (1_700_000_000 + age, 1_700_000_000 + age))
    (target / "tidings_dbt_models-0000003-ccccccc").mkdir()
    repo_target_before = set(REPO_TARGET.iterdir()) if REPO_TARGET.exists() else set()
    with pytest.MonkeyPatch.context() as env:
        env.setenv(dbt_runs.KEPT_ENV, "1")
        result = defs.resolve_job_def("daily_metrics").execute_in_process(
            partition_key=PARTITION, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )
    repo_target_after = set(REPO_TARGET.iterdir()) if REPO_TARGET.exists() else set()
    yield result, target, repo_target_after - repo_target_before


def test_a_partition_rebuilds_the_metrics_as_of_its_date(partition_run: PartitionRun, graph_warehouse: Path):
    result, _, _ = partition_run
    assert result.success
    materialized = materialized_metadata(result)
    assert set(materialized) == {dg.AssetKey([model]) for model in METRICS_MODELS}
    assert {metadata["as_of_date"] for metadata in materialized.values()} == {PARTITION}
    assert {event.partition for event in result.all_events if event.event_type_value == "ASSET_MATERIALIZATION"} == {
        PARTITION
    }
    checks = check_evaluations(result)
    assert checks and all(evaluation.passed for evaluation in checks.values())
    day_before = date.fromisoformat(PARTITION) - timedelta(days=1)
    assert last_day_measured(graph_warehouse) == (day_before, day_before)


def test_the_run_keeps_its_dbt_folder_in_the_target_path_and_removes_the_oldest(
    partition_run: PartitionRun,
):
    """dagster-dbt would leave a 9 MB folder per run in dbt_project/target forever: the run's folder is under
    TIDINGS_DBT_TARGET_PATH, and with TIDINGS_DBT_RUN_FOLDERS_KEPT=1 the metrics runs before it are gone (not the
    models run's folder)."""
    result, target, new_in_repo_target = partition_run
    assert new_in_repo_target == set()
    metrics_folders = sorted(target.glob("tidings_dbt_metrics-*"))
    assert [folder.name.split("-")[1] for folder in metrics_folders] == [result.run_id[:7]]
    assert (metrics_folders[0] / "run_results.json").exists() and (metrics_folders[0] / "dbt.log").exists()
    assert (target / "tidings_dbt_models-0000003-ccccccc").is_dir()


@pytest.mark.parametrize("value", ["0", "-3", "twenty"])
def test_a_bad_number_of_run_folders_to_keep_names_the_variable(value: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(dbt_runs.KEPT_ENV, value)
    with pytest.raises(ValueError, match=f"{dbt_runs.KEPT_ENV}='{value}'"):
        dbt_runs.folders_kept()
