"""Reading what an in-process Dagster run did."""

from __future__ import annotations

from typing import Any

import dagster as dg

SYNC_PREFIX = "syncs"


def materialized_metadata(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict[str, Any]]:
    return {
        event.asset_key: {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}
        for event in result.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION"
    }


def observed_metadata(result: dg.ExecuteInProcessResult) -> dict[dg.AssetKey, dict[str, Any]]:
    return {
        event.asset_key: {k: v.value for k, v in event.asset_observation_data.asset_observation.metadata.items()}
        for event in result.all_events
        if event.event_type_value == "ASSET_OBSERVATION"
    }


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[dg.AssetCheckKey, dg.AssetCheckEvaluation]:
    return {
        evaluation.asset_check_key: evaluation
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
        for evaluation in [event.asset_check_evaluation_data]
    }


def started_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.step_key for event in result.all_events if event.event_type_value == "STEP_START"}


def sync_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return sorted(key for key in graph.get_all_asset_keys() if key.path[0] == SYNC_PREFIX)
