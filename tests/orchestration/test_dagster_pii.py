"""Invariant 5 in Dagster: no raw email, phone or secret in the event log of a run of every gate and sync,
including a gate that fails on bad identifiers (Great Expectations results carry samples of unexpected values;
the gate must report counts only)."""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest
from orchestration_helpers import check_evaluations

from orchestration.quality_checks import GATE_CHECK_NAME
from orchestration.sync_assets import SYNC_KEY_PREFIX
from syncs.sandbox.apps import SANDBOX_CREDENTIALS
from tests.reliability.pii import personal_values

pytestmark = pytest.mark.slow
CORRUPTED_MODEL = "seg_new_signups_not_activated"


def gates_and_syncs(defs: dg.Definitions) -> dg.JobDefinition:
    graph = defs.resolve_asset_graph()
    syncs = {key for key in graph.get_all_asset_keys() if key.path[0] == SYNC_KEY_PREFIX}
    gates = {key for key in graph.asset_check_keys if key.name == GATE_CHECK_NAME}
    return defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=syncs, asset_check_selection=gates)


def event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    texts = []
    for entry in instance.all_logs(run_id):
        texts += [entry.user_message or "", entry.message or "", repr(entry.dagster_event)]
    return "\n".join(texts)


def test_no_raw_pii_or_secret_in_the_dagster_event_log(defs, graph_warehouse):
    with duckdb.connect(str(graph_warehouse)) as con:  # a real phone number where an email belongs
        con.execute(
            f"update analytics.{CORRUPTED_MODEL} set email = (select phone_e164 from analytics.dim_customers "
            "where phone_e164 is not null limit 1) where customer_id in "
            f"(select customer_id from analytics.{CORRUPTED_MODEL} limit 2)"
        )
    instance = dg.DagsterInstance.ephemeral()

    result = gates_and_syncs(defs).execute_in_process(instance=instance, raise_on_error=False)

    failed_gates = [key.asset_key.path[-1] for key, ev in check_evaluations(result).items() if not ev.passed]
    assert failed_gates == [CORRUPTED_MODEL]
    haystack = event_log_text(instance, result.run_id)
    needles = personal_values(graph_warehouse)
    assert len(needles) > 100
    leaked = sorted(n for n in needles if n in haystack)
    assert not leaked, f"{len(leaked)} raw emails/phones in the Dagster event log, e.g. {leaked[0][:3]}***"
    assert not [s for s in SANDBOX_CREDENTIALS.values() if s in haystack], "a sandbox secret is in the event log"
