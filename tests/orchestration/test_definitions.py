"""The code location loads without Great Expectations, and its jobs, schedules and automation target the right
assets; the history metrics are partitioned by day and kept out of the daily build."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import dagster as dg
import pytest
from orchestration_helpers import sync_keys

from orchestration.dbt_assets import METRICS_MODELS, partitioned_metrics_models, tidings_dbt_metrics
from orchestration.schedules import is_triggered_message_model
from orchestration.sync_assets import SYNC_RETRY_POLICY, sync_asset_key
from syncs.engine import load_project

# Importing the definitions takes about 3.5 s on an idle 2-core machine (nearly all of it importing dagster and
# dagster-dbt); no timing is asserted here. Great Expectations at module level would add 4-5 s: see below.


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


def metrics_keys() -> set[dg.AssetKey]:
    return {dg.AssetKey([model]) for model in METRICS_MODELS}


def scheduled_sync_keys() -> set[dg.AssetKey]:
    return {sync_asset_key(name) for name, spec in load_project().syncs.items() if spec.schedule}


def test_daily_build_covers_everything_but_the_partitioned_metrics_and_scheduled_syncs(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    daily = defs.resolve_job_def("daily_full_build")
    assert daily.partitions_def is None
    scheduled = scheduled_sync_keys()
    assert sync_asset_key("lapsed_high_value_mailhouse") in scheduled  # monthly: never in a daily job
    assert daily.asset_layer.selected_asset_keys == graph.materializable_asset_keys - metrics_keys() - scheduled
    daily_checks = daily.asset_layer.asset_graph.asset_check_keys
    assert daily_checks and not {key for key in daily_checks if key.asset_key in metrics_keys()}
    assert dg.AssetKey(["metrics_customer_clv"]) in daily.asset_layer.selected_asset_keys  # an audience reads it


def test_triggered_messages_only_message_syncs(defs: dg.Definitions):
    triggered = defs.resolve_job_def("triggered_messages").asset_layer.selected_asset_keys
    assert dg.AssetKey(["message_queue"]) in triggered
    for name, spec in load_project().syncs.items():
        expected = is_triggered_message_model(spec.model) and not spec.schedule
        assert (sync_asset_key(name) in triggered) == expected
    assert not triggered & metrics_keys()
    schedules = {schedule.name: schedule for schedule in defs.schedules}
    assert schedules["daily_full_build_schedule"].job_name == "daily_full_build"
    assert schedules["triggered_messages_schedule"].job_name == "triggered_messages"


def test_history_metrics_are_partitioned_by_day(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    assert "metrics_business_kpis" in METRICS_MODELS and "metrics_customer_clv" not in METRICS_MODELS
    for key in graph.materializable_asset_keys:
        partitions = graph.get(key).partitions_def
        if key in metrics_keys():
            assert isinstance(partitions, dg.DailyPartitionsDefinition), key
            assert graph.get(key).group_name == "metrics"
        else:
            assert partitions is None, key
    job = defs.resolve_job_def("daily_metrics")
    assert job.asset_layer.selected_asset_keys == metrics_keys()
    checked = {key.asset_key for key in job.asset_layer.asset_graph.asset_check_keys}
    assert checked == metrics_keys()  # each metrics model's dbt tests run in its partition's run
    assert tidings_dbt_metrics.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


@pytest.mark.parametrize("day", ["2026-11-01", "2026-11-23"])
def test_metrics_schedule_builds_the_partition_of_its_day(defs: dg.Definitions, day: str):
    schedule = defs.resolve_schedule_def("daily_metrics_schedule")
    assert schedule.job_name == "daily_metrics"
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 7 * * *", "UTC")
    tick = datetime.fromisoformat(day).replace(hour=7, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        requests = schedule.evaluate_tick(context).run_requests
    assert [(request.job_name, request.partition_key) for request in requests] == [("daily_metrics", day)]


def fake_manifest(models: dict[str, tuple[str, list[str]]], syncs: frozenset[str] = frozenset()) -> dict:
    """models: name -> (folder under marts, names of the models that read it)."""
    nodes = {
        f"model.p.{name}": {
            "name": name,
            "resource_type": "model",
            "fqn": ["p", "marts", folder, name],
            "config": {"meta": {"tidings": {"syncs": [{"name": "s"}]}} if name in syncs else {}},
        }
        for name, (folder, _) in models.items()
    }
    child_map = {
        f"model.p.{name}": [f"model.p.{child}" for child in readers] + [f"test.p.unique_{name}"]
        for name, (_, readers) in models.items()
    }
    return {"nodes": nodes, "child_map": child_map}


def test_metrics_read_by_an_unpartitioned_model_or_a_sync_stay_unpartitioned():
    manifest = fake_manifest(
        {
            "metrics_daily": ("metrics", ["metrics_rollup"]),
            "metrics_rollup": ("metrics", []),
            "metrics_clv": ("metrics", ["metrics_feeds_audience"]),
            "metrics_feeds_audience": ("metrics", ["seg_top"]),
            "metrics_synced": ("metrics", []),
            "seg_top": ("segments", []),
        },
        syncs=frozenset({"metrics_synced"}),
    )
    assert partitioned_metrics_models(manifest) == ["metrics_daily", "metrics_rollup"]


def test_syncs_run_after_their_model_refreshes_once_gates_pass(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    for name, spec in load_project().syncs.items():
        assert defs.resolve_assets_def(sync_asset_key(name)).op.retry_policy == SYNC_RETRY_POLICY
        condition = graph.get(sync_asset_key(name)).automation_condition
        labels = {child.get_label() for child in condition.children}
        assert "all_deps_blocking_checks_passed" in labels
        assert ("eager" in labels) != bool(spec.schedule)
    sensor = defs.resolve_sensor_def("tidings_automation")
    assert set(sync_keys(defs)) <= sensor.asset_selection.resolve(graph)


def test_the_suppression_and_control_group_tests_gate_the_message_queue(defs):
    checks = {
        key.name
        for key in defs.resolve_asset_graph().asset_check_keys
        if key.asset_key == dg.AssetKey(["message_queue"])
    }
    assert {
        "assert_no_suppressed_or_nonconsenting_recipients",
        "assert_global_control_group_gets_no_marketing",
    } <= checks


def test_a_manifest_older_than_a_project_file_is_parsed_again(tmp_path, monkeypatch):
    """A model or YAML edited after the last parse is missing from the manifest: `dbt build` then fails mapping its
    events to assets (make demo crashed on a new unit test), so the manifest is parsed again, and only then."""
    from types import SimpleNamespace

    from orchestration import project

    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "m.sql"
    model.write_text("select 1")
    manifest = tmp_path / "target" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text("{}")
    parses: list[object] = []
    fake = SimpleNamespace(
        manifest_path=manifest,
        project_dir=tmp_path,
        preparer=SimpleNamespace(prepare=parses.append),
        prepare_if_dev=lambda: None,
    )
    monkeypatch.setattr(project, "tidings_dbt_project", lambda: fake)
    os.utime(model, (1_000, 1_000))
    os.utime(manifest, (2_000, 2_000))
    assert project.ensure_manifest() == manifest and parses == []
    os.utime(model, (3_000, 3_000))
    project.ensure_manifest()
    assert parses == [fake]
