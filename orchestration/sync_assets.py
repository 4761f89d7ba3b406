"""One asset per sync declared in the models' YAML, generated from `syncs.engine.load_project()`.

Each sync asset depends on its model's dbt asset, sits in the group `syncs_<channel>`, carries the owner and
description from the YAML, and runs the sync engine. Run config (`SyncRunConfig`, editable in the launchpad)
turns a run into a dry run or lets a mirror exceed its removal guard. Syncs run automatically after their
model refreshes, once the model's blocking checks (dbt tests, the Great Expectations gate) have passed; a
sync with a `schedule:` in its YAML waits for the next tick of that cron instead.
"""

from collections.abc import Iterable, Iterator, Mapping

import dagster as dg
from dagster import AssetExecutionContext
from pydantic import Field

from orchestration.dbt_assets import DUCKDB_POOL
from orchestration.resources import TidingsResource
from orchestration.sync_results import report_sync_result
from syncs.engine import SyncSpec, load_project, run_sync

SYNC_KEY_PREFIX = "syncs"
# A failed or locked run is retried in the same Dagster run after about 5, 10 and 20 minutes (a blocked one is
# not: sync_results.RETRIED_STATUSES), so a short outage does not leave a scheduled drop for its next tick.
# Retrying is safe: rows already delivered are in state and the ledger, and are not sent again.
SYNC_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=300, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


class SyncRunConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Plan only: show what would be sent, send nothing.")
    allow_large_removal: bool = Field(
        default=False, description="Let a mirror remove more members than its max_removal_share guard allows."
    )
    resend_all: bool = Field(
        default=False,
        description="Mirror/upsert: re-send every current member, changed or not (the destination lost data, a "
        "changed normalization). Removals go as usual.",
    )
    add_back: bool = Field(
        default=False,
        description="Mirror (or upsert) sync emptied by `tidings run NAME --remove-all`: send the model's members "
        "again (until then its runs are blocked from sending any).",
    )
    retarget: bool = Field(
        default=False,
        description="Mirror/upsert sync pointed at another destination or target (its runs are blocked until "
        "then): drop the state of the members sent to the old one, which keeps them, and send every member to the "
        "new one.",
    )


def sync_asset_key(sync_name: str) -> dg.AssetKey:
    return dg.AssetKey([SYNC_KEY_PREFIX, sync_name])


def sync_automation_condition(spec: SyncSpec) -> dg.AutomationCondition:
    """Unscheduled: after each refresh of the model. Scheduled: at the first tick of its cron after a refresh of
    the model, on that build; never more often than the model is rebuilt (a message queue's decisions are made
    for the time of its build). A tick with no good build since the sync last ran stays pending, so a build that
    comes late or passes its gate after a failure is synced at once; a run that still fails after its retries
    (`SYNC_RETRY_POLICY`) counts as handled and the sync waits for its next tick. Dagster's `on_cron` waits
    instead for a refresh after the tick: a 07:00 sync of a model built at 06:00 would run after the next day's
    build, and a drop due at 07:00 on the 1st on the 2nd."""
    checks_passed = dg.AutomationCondition.all_deps_blocking_checks_passed()
    if not spec.schedule:
        return dg.AutomationCondition.eager() & checks_passed
    at_tick = (
        dg.AutomationCondition.cron_tick_passed(spec.schedule).since_last_handled()
        & dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
    ).with_label(f"first tick of {spec.schedule} after a refresh of the model")
    return at_tick & checks_passed


def build_sync_assets(syncs: Iterable[SyncSpec], model_keys: Mapping[str, dg.AssetKey]) -> list[dg.AssetsDefinition]:
    return [_sync_asset(spec, model_keys[spec.model]) for spec in syncs]


def _sync_asset(spec: SyncSpec, model_key: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(
        key=sync_asset_key(spec.name),
        deps=[model_key],
        group_name=f"syncs_{spec.channel}",
        owners=[spec.owner] if spec.owner and "@" in spec.owner else None,
        description=spec.description or f"{spec.mode} sync of {spec.model} to {spec.destination}",
        kinds={"tidings", spec.destination_type},
        tags={
            "tidings/mode": spec.mode.value,
            "tidings/channel": spec.channel,
            "tidings/destination": spec.destination,
        },
        metadata={
            "model": spec.model,
            "destination": spec.destination,
            "primary_key": ", ".join(spec.primary_key),
            "schedule": spec.schedule or "after each model refresh",
            "declared_in": dg.MetadataValue.path(str(spec.source_file)),
        },
        pool=DUCKDB_POOL,
        automation_condition=sync_automation_condition(spec),
        retry_policy=SYNC_RETRY_POLICY,
        output_required=False,
    )
    def sync(
        context: AssetExecutionContext, config: SyncRunConfig, tidings: TidingsResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetObservation]:
        # The project is re-read at run time: destinations resolve ${ENV} references when loaded.
        result = run_sync(
            spec.name,
            project=load_project(),
            warehouse=tidings.warehouse_path(),
            dry_run=config.dry_run,
            allow_large_removal=config.allow_large_removal,
            resend_all=config.resend_all,
            add_back=config.add_back,
            retarget=config.retarget,
        )
        context.log.info(f"sync {spec.name}: {result.status}, {result.sent} sent, {result.failed} failed")
        yield from report_sync_result(context.asset_key, result)

    return sync
