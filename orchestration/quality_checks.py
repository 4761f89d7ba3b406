"""Blocking asset checks that run the Great Expectations gate on every model a sync reads.

A failing gate (severity ERROR, `blocking=True`) stops every downstream sync in the same run, and the sync
assets' automation condition waits for the upstream blocking checks to pass, so a sync never reads a model
whose gate failed. The audience-size baseline is the row count recorded by the last passing execution of the
same check, read from the Dagster instance.
"""

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg
from dagster import AssetCheckExecutionContext

# Dagster 1.13 has no public API for a check's execution history; dagster is pinned exactly in pyproject.toml.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from orchestration.dbt_assets import DUCKDB_POOL
from orchestration.quality import GateRules, SizeBand, load_gate_frame, validate
from orchestration.resources import TidingsResource
from syncs.engine import SyncSpec

GATE_CHECK_NAME = "great_expectations_gate"
ROW_COUNT_KEY = "row_count"


def build_quality_checks(
    syncs_by_model: Mapping[str, Sequence[SyncSpec]], model_keys: Mapping[str, dg.AssetKey]
) -> list[dg.AssetChecksDefinition]:
    return [
        _gate_check(GateRules.for_model(model, syncs), model_keys[model]) for model, syncs in syncs_by_model.items()
    ]


def _gate_check(rules: GateRules, model_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=model_key,
        name=GATE_CHECK_NAME,
        blocking=True,
        pool=DUCKDB_POOL,
        description=(
            f"Great Expectations gate for the syncs reading {rules.model}: keys, identifiers, suppression, "
            "consent" + (", audience size band" if rules.checks_size else "")
        ),
        automation_condition=dg.AutomationCondition.any_deps_updated().since_last_handled(),
    )
    def gate(context: AssetCheckExecutionContext, tidings: TidingsResource) -> dg.AssetCheckResult:
        baseline = last_passing_row_count(context.instance, dg.AssetCheckKey(model_key, GATE_CHECK_NAME))
        frame = load_gate_frame(tidings.warehouse_path(), rules)
        band = SizeBand(baseline, tidings.audience_max_shrink, tidings.audience_max_growth)
        report = validate(frame, rules, band)
        return dg.AssetCheckResult(
            passed=report.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=report.summary(),
            metadata={
                ROW_COUNT_KEY: report.row_count,
                "baseline_row_count": baseline if baseline is not None else -1,
                "expectations": len(report.checked),
                "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in report.failures) or "none"),
            },
        )

    return gate


def last_passing_row_count(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey) -> int | None:
    records = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=1, status={AssetCheckExecutionRecordStatus.SUCCEEDED}
    )
    for record in records:
        evaluation = record.event.asset_check_evaluation if record.event else None
        value = evaluation.metadata.get(ROW_COUNT_KEY) if evaluation else None
        if value is not None:
            return int(value.value)
    return None


def group_by_model(syncs: Iterable[SyncSpec]) -> dict[str, list[SyncSpec]]:
    grouped: dict[str, list[SyncSpec]] = {}
    for spec in syncs:
        grouped.setdefault(spec.model, []).append(spec)
    return grouped
