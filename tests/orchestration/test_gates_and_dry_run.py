"""A failing quality gate stops its sync and says why; a dry run previews and sends nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
from orchestration_helpers import check_evaluations, materialized_metadata, observed_metadata, started_steps

from orchestration.quality_checks import GATE_CHECK_NAME
from orchestration.sync_assets import sync_asset_key
from syncs.engine import SyncResult, load_project, run_sync
from syncs.sandbox.apps.credentials import SANDBOX_CREDENTIALS

SCHEMA = "analytics"


def http_audience_sync() -> tuple[str, str]:
    """(sync name, model) of a mirror sync of a seg_* audience to an HTTP destination."""
    for spec in sorted(load_project().syncs.values(), key=lambda spec: spec.name):
        if spec.model.startswith("seg_") and spec.mode.value == "mirror" and spec.channel in {"email", "ads"}:
            return spec.name, spec.model
    raise AssertionError("no mirror sync of a seg_* model to an email or ads destination is declared")


def run_sync_with_gate(defs: dg.Definitions, sync_name: str, model: str) -> dg.ExecuteInProcessResult:
    gate = dg.AssetCheckKey(dg.AssetKey([model]), GATE_CHECK_NAME)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={sync_asset_key(sync_name)}, asset_check_selection={gate}
    )
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


@pytest.fixture
def gated_warehouse(graph_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "gated.duckdb"
    shutil.copy(graph_warehouse, copy)
    monkeypatch.setenv("TIDINGS_WAREHOUSE", str(copy))
    return copy


def plant_suppressed_customer(warehouse: Path, model: str) -> None:
    """Append a copy of one audience row re-keyed to a globally suppressed customer."""
    with duckdb.connect(str(warehouse)) as con:
        suppressed = con.execute(
            f"select customer_id from {SCHEMA}.dim_customers where is_globally_suppressed order by 1 limit 1"
        ).fetchone()
        assert suppressed, "the sample data has no suppressed customer"
        con.execute(f"create temp table planted as select * from {SCHEMA}.{model} limit 1")
        con.execute("update planted set customer_id = ?", [suppressed[0]])
        con.execute(f"insert into {SCHEMA}.{model} select * from planted")


def test_suppressed_customer_in_audience_blocks_the_sync(defs: dg.Definitions, gated_warehouse: Path, sandbox):
    sync_name, model = http_audience_sync()
    plant_suppressed_customer(gated_warehouse, model)

    result = run_sync_with_gate(defs, sync_name, model)

    assert not result.success
    gate = check_evaluations(result)[dg.AssetCheckKey(dg.AssetKey([model]), GATE_CHECK_NAME)]
    assert not gate.passed
    assert "suppressed customer (1 rows)" in gate.description
    assert f"syncs__{sync_name}" not in started_steps(result)
    assert sync_asset_key(sync_name) not in materialized_metadata(result)


def test_malformed_identifier_blocks_the_sync(defs: dg.Definitions, gated_warehouse: Path, sandbox):
    sync_name, model = http_audience_sync()
    with duckdb.connect(str(gated_warehouse)) as con:
        con.execute(f"create temp table planted as select * from {SCHEMA}.{model} where email is not null limit 1")
        con.execute("update planted set email = 'not-an-email'")
        con.execute(f"delete from {SCHEMA}.{model} where customer_id = (select customer_id from planted)")
        con.execute(f"insert into {SCHEMA}.{model} select * from planted")

    result = run_sync_with_gate(defs, sync_name, model)

    gate = check_evaluations(result)[dg.AssetCheckKey(dg.AssetKey([model]), GATE_CHECK_NAME)]
    assert gate.description.endswith("blocked: malformed email (1 rows)")
    assert f"syncs__{sync_name}" not in started_steps(result)


def test_dry_run_previews_masked_rows_and_sends_nothing(
    defs: dg.Definitions, built_warehouse: Path, tmp_path: Path, clean_sandbox, monkeypatch: pytest.MonkeyPatch
):
    fresh = tmp_path / "fresh.duckdb"  # models built, no sync state yet: everything is to be added
    shutil.copy(built_warehouse, fresh)
    monkeypatch.setenv("TIDINGS_WAREHOUSE", str(fresh))
    sync_name, model = http_audience_sync()
    key = sync_asset_key(sync_name)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={key})

    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {f"syncs__{sync_name}": {"config": {"dry_run": True}}}},
    )

    assert key not in materialized_metadata(result)
    observed = observed_metadata(result)[key]
    assert observed["status"] == "dry_run"
    assert observed["rows_planned_add"] > 0 and observed["rows_sent"] == 0
    assert observed["preview"].startswith("| ")
    with duckdb.connect(str(fresh), read_only=True) as con:
        emails = [
            email for (email,) in con.execute(f"select email from {SCHEMA}.{model} where email is not null").fetchall()
        ]
    assert emails and not [email for email in emails if email in observed["preview"]]
    assert sum(app.stats["requests"] for app in clean_sandbox.apps.values()) == 0


def synced_copy(built_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, SyncResult]:
    """A copy of the built warehouse the sync assets use, with `http_audience_sync` run once on it."""
    copy = tmp_path / "synced.duckdb"
    shutil.copy(built_warehouse, copy)
    monkeypatch.setenv("TIDINGS_WAREHOUSE", str(copy))
    for name, value in SANDBOX_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    sync_name, _ = http_audience_sync()
    first = run_sync(sync_name, warehouse=copy)
    assert first.status == "success"
    return copy, sync_name, first


def blocked_until_asked(
    defs: dg.Definitions, clean_sandbox, sync_name: str, decision: str, asked: dict[str, bool]
) -> dict[str, Any]:
    """The sync asset's run fails blocked by `decision` (not retried) and sends nothing; one with the run config
    `asked` materializes. Returns that materialization's metadata."""
    key = sync_asset_key(sync_name)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={key})
    requests = sum(app.stats["requests"] for app in clean_sandbox.apps.values())

    blocked = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not blocked.success and key not in materialized_metadata(blocked)
    failure = next(event for event in blocked.all_events if event.is_step_failure)
    assert f"blocked: {decision}:" in failure.step_failure_data.error.message
    assert sum(app.stats["requests"] for app in clean_sandbox.apps.values()) == requests

    done = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config={"ops": {f"syncs__{sync_name}": {"config": asked}}}
    )
    return materialized_metadata(done)[key]


def test_an_emptied_audience_stays_empty_until_a_run_asks_to_add_back(
    defs: dg.Definitions, built_warehouse: Path, tmp_path: Path, clean_sandbox, monkeypatch: pytest.MonkeyPatch
):
    """After `tidings run NAME --remove-all`, the sync asset's runs (a schedule, automation) fail as blocked, not
    retried, and send nothing; `add_back: true` in its run config fills the audience again."""
    copy, sync_name, _ = synced_copy(built_warehouse, tmp_path, monkeypatch)
    assert run_sync(sync_name, warehouse=copy, remove_all=True).status == "success"

    metadata = blocked_until_asked(defs, clean_sandbox, sync_name, "emptied", {"add_back": True})

    assert metadata["status"] == "success" and metadata["rows_sent"] > 0
    assert any(decision.startswith("passed: add_back:") for decision in metadata["guard_decisions"])


def test_a_sync_pointed_elsewhere_is_blocked_until_a_run_asks_to_retarget(
    defs: dg.Definitions, built_warehouse: Path, tmp_path: Path, clean_sandbox, monkeypatch: pytest.MonkeyPatch
):
    """Its members were sent to another list (here: the place on record is rewritten as an earlier declaration's):
    the asset's runs fail as blocked, not retried, and send nothing; `retarget: true` starts afresh there."""
    copy, sync_name, first = synced_copy(built_warehouse, tmp_path, monkeypatch)
    assert first.sent > 0
    with duckdb.connect(str(copy)) as con:
        (place,) = con.execute("select place from tidings.sync_places where sync_name = ?", [sync_name]).fetchone()
        earlier = {**json.loads(place), "target": {"list_id": "an earlier list"}}
        con.execute("update tidings.sync_places set place = ? where sync_name = ?", [json.dumps(earlier), sync_name])

    metadata = blocked_until_asked(defs, clean_sandbox, sync_name, "retargeted", {"retarget": True})

    assert metadata["status"] == "success" and metadata["rows_sent"] == first.sent
    assert any("they stay there" in warning for warning in metadata["warnings"])
