"""Marketing marts on the sample warehouse: audiences, triggered messages, the message queue and its contact policy.

The session fixture `built_warehouse` (tests/conftest.py) generates the sample data and runs `dbt build`, which
already runs every schema test, unit test and the singular invariant test; these tests check what the marts must
deliver on that data and that the invariant test really fails when the invariant is broken.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.session import DBT_PROJECT_DIR, dbt

SEGMENTS = (
    "seg_trial_ending_low_usage",
    "seg_new_signups_not_activated",
    "seg_inactive_users",
    "seg_pricing_page_visitors",
    "seg_content_topic_readers",
    "seg_abandoned_cart_24h",
    "seg_renewal_due",
    "seg_upsell_ready",
    "seg_loyalty_tiers",
    "seg_advocates",
    "seg_new_product_fit",
    "seg_lapsed_high_value_direct_mail",
    "seg_top_clv_lookalike",
    "seg_existing_customers_suppression",
)
SEQUENCES = (
    "msg_onboarding",
    "msg_reengagement",
    "msg_usage_summary",
    "msg_new_feature_intro",
    "msg_loyalty_status",
    "msg_renewal_reminder",
    "msg_billing_alerts",
    "msg_policy_change",
    "msg_upsell_expansion",
    "msg_abandoned_cart",
    "msg_trial_ending",
)
CHANNEL_PERMISSION = {"email": "can_email", "sms": "can_sms", "mail": "can_mail", "direct_mail": "can_mail"}
INVARIANT_TEST = "assert_no_suppressed_or_nonconsenting_recipients"


def query(warehouse: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(sql).fetchall()


def stored_failures(test: str, columns: str, *, warehouse: Path, tmp_path: Path) -> tuple[str, list[tuple]]:
    """Run the singular or generic dbt test `test` with `--store-failures`, which must fail; returns dbt's output
    and the `columns` of the failing rows dbt stored."""
    result = dbt("test", "--select", test, "--store-failures", warehouse=warehouse, target_path=tmp_path / "target")
    assert result.returncode != 0, result.stdout[-4000:]
    return result.stdout, query(warehouse, f"select {columns} from analytics_dbt_test__audit.{test}")


@pytest.mark.parametrize("model", SEGMENTS + SEQUENCES)
def test_every_audience_and_sequence_has_rows_on_the_sample_data(built_warehouse: Path, model: str) -> None:
    [(rows,)] = query(built_warehouse, f"select count(*) from analytics.{model}")
    assert rows > 0, f"{model} is empty on the sample data"


def test_every_channel_of_the_queue_and_every_decision_reason_is_exercised(built_warehouse: Path) -> None:
    decisions = {d for (d,) in query(built_warehouse, "select distinct decision from analytics.message_decisions")}
    assert {"send", "suppressed", "no_consent", "holdout", "outranked", "quiet_hours"} <= decisions
    channels = {c for (c,) in query(built_warehouse, "select distinct channel from analytics.message_queue")}
    assert {"email", "sms"} <= channels


@pytest.mark.parametrize("model", [*SEGMENTS, "message_queue"])
def test_no_suppressed_or_nonconsenting_recipient(built_warehouse: Path, model: str) -> None:
    offenders = query(
        built_warehouse,
        f"""
        select rows.customer_id, rows.channel
        from analytics.{model} as rows
        left join analytics.dim_customers as customers using (customer_id)
        where customers.customer_id is null
            or customers.is_globally_suppressed
            or not case rows.channel
                when 'email' then customers.can_email
                when 'sms' then customers.can_sms
                when 'ads' then customers.can_ads
                else customers.can_mail
            end
        """,
    )
    assert offenders == []


def test_queue_sends_at_most_one_marketing_message_per_customer_channel_and_local_day(built_warehouse: Path) -> None:
    over_cap = query(
        built_warehouse,
        """
        with queued as (
            select queue.customer_id, queue.channel, decisions.local_decision_date as local_day, count(*) as queued
            from analytics.message_queue as queue
            join analytics.message_decisions as decisions using (occurrence_key)
            where queue.message_kind = 'marketing'
            group by all
        ),
        already_sent as (
            select sent.customer_id, sent.channel,
                cast(timezone(zones.contact_timezone, timezone('UTC', sent.sent_at)) as date) as local_day,
                count(*) as sent
            from analytics.marketing_messages_sent as sent
            join (select distinct customer_id, contact_timezone from analytics.message_decisions) as zones
                using (customer_id)
            group by all
        )
        select queued.*, coalesce(already_sent.sent, 0) as sent
        from queued
        left join already_sent using (customer_id, channel, local_day)
        where queued.queued + coalesce(already_sent.sent, 0) > 1
        """,
    )
    assert over_cap == []


def test_transactional_messages_are_exempt_from_caps_and_holdouts(built_warehouse: Path) -> None:
    skipped = query(
        built_warehouse,
        """
        select decision, count(*) from analytics.message_decisions
        where message_kind = 'transactional' and decision in ('capped', 'outranked', 'holdout')
        group by decision
        """,
    )
    assert skipped == []
    [(transactional_sent,)] = query(
        built_warehouse, "select count(*) from analytics.message_queue where message_kind = 'transactional'"
    )
    assert transactional_sent > 0


def test_queue_kinds_match_the_catalog_and_each_sync_carries_one_kind(built_warehouse: Path) -> None:
    """Transactional messages are never mixed with marketing: every queue row has its sequence's kind and every
    sync declared on message_queue selects rows of a single kind."""
    mismatched = query(
        built_warehouse,
        """
        select queue.occurrence_key from analytics.message_queue as queue
        join analytics.message_catalog as catalog using (message_name)
        where queue.message_kind <> catalog.message_kind
        """,
    )
    assert mismatched == []
    urgent_email_context = query(
        built_warehouse,
        """
        select message_occurrence_key from analytics.message_queue
        where urgent and channel = 'sms'
            and message_occurrence_key not in (
                select message_occurrence_key from analytics.message_decisions where channel = 'email'
            )
        """,
    )
    assert urgent_email_context == [], "urgent SMS must come with an email candidate for context"

    declared = yaml.safe_load((DBT_PROJECT_DIR / "models/marts/messages/_messages__models.yml").read_text())
    [queue_model] = [m for m in declared["models"] if m["name"] == "message_queue"]
    syncs = queue_model["config"]["meta"]["tidings"]["syncs"]
    assert syncs
    for sync in syncs:
        kinds = query(
            built_warehouse, f"select distinct message_kind from analytics.message_queue where {sync['where']}"
        )
        assert len(kinds) <= 1, f"sync {sync['name']} mixes message kinds: {kinds}"


def test_holdout_groups_are_stable_between_builds(built_warehouse: Path, warehouse_copy: Path, tmp_path: Path) -> None:
    """Rebuilding the decisions at another instant (other quiet hours, other local days) holds out the same
    customer-sequence pairs: the buckets are hashes, not random draws."""

    def holdouts(warehouse: Path) -> set[tuple]:
        rows = query(
            warehouse,
            "select customer_id, message_name from analytics.message_decisions where decision = 'holdout'",
        )
        return set(rows)

    before = holdouts(built_warehouse)
    result = dbt(
        "run", "--select", "message_decisions",
        warehouse=warehouse_copy, target_path=tmp_path / "target",
        vars={"message_decision_at": "2026-11-01 03:30:00"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]
    after = holdouts(warehouse_copy)
    assert before and before == after


PLANTED_ROWS = (
    # an email audience row for a customer who cannot be emailed
    """
    insert into analytics.seg_trial_ending_low_usage (customer_id, channel, email)
    select customer_id, 'email', 'planted@example.com'
    from analytics.dim_customers where not can_email limit 1
    """,
    # a queued message for a globally suppressed customer
    """
    insert into analytics.message_queue
    select * replace (
        'planted-' || occurrence_key as occurrence_key,
        (select customer_id from analytics.dim_customers where is_globally_suppressed limit 1) as customer_id
    )
    from analytics.message_queue limit 1
    """,
    # an unsubscribe recorded against another customer with the same address as an emailable audience member,
    # which the built dim_customers has not seen: the test reads the suppressions themselves
    """
    insert into raw.crm_customers
    select * replace ('planted-household-member' as customer_id)
    from raw.crm_customers
    where customer_id = (
        select min(customer_id) from analytics.seg_trial_ending_low_usage
        where channel = 'email' and customer_id in (select customer_id from analytics.dim_customers where can_email)
    )
    """,
    """
    insert into raw.suppressions (suppression_id, customer_id, email, reason, source, created_at, _loaded_at)
    values ('sup-planted', 'planted-household-member', null, 'unsubscribe', 'esp', timestamp '2026-01-01', now())
    """,
)


def test_invariant_test_fails_on_planted_bad_rows(warehouse_copy: Path, tmp_path: Path) -> None:
    """A bad audience row, a bad queue row and an audience member whose address unsubscribed under another
    customer: the singular test reports those, and nothing else."""
    with duckdb.connect(str(warehouse_copy)) as con:
        for statement in PLANTED_ROWS:
            con.execute(statement)
        [(sharer,)] = con.sql(
            "select customer_id from raw.crm_customers where email = "
            "(select email from raw.crm_customers where customer_id = 'planted-household-member') "
            "and customer_id <> 'planted-household-member'"
        ).fetchall()
    _, found = stored_failures(
        INVARIANT_TEST, "source_model, customer_id, violation", warehouse=warehouse_copy, tmp_path=tmp_path
    )
    planted_audience_row = query(
        warehouse_copy,
        "select customer_id from analytics.seg_trial_ending_low_usage where email = 'planted@example.com'",
    )
    assert len(planted_audience_row) == 1
    other = [row for row in found if row[2] != "email address suppressed"]
    assert {row[:2] for row in other} >= {("seg_trial_ending_low_usage", planted_audience_row[0][0])}
    assert any(row[0] == "message_queue" and row[2] == "globally suppressed" for row in other)
    assert len(other) == 2, found
    shared = [row for row in found if row[2] == "email address suppressed"]
    assert shared and {row[1] for row in shared} == {sharer}, found
    assert ("seg_trial_ending_low_usage", sharer, "email address suppressed") in shared


CONTROL_GROUP_TEST = "assert_global_control_group_gets_no_marketing"
MARKETING_AUDIENCES = tuple(
    s for s in SEGMENTS if s not in {"seg_top_clv_lookalike", "seg_existing_customers_suppression"}
)


def test_the_global_control_group_gets_transactional_messages_but_no_marketing(built_warehouse: Path) -> None:
    """About `global_control_group_pct` (5%) of customers are in the control group; they are in no marketing audience
    and no marketing message, yet still get transactional messages and stay on the exclusion list."""
    [(customers, in_control)] = query(
        built_warehouse, "select count(*), count(*) filter (in_global_control_group) from analytics.dim_customers"
    )
    assert 0.02 * customers < in_control < 0.08 * customers
    control = "(select customer_id from analytics.dim_customers where in_global_control_group)"
    for audience in MARKETING_AUDIENCES:
        assert query(built_warehouse, f"select count(*) from analytics.{audience} where customer_id in {control}") == [
            (0,)
        ], audience
    kinds = query(
        built_warehouse,
        f"select distinct message_kind from analytics.message_queue where customer_id in {control}",
    )
    assert kinds == [("transactional",)]
    [(excluded,)] = query(
        built_warehouse,
        f"select count(*) from analytics.seg_existing_customers_suppression where customer_id in {control}",
    )
    assert excluded > 0


def test_control_group_test_names_planted_marketing_rows(warehouse_copy: Path, tmp_path: Path) -> None:
    """A control-group customer planted into a marketing audience and into a marketing message: the singular test
    reports both, and nothing else."""
    control = "(select min(customer_id) from analytics.dim_customers where in_global_control_group)"
    with duckdb.connect(str(warehouse_copy)) as con:
        con.execute(
            f"insert into analytics.seg_renewal_due select * replace ({control} as customer_id)"
            " from analytics.seg_renewal_due limit 1"
        )
        con.execute(
            "insert into analytics.message_queue select * replace ("
            f"'planted-' || occurrence_key as occurrence_key, {control} as customer_id)"
            " from analytics.message_queue where message_kind = 'marketing' limit 1"
        )
        [(planted,)] = con.sql(f"select {control}").fetchall()
    _, found = stored_failures(
        CONTROL_GROUP_TEST, "source_model, customer_id", warehouse=warehouse_copy, tmp_path=tmp_path
    )
    assert sorted(found) == [("message_queue", planted), ("seg_renewal_due", planted)]


CHANNEL_LIST_TEST = "channel_list_message_catalog_channel_candidates"


def test_channel_list_test_names_each_bad_channel_list(warehouse_copy: Path, tmp_path: Path) -> None:
    """Catalog rows with a typo, a repeated channel, a fourth entry or an empty entry each fail the seed's test
    with the problem named; spaces around entries are fine (the macro trims them)."""
    lists = {
        "billing_alert": "sms, emial",
        "policy_change": "email,sms,email",
        "trial_ending": "email,sms,direct_mail,push",
        "abandoned_cart": "email,,sms",
        "renewal_reminder": " email , sms ",
    }
    with duckdb.connect(str(warehouse_copy)) as con:
        for message, channels in lists.items():
            con.execute(
                "update analytics.message_catalog set channel_candidates = ? where message_name = ?",
                [channels, message],
            )
    output, failures = stored_failures(
        CHANNEL_LIST_TEST, "channel_list, problem", warehouse=warehouse_copy, tmp_path=tmp_path
    )
    assert f"FAIL 4 {CHANNEL_LIST_TEST}" in output, output[-4000:]
    assert sorted(failures) == [
        ("email,,sms", "an empty entry (a stray comma, or no channel); list at least one of email, sms, direct_mail"),
        ("email,sms,direct_mail,push", "more than 3 entries; list each of email, sms, direct_mail at most once"),
        ("email,sms,email", 'channel "email" listed twice; list each channel once'),
        ("sms, emial", 'unknown channel "emial"; use one of email, sms, direct_mail'),
    ]


def test_seed_settings_out_of_range_fail_their_tests(warehouse_copy: Path, tmp_path: Path) -> None:
    """A holdout of 150% would hold out every customer, and a step due before sign-up never comes: both fail the
    seeds' value_between tests, which name the value and the range."""
    with duckdb.connect(str(warehouse_copy)) as con:
        con.execute("update analytics.message_catalog set holdout_pct = 150 where message_name = 'onboarding'")
        con.execute("update analytics.onboarding_steps set days_after_signup = -2 where step_number = 1")
    result = dbt(
        "test", "--select", "message_catalog", "onboarding_steps", "--store-failures",
        warehouse=warehouse_copy, target_path=tmp_path / "target",
    )  # fmt: skip
    assert result.returncode != 0, result.stdout[-4000:]
    assert "FAIL 1 value_between_message_catalog_holdout_pct__100__0" in result.stdout, result.stdout[-4000:]
    assert "FAIL 1 value_between_onboarding_steps_days_after_signup__3650__0" in result.stdout, result.stdout[-4000:]
    failures = query(
        warehouse_copy, "select * from analytics_dbt_test__audit.value_between_message_catalog_holdout_pct__100__0"
    )
    assert failures == [(150, "must be between 0 and 100")]


def test_sync_declarations_load_and_cover_every_destination_type() -> None:
    """The audiences' and the queue's sync declarations validate against destinations.yml, and together they
    exercise every destination type the demo ships."""
    from syncs.config import load_project

    project = load_project(DBT_PROJECT_DIR, DBT_PROJECT_DIR / "destinations.yml")
    marketing_syncs = [s for s in project.syncs.values() if s.model.startswith("seg_") or s.model == "message_queue"]
    assert {s.destination_type for s in marketing_syncs} == {
        "mailchimp", "sendgrid", "meta_custom_audiences", "google_customer_match",
        "print_mail", "sftp_mailhouse", "file_export", "webhook",
    }  # fmt: skip
    send_once = [s for s in marketing_syncs if s.mode == "send_once"]
    assert send_once and all(s.primary_key == ["occurrence_key"] for s in send_once)
    assert all(s.description and s.owner for s in marketing_syncs)


def test_no_row_is_sent_once_through_two_syncs_of_one_channel(built_warehouse: Path) -> None:
    """send_once deduplicates per sync, so two send_once syncs of one channel on one model must split its rows
    between them (their `where`s); a row both select is one message delivered twice (two win-back postcards)."""
    from syncs.config import load_project

    project = load_project(DBT_PROJECT_DIR, DBT_PROJECT_DIR / "destinations.yml")
    groups: dict[tuple[str, str], list] = {}
    for spec in project.syncs.values():
        if spec.mode == "send_once":
            groups.setdefault((spec.model, spec.channel), []).append(spec)
    shared = {key: specs for key, specs in groups.items() if len(specs) > 1}
    assert ("seg_lapsed_high_value_direct_mail", "direct_mail") in shared
    for (model, _), specs in shared.items():
        selected = ", ".join(f"coalesce(({s.where or 'true'}), false)::int as {s.name}" for s in specs)
        rows = query(built_warehouse, f"select {selected} from analytics.{model}")
        assert rows and all(sum(row) <= 1 for row in rows), [s.name for s in specs]
        assert all(any(row[i] for row in rows) for i in range(len(specs))), "each sync keeps some rows"


def test_the_models_clock_is_utc_on_a_host_in_another_zone(built_warehouse: Path, tmp_path: Path) -> None:
    """current_date anchors "today" when no as-of date is given, and message_decisions compares it with dbt's
    run_started_at (UTC): on a host in Los Angeles the two named different days for eight hours a day."""
    cmd = [
        "dbt", "show", "--inline", "select current_setting('TimeZone') as zone", "--output", "json",
        "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(tmp_path / "target"),
    ]  # fmt: skip
    env = {**os.environ, "TIDINGS_WAREHOUSE": str(built_warehouse), "TZ": "America/Los_Angeles"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=DBT_PROJECT_DIR)
    assert result.returncode == 0, result.stdout[-3000:]
    assert '"zone": "UTC"' in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize("model", ["seg_renewal_due", "msg_renewal_reminder"])
def test_only_annual_plans_are_reminded_of_renewal(built_warehouse: Path, model: str) -> None:
    """A monthly plan renews within 30 days all the time; reminding it would mail every subscriber every month."""
    intervals = query(
        built_warehouse,
        f"select distinct billing_interval from analytics.{model} join analytics.dim_customers using (customer_id)",
    )
    assert intervals == [("year",)]
