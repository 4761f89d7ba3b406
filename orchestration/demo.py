"""`make demo`: the whole pipeline on sample data, end to end, in about two minutes.

Starts the destination sandboxes in this process, generates sample customers into the warehouse, then runs
the `daily_full_build` job in-process with the syncs it leaves to their own `schedule:`: dbt build, quality
gates, every sync (HTTP APIs, the SFTP mail house,
file exports), and the `daily_metrics` partition of the as-of date (the history metrics, partitioned by day).
Then it runs the gates and syncs again on the unchanged data: syncs are idempotent, so nothing is sent.

The demo rebuilds its warehouse from scratch, so it only ever deletes a warehouse file it created itself
(marked by a `.demo` file beside it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from orchestration.quality_checks import GATE_CHECK_NAME
from orchestration.sandboxes import running_sandboxes
from orchestration.schedules import DAILY_METRICS_JOB as METRICS_JOB
from orchestration.sync_assets import SYNC_KEY_PREFIX
from syncs import settings

AS_OF_ENV = settings.AS_OF_ENV
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # the summary says what happened


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    warehouse = settings.warehouse_path()
    _reset_demo_warehouse(warehouse)
    os.environ[AS_OF_ENV] = args.as_of.isoformat()  # dbt's as_of_date() and the generator agree on "today"
    sftp_root = settings.exports_dir() / "sandbox-sftp"
    with running_sandboxes(sftp_root) as sandboxes:
        print(f"Sandboxes: HTTP {sandboxes.http.url}, SFTP port {sandboxes.sftp.port} (drops land in {sftp_root})")
        from syncs.sample_data import generate

        started = time.monotonic()
        raw_rows = generate(warehouse, customers=args.customers, seed=args.seed, as_of=args.as_of)
        print(f"Sample data: {args.customers} customers, {sum(raw_rows.values())} raw rows, in {warehouse}")
        from orchestration.definitions import defs

        job = _everything_job(defs)
        instance = dg.DagsterInstance.ephemeral()
        dbt_log = warehouse.with_name("demo-dbt.log")
        dbt_log.unlink(missing_ok=True)
        first = _execute(job, instance, dbt_log)
        print(f"\nFirst run ({time.monotonic() - started:.0f} s): dbt build, quality gates, every sync")
        _print_segments(warehouse)
        _print_syncs(first)
        metrics_ok = _run_metrics(defs, instance, args.as_of, started, warehouse, dbt_log)
        second = _execute(_syncs_and_gates_job(defs), instance, dbt_log)
        print(
            f"\nGates and syncs again on the same data ({time.monotonic() - started:.0f} s in all): "
            "nothing changed, so nothing is sent (file exports write their full file every run)"
        )
        _print_syncs(second)
        _print_exports(first, sftp_root)
        print(f"dbt's log of every run: {dbt_log}")
    return 0 if first.success and metrics_ok and second.success else 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m orchestration.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000, help="sample customers (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=date.fromisoformat(os.environ[AS_OF_ENV]) if os.environ.get(AS_OF_ENV) else date.today(),
        help="the sample's 'today' (default TIDINGS_AS_OF_DATE, else today)",
    )
    return parser.parse_args(argv)


def _reset_demo_warehouse(warehouse: Path) -> None:
    marker = warehouse.with_name(warehouse.name + ".demo")
    if warehouse.exists() and not marker.exists():
        raise SystemExit(
            f"{warehouse} exists and was not created by the demo; the demo rebuilds its warehouse from scratch. "
            "Point TIDINGS_WAREHOUSE at another file, or delete this one if it holds nothing you need."
        )
    for stale in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        stale.unlink(missing_ok=True)
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def _everything_job(defs: dg.Definitions) -> dg.JobDefinition:
    """daily_full_build with the syncs it leaves to their own schedule: the demo runs every sync now."""
    daily = defs.resolve_job_def("daily_full_build")
    graph = defs.resolve_asset_graph()
    syncs = {key for key in graph.get_all_asset_keys() if key.path[0] == SYNC_KEY_PREFIX}
    return defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=daily.asset_layer.selected_asset_keys | syncs,
        asset_check_selection=daily.asset_layer.asset_graph.asset_check_keys,
    )


def _syncs_and_gates_job(defs: dg.Definitions) -> dg.JobDefinition:
    graph = defs.resolve_asset_graph()
    syncs = {key for key in graph.get_all_asset_keys() if key.path[0] == SYNC_KEY_PREFIX}
    gates = {key for key in graph.asset_check_keys if key.name == GATE_CHECK_NAME}
    return defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=syncs, asset_check_selection=gates)


def _print_segments(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:  # same configuration as the engine's connections in this process
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = ? "
            "and (table_name like 'seg\\_%' escape '\\' or table_name = 'message_queue') order by table_name",
            [settings.models_schema()],
        ).fetchall()
        counts = [
            (name, con.execute(f'select count(*) from "{settings.models_schema()}"."{name}"').fetchone()[0])
            for (name,) in tables
        ]
    print("  Rows per audience:")
    for name, count in counts:
        print(f"    {name:<40} {count:>6}")


def _execute(
    job: dg.JobDefinition, instance: dg.DagsterInstance, dbt_log: Path, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """Run `job` in this process; dagster-dbt echoes dbt's log to stdout, so it goes to `dbt_log` instead."""
    with dbt_log.open("a") as log, contextlib.redirect_stdout(log):
        return job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET, **kwargs)


def _run_metrics(
    defs: dg.Definitions, instance: dg.DagsterInstance, as_of: date, started: float, warehouse: Path, dbt_log: Path
) -> bool:
    """The `daily_metrics` partition of the as-of date: the history metrics as of that day."""
    job = defs.resolve_job_def(METRICS_JOB)
    if not job.partitions_def or not job.partitions_def.has_partition_key(as_of.isoformat()):
        print(f"\nMetrics: {as_of} is not a partition of {METRICS_JOB} (see TIDINGS_METRICS_START_DATE): skipped")
        return True
    result = _execute(job, instance, dbt_log, partition_key=as_of.isoformat())
    print(f"\nMetrics partition {as_of} ({time.monotonic() - started:.0f} s in all): {_outcome(result)}")
    if result.success:
        _print_metrics(warehouse)
    return result.success


def _outcome(result: dg.ExecuteInProcessResult) -> str:
    built = {event.asset_key for event in result.all_events if event.event_type_value == "ASSET_MATERIALIZATION"}
    failed = [event.step_key for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    return f"{len(built)} metrics models built" + (f", failed steps: {', '.join(failed)}" if failed else "")


def _print_metrics(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as con:
        rows = con.execute(
            f'select period_grain, count(*), max(period_start) from "{settings.models_schema()}".metrics_business_kpis '
            "group by 1 order by min(period_start) desc"
        ).fetchall()
    print("  metrics_business_kpis (periods up to the day before the as-of date):")
    for grain, count, last in rows:
        print(f"    {grain:<8} {count:>5} periods, last starting {last}")


def _sync_outcomes(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for event in result.all_events:
        key = event.asset_key
        if key is None or key.path[0] != SYNC_KEY_PREFIX:
            continue
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.step_materialization_data.materialization.metadata
            outcomes[key.path[-1]] = f"{metadata['status'].value}: {metadata['rows_sent'].value} sent, " + (
                f"{metadata['rows_removed'].value} removed, {metadata['rows_failed'].value} failed"
            )
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_key and event.step_key.startswith("syncs__"):
            error = event.step_failure_data.user_failure_data
            outcomes[event.step_key.removeprefix("syncs__")] = error.description if error else "failed"
        elif event.event_type_value == "STEP_SKIPPED" and event.step_key and event.step_key.startswith("syncs__"):
            outcomes[event.step_key.removeprefix("syncs__")] = "skipped: an upstream model or gate failed"
    return outcomes


def _print_syncs(result: dg.ExecuteInProcessResult) -> None:
    print("  Syncs:")
    for name, outcome in sorted(_sync_outcomes(result).items()):
        print(f"    {name:<40} {outcome}")


def _print_exports(result: dg.ExecuteInProcessResult, sftp_root: Path) -> None:
    paths = sorted(
        {
            str(path)
            for event in result.all_events
            if event.event_type_value == "ASSET_MATERIALIZATION"
            and "export_paths" in event.step_materialization_data.materialization.metadata
            for path in event.step_materialization_data.materialization.metadata["export_paths"].value
        }
    )
    print("\nFiles written:")
    for path in paths:
        print(f"  {path}")
    print(f"  mail-house drops (sandbox SFTP): {sftp_root}")


if __name__ == "__main__":
    raise SystemExit(main())
