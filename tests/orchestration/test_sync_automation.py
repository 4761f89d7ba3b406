"""When the automation sensor starts a sync: its automation condition evaluated by Dagster over simulated clock
times, with the model's builds and gate results reported to an ephemeral instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from orchestration.sync_assets import sync_automation_condition
from syncs.engine import SyncSpec, load_project

DAY = datetime(2026, 12, 1, tzinfo=UTC)
GATE = "gate"


def at(days: int, hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(days=days, hours=hour, minutes=minute)


class Automation:
    """A model with a blocking gate and one sync of it, evaluated tick by tick as the sensor would."""

    def __init__(self, spec: SyncSpec, sensor_started: datetime = DAY + timedelta(hours=5)) -> None:
        @dg.asset(name="model")
        def model() -> None: ...

        @dg.asset_check(asset=model, name=GATE, blocking=True)
        def gate() -> dg.AssetCheckResult:
            return dg.AssetCheckResult(passed=True)

        @dg.asset(name="sync", deps=[model], automation_condition=sync_automation_condition(spec))
        def sync() -> None: ...

        self.model, self.sync = model.key, sync.key
        self.defs = dg.Definitions(assets=[model, sync], asset_checks=[gate])
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: dg.AssetDaemonCursor | None = None
        self.starts_sync(sensor_started)  # the sensor's first evaluation, before the first build

    def build_model(self, *, gate_passes: bool = True) -> None:
        self.instance.report_runless_asset_event(dg.AssetMaterialization(self.model))
        self.instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(
                asset_key=self.model, check_name=GATE, passed=gate_passes, severity=dg.AssetCheckSeverity.ERROR
            )
        )

    def starts_sync(self, when: datetime) -> bool:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, evaluation_time=when, cursor=self.cursor
        )
        self.cursor = result.cursor
        return result.get_num_requested(self.sync) == 1


@pytest.fixture
def syncs() -> dict[str, SyncSpec]:
    return load_project().syncs


def test_a_daily_sync_runs_at_its_tick_on_the_mornings_build(syncs: dict[str, SyncSpec]) -> None:
    """trial_ending_low_usage_mailchimp is due at 07:00, an hour after the 06:00 build: it runs at 07:00 on that
    build (Dagster's on_cron would wait for the next day's build), and not again until a build and a tick."""
    assert syncs["trial_ending_low_usage_mailchimp"].schedule == "0 7 * * *"
    automation = Automation(syncs["trial_ending_low_usage_mailchimp"])
    automation.build_model()
    assert not automation.starts_sync(at(0, 6, 5))
    assert automation.starts_sync(at(0, 7, 1))
    assert not automation.starts_sync(at(0, 7, 5))
    assert not automation.starts_sync(at(1, 7, 1))  # a tick without a build since the last run: nothing new
    automation.build_model()  # the build ran late
    assert automation.starts_sync(at(1, 8, 5))
    assert not automation.starts_sync(at(1, 8, 10))


def test_a_monthly_drop_goes_out_on_its_day(syncs: dict[str, SyncSpec]) -> None:
    """The win-back drop is due at 05:00 on the 1st: it goes out then, on the last daily build, once a month."""
    assert syncs["lapsed_high_value_mailhouse"].schedule == "0 5 1 * *"
    automation = Automation(syncs["lapsed_high_value_mailhouse"], sensor_started=at(-3, 0))
    for day in range(-2, 3):  # daily builds from 29 November to 3 December
        automation.build_model()
        assert automation.starts_sync(at(day, 6, 5)) is False
        assert automation.starts_sync(at(day + 1, 5, 1)) is (day + 1 == 0)


def test_message_syncs_run_once_per_queue_refresh(syncs: dict[str, SyncSpec]) -> None:
    """A message sync ticks every 5 minutes but sends each hourly queue once: decisions are made for the time
    of the build (quiet hours), so a queue is never sent again at a later tick."""
    assert syncs["transactional_email_mailchimp"].schedule == "*/5 * * * *"
    automation = Automation(syncs["transactional_email_mailchimp"])
    automation.build_model()
    assert automation.starts_sync(at(0, 10, 32))
    assert [automation.starts_sync(at(0, 10, minute)) for minute in range(37, 90, 5)] == [False] * 11
    automation.build_model()
    assert automation.starts_sync(at(0, 11, 32))


def test_a_sync_waits_while_its_models_gate_fails(syncs: dict[str, SyncSpec]) -> None:
    """A build whose blocking gate failed is not synced, at its tick or later; the next good build is."""
    automation = Automation(syncs["trial_ending_low_usage_mailchimp"])
    automation.build_model(gate_passes=False)
    assert not automation.starts_sync(at(0, 7, 1))
    assert not automation.starts_sync(at(0, 9, 0))
    automation.build_model()
    assert automation.starts_sync(at(0, 9, 5))


def test_an_unscheduled_sync_runs_after_each_good_build(syncs: dict[str, SyncSpec]) -> None:
    unscheduled = next(spec for spec in syncs.values() if not spec.schedule)
    automation = Automation(unscheduled)
    automation.build_model()
    assert automation.starts_sync(at(0, 6, 5))
    assert not automation.starts_sync(at(0, 6, 10))
    automation.build_model(gate_passes=False)
    assert not automation.starts_sync(at(0, 6, 15))
