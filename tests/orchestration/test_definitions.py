"""The code location loads fast, and its jobs, schedules and automation target the right assets."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import dagster as dg
from orchestration_helpers import sync_keys

from orchestration.schedules import is_triggered_message_model
from orchestration.sync_assets import sync_asset_key
from syncs.engine import load_project

# Measured 2.4 s on an idle 2-core machine (nearly all of it importing dagster and dagster-dbt), about 5 s under
# load; importing Great Expectations at module level would add 4-5 s.
LOAD_BUDGET_SECONDS = 10.0


def test_definitions_load_within_budget(defs: dg.Definitions):
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import orchestration.definitions"], check=True, env=os.environ.copy())
    elapsed = time.monotonic() - started
    assert elapsed < LOAD_BUDGET_SECONDS, f"importing the definitions took {elapsed:.1f} s"


def test_great_expectations_is_not_imported_with_the_definitions():
    probe = "import sys, orchestration.definitions; print('great_expectations' in sys.modules, 'scipy' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert output.split() == ["False", "False"]


def test_one_asset_per_declared_sync_downstream_of_its_model(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    syncs = load_project().syncs
    assert sync_keys(defs) == sorted(sync_asset_key(name) for name in syncs)
    for name, spec in syncs.items():
        node = graph.get(sync_asset_key(name))
        assert node.parent_keys == {dg.AssetKey([spec.model])}
        assert node.group_name == f"syncs_{spec.channel}"
        assert node.pools == {"duckdb"}


def test_models_read_by_syncs_have_blocking_gates(defs: dg.Definitions):
    blocking = {node.key for node in defs.resolve_asset_graph().asset_check_nodes if node.blocking}
    for spec in load_project().syncs.values():
        assert dg.AssetCheckKey(dg.AssetKey([spec.model]), "great_expectations_gate") in blocking


def test_daily_build_covers_everything_and_triggered_messages_only_message_syncs(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    daily = defs.resolve_job_def("daily_full_build").asset_layer.selected_asset_keys
    assert daily == graph.materializable_asset_keys
    triggered = defs.resolve_job_def("triggered_messages").asset_layer.selected_asset_keys
    for name, spec in load_project().syncs.items():
        assert (sync_asset_key(name) in triggered) == is_triggered_message_model(spec.model)
    schedules = {schedule.name: schedule for schedule in defs.schedules}
    assert schedules["daily_full_build_schedule"].job_name == "daily_full_build"
    assert schedules["triggered_messages_schedule"].job_name == "triggered_messages"


def test_syncs_run_after_their_model_refreshes_once_gates_pass(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    for name, spec in load_project().syncs.items():
        condition = graph.get(sync_asset_key(name)).automation_condition
        labels = {child.get_label() for child in condition.children}
        assert "all_deps_blocking_checks_passed" in labels
        assert ("eager" in labels) != bool(spec.schedule)
    sensor = defs.resolve_sensor_def("tidings_automation")
    assert set(sync_keys(defs)) <= sensor.asset_selection.resolve(graph)
