"""The graph in-process on the sample warehouse: the synced models' dbt build, the gates and every sync, then an
idempotent re-run.

The rest of the dbt graph is already built by the session's `built_warehouse`; rebuilding all of it here would
cost a minute (the demo runs the whole `daily_full_build` job).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from orchestration_helpers import check_evaluations, materialized_metadata, sync_keys

from syncs.engine import load_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def synced_models_and_syncs(defs: dg.Definitions) -> dg.JobDefinition:
    graph = defs.resolve_asset_graph()
    selected = dg.AssetSelection.assets(*sync_keys(defs)).upstream(depth=1).resolve(graph)
    checks = {key for key in graph.asset_check_keys if key.asset_key in selected}
    return defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=selected, asset_check_selection=checks
    )


@pytest.fixture(scope="module")
def first_run(defs: dg.Definitions, graph_warehouse: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return synced_models_and_syncs(defs).execute_in_process(instance=instance, raise_on_error=False)


def test_materializes_every_synced_model_and_every_sync(defs: dg.Definitions, first_run: dg.ExecuteInProcessResult):
    assert first_run.success
    materialized = materialized_metadata(first_run)
    models = {dg.AssetKey([spec.model]) for spec in load_project().syncs.values()}
    assert set(materialized) == models | set(sync_keys(defs))
    for key in sync_keys(defs):
        assert materialized[key]["status"] in {"success", "partial"}, (key, materialized[key])


def test_syncs_deliver_to_http_sandboxes_and_write_files(
    defs: dg.Definitions, first_run: dg.ExecuteInProcessResult, sandbox: object
):
    materialized = materialized_metadata(first_run)
    syncs = {key: materialized[key] for key in sync_keys(defs)}
    assert sum(metadata["rows_sent"] for metadata in syncs.values()) > 0
    assert sum(app.stats["requests"] for app in sandbox.apps.values()) > 0  # type: ignore[attr-defined]
    exported = [Path(path) for metadata in syncs.values() for path in metadata.get("export_paths", [])]
    assert exported and all(path.exists() for path in exported)


def test_every_gate_passed_on_the_sample_data(first_run: dg.ExecuteInProcessResult):
    gates = {key: ev for key, ev in check_evaluations(first_run).items() if key.name == "great_expectations_gate"}
    assert gates
    assert all(evaluation.passed for evaluation in gates.values()), {
        key: evaluation.description for key, evaluation in gates.items() if not evaluation.passed
    }


def test_second_run_without_changes_sends_nothing(
    defs: dg.Definitions, first_run: dg.ExecuteInProcessResult, instance: dg.DagsterInstance
):
    assert first_run.success
    keys = set(sync_keys(defs))
    gates = {key for key in check_evaluations(first_run) if key.name == "great_expectations_gate"}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=keys, asset_check_selection=gates)
    second = job.execute_in_process(instance=instance, raise_on_error=False)
    assert second.success
    resent = {
        key.to_user_string(): (metadata["rows_sent"], metadata["rows_removed"])
        for key, metadata in materialized_metadata(second).items()
        if metadata.get("mode") != "export" and (metadata["rows_sent"] or metadata["rows_removed"])
    }
    assert resent == {}
