"""Every dbt model, seed and snapshot as a Dagster asset; every dbt test as a blocking asset check.

Assets are grouped by the folder they live in (staging, intermediate, core, lifecycle, segments, messages,
metrics) and carry the model's `meta.owner`. All of them share the `duckdb` pool with the sync assets:
see `orchestration.definitions` for why warehouse writers are serialized.

Two `@dbt_assets` definitions split the project:
- `tidings_dbt_models`, unpartitioned: everything the syncs need, rebuilt "as of today" by `daily_full_build`;
- `tidings_dbt_metrics`, partitioned by day: the history metrics (`models/marts/metrics`), whose SQL is anchored
  on the dbt var `as_of_date`. Partition `2026-11-01` runs `dbt build --vars '{as_of_date: 2026-11-01}'`, i.e.
  the metrics as of that date (facts strictly before it), so a backfill of N days rebuilds the metrics as of
  each of those days, one run per day. The metrics models are tables recomputed in full on each run (none is
  incremental): the warehouse keeps the result of the last partition that ran, and Dagster keeps each
  partition's materialization and check results. A metrics model that something else reads (a model or a sync;
  today `metrics_customer_clv`, read by the `seg_top_clv_lookalike` audience) stays unpartitioned: an audience
  must read current values, not whichever day was backfilled last.
"""

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.dbt_manifest import validate_manifest

from orchestration import dbt_runs
from orchestration.project import ensure_manifest, tidings_dbt_project

DUCKDB_POOL = "duckdb"
METRICS_FOLDER = ("marts", "metrics")
METRICS_START_ENV = "TIDINGS_METRICS_START_DATE"
DEFAULT_METRICS_START = "2025-01-01"
AS_OF_DATE_VAR = "as_of_date"


class TidingsDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # fqn is [project, folder, ..., name]; marts are grouped by their business area, not "marts".
        folders = dbt_resource_props["fqn"][1:-1]
        if folders[:1] == ["marts"] and len(folders) > 1:
            return folders[1]
        return folders[0] if folders else dbt_resource_props["resource_type"]

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        owner = dbt_resource_props.get("config", {}).get("meta", {}).get("owner") or dbt_resource_props.get(
            "meta", {}
        ).get("owner")
        return [owner] if owner and "@" in owner else None


TRANSLATOR = TidingsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def partitioned_metrics_models(manifest: Mapping[str, Any]) -> list[str]:
    """Names of the metrics models built per day: those no sync reads and no other model reads, save another
    partitioned metrics model."""
    nodes = manifest["nodes"]

    def declares_syncs(node: Mapping[str, Any]) -> bool:
        meta = node.get("config", {}).get("meta") or node.get("meta") or {}
        return bool((meta.get("tidings") or {}).get("syncs"))

    chosen = {
        unique_id
        for unique_id, node in nodes.items()
        if node["resource_type"] == "model" and tuple(node["fqn"][1:3]) == METRICS_FOLDER and not declares_syncs(node)
    }
    while True:  # drop models read by something outside the set, until nothing changes
        readers = {
            unique_id: {
                child
                for child in manifest["child_map"].get(unique_id, [])
                if child.split(".", 1)[0] not in {"test", "unit_test"}
            }
            for unique_id in chosen
        }
        kept = {unique_id for unique_id in chosen if readers[unique_id] <= chosen}
        if kept == chosen:
            return sorted(nodes[unique_id]["name"] for unique_id in chosen)
        chosen = kept


def metrics_partitions_def() -> dg.DailyPartitionsDefinition:
    """One partition per as-of date, from `TIDINGS_METRICS_START_DATE` (default 2025-01-01) to today (UTC).

    `end_offset=1` makes today's partition exist: as of today means "facts strictly before today", which is
    what the unpartitioned models use on the same day.
    """
    start = date.fromisoformat(os.environ.get(METRICS_START_ENV) or DEFAULT_METRICS_START)
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=1)


MANIFEST = validate_manifest(ensure_manifest())
METRICS_MODELS = partitioned_metrics_models(MANIFEST)
METRICS_PARTITIONS = metrics_partitions_def()


@dbt_assets(
    manifest=MANIFEST,
    project=tidings_dbt_project(),
    exclude=" ".join(METRICS_MODELS) or None,
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def tidings_dbt_models(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[object]:
    """`dbt build` of the selected models: runs each model, then its tests, skipping what a failed test feeds."""
    yield from dbt_build(context, dbt, [])


@dbt_assets(
    manifest=MANIFEST,
    project=tidings_dbt_project(),
    select=" ".join(METRICS_MODELS),
    name="tidings_dbt_metrics",
    partitions_def=METRICS_PARTITIONS,
    # One run per day: each partition is the metrics as of its own date (dagster-dbt's default for time
    # partitions would build a whole range in one run, as of a single date).
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    dagster_dbt_translator=TRANSLATOR,
    pool=DUCKDB_POOL,
)
def tidings_dbt_metrics(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[object]:
    """`dbt build` of the history metrics as of the partition's date (`--vars '{as_of_date: <partition>}'`)."""
    as_of = partition_as_of_date(context)
    context.log.info(f"building the metrics as of {as_of}")
    dbt_vars = json.dumps({AS_OF_DATE_VAR: as_of})
    for event in dbt_build(context, dbt, ["--vars", dbt_vars]):
        if isinstance(event, dg.Output):
            event = event.with_metadata({**event.metadata, AS_OF_DATE_VAR: as_of})
        yield event


def dbt_build(context: AssetExecutionContext, dbt: DbtCliResource, args: list[str]) -> Iterator[object]:
    """`dbt build` with `args`, its artifacts in a run folder of its own; the op's oldest run folders go once it
    ends (`orchestration.dbt_runs`)."""
    kept = dbt_runs.folders_kept()
    invocation = dbt.cli(["build", *args], context=context, target_path=dbt_runs.run_folder(context))
    try:
        yield from invocation.stream()
    finally:
        removed = dbt_runs.remove_older_run_folders(invocation.target_path, kept)
        if removed:
            context.log.debug(f"removed {len(removed)} older dbt run folder(s); {dbt_runs.KEPT_ENV}={kept}")


def partition_as_of_date(context: AssetExecutionContext) -> str:
    """The as-of date of the run: its partition key; for a run over a range of days, the last day."""
    keys = context.partition_key_range
    if keys.start != keys.end:
        context.log.warning(f"a run over {keys.start}..{keys.end} builds the metrics once, as of {keys.end}")
    return keys.end
