"""The `tidings_leftover_state` sensor: in the Dagster UI, the state left under names no declared sync has, and
the syncs pointed at another destination or target than their members' (`syncs.sync_places`: their runs are
blocked until the members are moved or the sync is retargeted).

A sync removed from its YAML (or renamed without `renamed_from`) disappears from the asset graph, but its members
stay in the destination and its state, with their identifiers, in the warehouse. `tidings validate` warns of it;
this sensor says it where data engineers look. It never requests a run: each tick is skipped with the finding as
its reason (the sensor's tick history), and each name is logged as a warning in the tick's logs. It reads only
while no run is queued or in progress.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.resources import TidingsResource
from syncs.engine import load_project, state_findings
from syncs.state import WarehouseBusy

SENSOR_NAME = "tidings_leftover_state"
CHECK_EVERY_SECONDS = 3600
# While a run may be using the warehouse the sensor does not read it: DuckDB lets no process open a file for
# writing while another holds it open, even read-only, so a run starting during the read would fail. A run takes
# seconds from being queued to opening the warehouse, far longer than the read. Runs created more than
# STALE_RUN_HOURS ago are not waited for: without Dagster's run monitoring, a run whose process died stays STARTED.
STALE_RUN_HOURS = 6
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def build_leftover_state_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=CHECK_EVERY_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Hourly: state left in the warehouse by removed or renamed syncs (never requests a run).",
    )
    def tidings_leftover_state(context: dg.SensorEvaluationContext, tidings: TidingsResource) -> dg.SkipReason:
        recent = datetime.now(UTC) - timedelta(hours=STALE_RUN_HOURS)
        unfinished = dg.RunsFilter(statuses=UNFINISHED, created_after=recent)
        if running := context.instance.get_runs(filters=unfinished, limit=1):
            return dg.SkipReason(f"not checked: run {running[0].run_id} may be writing the warehouse")
        warehouse = tidings.warehouse_path()
        if not warehouse.exists():
            return dg.SkipReason(f"not checked: warehouse {warehouse} does not exist")
        try:
            found, moved = state_findings(load_project(), warehouse)
        except WarehouseBusy:  # a process outside Dagster writes it (a CLI run): DuckDB lets no other process in
            return dg.SkipReason(f"not checked: another process has {warehouse} open; checked again next tick")
        if not found and not moved:
            return dg.SkipReason("no state left under names no declared sync has")
        advice = [leftover.advice() for leftover in found] + [f"runs are blocked: {move.blocked()}" for move in moved]
        for line in advice:
            context.log.warning(line)
        summary = [
            f"state left under {len(found)} name(s) no declared sync has." if found else "",
            f"{len(moved)} sync(s) point at another destination or target than their members'." if moved else "",
        ]
        return dg.SkipReason(" ".join([*filter(None, summary), *advice]))

    return tidings_leftover_state
