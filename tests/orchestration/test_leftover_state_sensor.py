"""The Dagster UI says when a removed or renamed sync left state in the warehouse (`tidings_leftover_state`)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from orchestration import leftover_state
from orchestration.leftover_state import SENSOR_NAME
from orchestration.resources import TidingsResource
from syncs import state
from syncs.engine import load_project
from tests.warehouse_lock import held_open_elsewhere


def warehouse_with_state_of(path: Path, name: str) -> Path:
    """A warehouse whose sync state holds two members of a mirror `name`, which no YAML declares."""
    con = empty_warehouse(path)
    try:
        con.execute(
            "insert into tidings.sync_state values (?, 'c1', 'h1', '{\"email\": \"a@example.com\"}', null, now()), "
            "(?, 'c2', 'h2', '{\"email\": \"b@example.com\"}', null, now())",
            [name, name],
        )
        con.execute(
            "insert into tidings.sync_runs (run_id, sync_name, mode, dry_run, status, started_at) "
            "values ('r1', ?, 'mirror', false, 'success', now())",
            [name],
        )
    finally:
        con.close()
    return path


def empty_warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    duckdb.connect(str(path)).close()
    con = state.connect(path)
    state.ensure_schema(con)
    return con


def evaluate(
    defs: dg.Definitions, warehouse: Path, instance: dg.DagsterInstance | None = None
) -> tuple[str, list[str]]:
    """The sensor's skip reason and the warnings it logged."""
    sensor = defs.get_sensor_def(SENSOR_NAME)
    resources = {"tidings": TidingsResource(warehouse=str(warehouse))}
    with dg.build_sensor_context(instance=instance or dg.DagsterInstance.ephemeral(), resources=resources) as context:
        warnings: list[str] = []
        context.log.warning = warnings.append  # type: ignore[method-assign]
        result = sensor(context)
    assert isinstance(result, dg.SkipReason)  # it never asks for a run
    return result.skip_message or "", warnings


def test_the_sensor_names_state_a_removed_sync_left_and_how_to_clear_it(defs, tmp_path):
    warehouse = warehouse_with_state_of(tmp_path / "warehouse.duckdb", "winback_meta_2025")

    reason, warnings = evaluate(defs, warehouse)

    assert reason.startswith("state left under 1 name(s) no declared sync has.")
    assert "winback_meta_2025: 2 member(s)" in reason and "`tidings forget winback_meta_2025`" in reason
    assert "`renamed_from: winback_meta_2025`" in reason and "--remove-all" in reason
    assert warnings == [reason.split(". ", 1)[1]]
    assert "example.com" not in reason  # counts, never the rows


def test_the_sensor_names_a_sync_pointed_away_from_its_members(defs, tmp_path):
    """Its runs are blocked (`syncs.sync_places`); the sensor says so before the next run fails."""
    name = next(spec.name for spec in load_project().syncs.values() if spec.mode.value == "mirror")
    con = empty_warehouse(tmp_path / "warehouse.duckdb")
    try:
        con.execute("insert into tidings.sync_state values (?, 'c1', 'h1', '{}', null, now())", [name])
        earlier = {"destination": "an_old_account", "type": "webhook", "target": {"topic": "old"}}
        con.execute("insert into tidings.sync_places values (?, ?, now())", [name, json.dumps(earlier)])
    finally:
        con.close()

    reason, warnings = evaluate(defs, tmp_path / "warehouse.duckdb")

    assert reason.startswith("1 sync(s) point at another destination or target than their members'.")
    assert warnings == [reason.split("members'. ", 1)[1]]
    assert warnings[0].startswith(f"runs are blocked: retargeted: sync {name!r} now points at ")
    assert "1 member(s) sent to an_old_account (webhook)" in reason and "--retarget" in reason


def test_the_sensor_skips_quietly_when_nothing_is_left_or_the_warehouse_is_busy(defs, tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    empty_warehouse(warehouse).close()
    assert evaluate(defs, warehouse) == ("no state left under names no declared sync has", [])

    with held_open_elsewhere(warehouse):
        reason, warnings = evaluate(defs, warehouse)
    assert reason.startswith("not checked: another process has") and not warnings


def test_the_sensor_does_not_open_the_warehouse_while_a_run_may_be_writing_it(defs, tmp_path, monkeypatch):
    """A run opening the warehouse while the sensor reads it would fail: DuckDB lets no writer in then."""
    warehouse = warehouse_with_state_of(tmp_path / "warehouse.duckdb", "winback_meta_2025")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(dg.DagsterRun(job_name="daily_full_build", run_id="nightly", status=dg.DagsterRunStatus.STARTED))

    assert evaluate(defs, warehouse, instance) == ("not checked: run nightly may be writing the warehouse", [])
    monkeypatch.setattr(leftover_state, "STALE_RUN_HOURS", 0)  # a run whose process died stays STARTED for good
    assert evaluate(defs, warehouse, instance)[0].startswith("state left under 1 name(s)")
    monkeypatch.undo()
    instance.delete_run("nightly")  # finished and gone
    assert evaluate(defs, warehouse, instance)[0].startswith("state left under 1 name(s)")


def test_a_missing_or_broken_warehouse_is_not_reported_as_nothing_left_or_busy(defs, tmp_path):
    missing = tmp_path / "missing.duckdb"
    assert evaluate(defs, missing) == (f"not checked: warehouse {missing} does not exist", [])
    broken = tmp_path / "broken.duckdb"
    broken.write_text("not a database")
    with pytest.raises(duckdb.IOException, match="not a valid DuckDB database file"):
        evaluate(defs, broken)  # the tick errors, visibly


def test_the_sensor_is_on_by_default_and_checks_hourly(defs):
    sensor = defs.get_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 3600
