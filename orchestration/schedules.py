"""Jobs, schedules and the automation sensor.

- `daily_full_build` (06:00 UTC): every unpartitioned dbt model, test and gate, then every sync without a
  `schedule:` of its own.
- `daily_metrics` (07:00 UTC, partitioned by day): the history metrics as of the day of the tick
  (`orchestration.dbt_assets.tidings_dbt_metrics`); an hour after the daily build, whose dbt step has refreshed
  the models they read by then. Backfills of past days launch this job, one run per day.
- `triggered_messages` (hourly at :30, around the clock): everything upstream of the triggered-message syncs
  (`msg_*`, `message_queue`) and those of them without a `schedule:`, so each send reads fresh events. Every
  hour because a billing alert should not wait half a day; around the clock because customers live in every time
  zone. Quiet
  hours and frequency caps are decided per customer in `message_decisions`, and caps count what earlier runs
  delivered, so more decisions a day send no more messages. At :30 so it does not queue behind the 06:00 build.
- `tidings_automation`: evaluates the sync assets' automation conditions, so a sync runs after its model
  refreshes (and its blocking checks pass), whichever job or UI action refreshed it.

A sync that declares a `schedule:` is left out of both jobs: the sensor runs it at the first tick of its cron after
a refresh of its model (`sync_assets.sync_automation_condition`). In a job it would run at every job run, a monthly
mail-house drop every day.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from orchestration.sync_assets import sync_asset_key
from syncs.engine import SyncSpec

DAILY_BUILD_CRON = "0 6 * * *"
DAILY_METRICS_HOUR_UTC = 7
TRIGGERED_MESSAGES_CRON = "30 * * * *"
DAILY_METRICS_JOB = "daily_metrics"


def is_triggered_message_model(model: str) -> bool:
    return model.startswith("msg_") or model == "message_queue"


def build_jobs(
    syncs: Iterable[SyncSpec], partitioned_metrics: dg.AssetsDefinition | None = None
) -> list[dg.UnresolvedAssetJobDefinition]:
    syncs = list(syncs)
    message_syncs = [sync_asset_key(spec.name) for spec in syncs if is_triggered_message_model(spec.model)]
    scheduled = dg.AssetSelection.assets(*(sync_asset_key(spec.name) for spec in syncs if spec.schedule))
    metrics = dg.AssetSelection.assets(partitioned_metrics) if partitioned_metrics else None
    everything = dg.AssetSelection.all() - metrics if metrics else dg.AssetSelection.all()
    jobs = [
        dg.define_asset_job(
            "daily_full_build",
            selection=everything - scheduled,
            description="Every unpartitioned dbt model and test, the quality gates, then every sync without a "
            "schedule (scheduled syncs run at the first tick of their cron after their model's refresh).",
        )
    ]
    if metrics:
        jobs.append(
            dg.define_asset_job(
                DAILY_METRICS_JOB,
                selection=metrics,
                description="The history metrics and their dbt tests as of the partition's date (dbt var as_of_date).",
            )
        )
    if message_syncs:
        jobs.append(
            dg.define_asset_job(
                "triggered_messages",
                selection=dg.AssetSelection.assets(*message_syncs).upstream() - scheduled,
                description="The models the triggered-message syncs read, then those syncs without a schedule "
                "(scheduled ones run at their next cron tick after the refresh).",
            )
        )
    return jobs


def build_schedules(jobs: Iterable[dg.UnresolvedAssetJobDefinition]) -> list[dg.ScheduleDefinition]:
    crons = {"daily_full_build": DAILY_BUILD_CRON, "triggered_messages": TRIGGERED_MESSAGES_CRON}
    schedules: list[dg.ScheduleDefinition] = []
    for job in jobs:
        if job.name == DAILY_METRICS_JOB:
            # Each tick requests the partition of its own UTC day (today's partition exists: end_offset=1).
            schedules.append(
                dg.build_schedule_from_partitioned_job(
                    job, name=f"{job.name}_schedule", hour_of_day=DAILY_METRICS_HOUR_UTC, minute_of_hour=0
                )
            )
        else:
            schedules.append(
                dg.ScheduleDefinition(
                    name=f"{job.name}_schedule", job=job, cron_schedule=crons[job.name], execution_timezone="UTC"
                )
            )
    return schedules


def build_automation_sensor() -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "tidings_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
    )
