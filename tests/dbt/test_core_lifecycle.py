"""Core marts and lifecycle models on the built sample warehouse: normalization, sendability, stages, history."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import phonenumbers
import pytest

from tests.session import AS_OF, run_dbt

EMAIL_SHAPE = re.compile(r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")


@pytest.fixture(scope="module")
def con(built_warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(built_warehouse), read_only=True) as connection:
        yield connection


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_every_lifecycle_stage_has_customers(con: duckdb.DuckDBPyConnection) -> None:
    catalogue = rows(con, "select track, stage from analytics.lifecycle_stages")
    populated = set(
        rows(con, "select 'lifecycle', lifecycle_stage from analytics.customer_lifecycle")
        + rows(
            con,
            "select 'subscription', subscription_stage from analytics.customer_lifecycle "
            "where subscription_stage is not null",
        )
    )

    assert len(catalogue) == 14
    assert set(catalogue) == populated


def test_emails_are_trimmed_lower_cased_and_nulled_when_invalid(con: duckdb.DuckDBPyConnection) -> None:
    pairs = rows(
        con,
        """
        select raw.email, dim.email, dim.email_valid, dim.suppression_reason = 'erased'
        from raw.crm_customers raw join analytics.dim_customers dim using (customer_id)
    """,
    )
    checked = 0
    for raw_email, email, valid, erased in pairs:
        if erased:
            assert email is None and not valid
            continue
        expected = raw_email.strip().lower() if raw_email and raw_email.strip() else None
        expected_valid = expected is not None and EMAIL_SHAPE.match(expected) is not None
        assert valid == expected_valid, raw_email
        assert email == (expected if expected_valid else None)
        checked += raw_email is not None and raw_email != expected
    assert checked > 50  # the sample really exercised trimming and lower-casing


def test_phones_match_libphonenumber_e164(con: duckdb.DuckDBPyConnection) -> None:
    normalized = rows(
        con,
        """
        select phone_raw, country_code, phone_e164, phone_valid from analytics.stg_crm__customers
        where phone_raw is not null
    """,
    )
    formats = {"international": 0, "national": 0}
    for raw, country, e164, valid in normalized:
        digits = re.sub(r"\D", "", raw)
        if len(digits) < 8:
            assert not valid and e164 is None, raw
            continue
        assert valid, raw
        parsed = phonenumbers.parse(raw, country)
        assert e164 == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), (raw, country)
        formats["international" if raw.startswith(("+", "00")) else "national"] += 1
    assert min(formats.values()) > 100


def test_sendability_flags_respect_consent_suppression_and_identifiers(con: duckdb.DuckDBPyConnection) -> None:
    violations = rows(
        con,
        """
        select customer_id from analytics.dim_customers
        where (can_email and (not consent_email or is_globally_suppressed or email is null))
           or (can_sms and (not consent_sms or is_globally_suppressed or phone_e164 is null))
           or (can_mail and (not consent_direct_mail or is_globally_suppressed or not has_valid_postal_address))
           or (can_ads and (not consent_ads or is_globally_suppressed or (email is null and phone_e164 is null)))
           or (is_globally_suppressed <> (suppression_reason is not null))
    """,
    )
    assert violations == []


def test_do_not_mail_and_email_only_suppressions_reach_the_customer(con: duckdb.DuckDBPyConnection) -> None:
    do_not_mail_sendable = rows(
        con,
        """
        select s.customer_id from raw.suppressions s join analytics.dim_customers d using (customer_id)
        where s.reason = 'do_not_mail' and d.can_mail
    """,
    )
    unmatched_email_suppressions = rows(
        con,
        """
        select s.suppression_id from raw.suppressions s
        join analytics.stg_crm__customers c on lower(trim(s.email)) = c.email_normalized
        join analytics.dim_customers d on d.customer_id = c.customer_id
        where s.customer_id is null and not d.is_globally_suppressed
    """,
    )
    email_only = rows(con, "select count(*) from raw.suppressions where customer_id is null")[0][0]

    assert do_not_mail_sendable == []
    assert email_only > 0 and unmatched_email_suppressions == []


def test_erased_customers_keep_no_personal_data(con: duckdb.DuckDBPyConnection) -> None:
    erased = rows(
        con,
        """
        select email, phone_e164, first_name, last_name, address_line1, city, postal_code, date_of_birth
        from analytics.dim_customers where suppression_reason = 'erased'
    """,
    )
    assert erased and all(value is None for row in erased for value in row)


def test_activity_windows_nest(con: duckdb.DuckDBPyConnection) -> None:
    broken = rows(
        con,
        """
        select customer_id from analytics.customer_activity
        where not (logins_7d <= logins_30d and logins_30d <= logins_90d and feature_uses_7d <= feature_uses_30d)
           or last_seen_at >= date '2026-11-02'
    """,
    )
    customers, activity = rows(
        con,
        """
        select (select count(*) from analytics.dim_customers), (select count(*) from analytics.customer_activity)
    """,
    )[0]
    assert broken == [] and customers == activity == 1000


# Each audience and trigger built on the core marts needs customers in the sample: one query per case.
AUDIENCE_CASES = {
    "trial ending in 7 days, low usage": """
        select d.customer_id from analytics.dim_customers d join analytics.customer_activity a using (customer_id)
        where d.subscription_status = 'trialing' and d.trial_ends_at < date '2026-11-08' and a.logins_30d <= 3""",
    "new sign-up not activated": """
        select customer_id from analytics.customer_lifecycle where lifecycle_stage = 'onboarding'""",
    "usage drop": """
        select customer_id from analytics.customer_activity where logins_prev_30d >= 4 and usage_trend <= 0.5""",
    "pricing visitor without checkout": """
        select customer_id from analytics.customer_activity
        where pricing_views_15d >= 2 and coalesce(last_checkout_completed_at < last_pricing_view_at, true)""",
    "reader of 5+ articles on one topic": """
        select customer_id from analytics.fct_events where page_category = 'blog'
        group by customer_id, content_topic having count(*) >= 5""",
    "cart abandoned in the last 24 h": """
        select customer_id from analytics.customer_activity
        where last_add_to_cart_at >= date '2026-10-31'
          and coalesce(last_checkout_completed_at < last_add_to_cart_at, true)""",
    "annual renewal due in 30 days": """
        select customer_id from analytics.customer_lifecycle l join analytics.dim_customers d using (customer_id)
        where l.subscription_stage = 'renewal_due' and d.current_period_end < date '2026-12-01'""",
    "annual renewal due in 31-60 days": """
        select customer_id from analytics.customer_lifecycle l join analytics.dim_customers d using (customer_id)
        where l.subscription_stage = 'renewal_due'
          and d.current_period_end between date '2026-12-01' and date '2026-12-31'""",
    "annual renewal due in 61-90 days": """
        select customer_id from analytics.customer_lifecycle l join analytics.dim_customers d using (customer_id)
        where l.subscription_stage = 'renewal_due' and d.current_period_end >= date '2026-12-31'""",
    "heavy user near plan limit": """
        select customer_id from analytics.customer_activity a
        join analytics.int_customers__subscription_current s using (customer_id)
        where s.subscription_status = 'active' and a.feature_uses_30d >= 0.8 * s.monthly_feature_limit""",
    "repeat buyer": "select customer_id from analytics.dim_customers where lifetime_orders >= 3",
    "lapsed high-value, mailable": """
        select customer_id from analytics.dim_customers
        where lifetime_revenue >= 500 and last_order_at < date '2026-05-01' and can_mail""",
    "failed payment": """
        select customer_id from analytics.customer_lifecycle where subscription_stage = 'payment_failed'""",
    "card expiring within 60 days": """
        select customer_id from analytics.int_customers__billing_health where card_expires_on < date '2026-12-31'""",
    "suppressed": "select customer_id from analytics.dim_customers where is_globally_suppressed",
    "consents to no channel": """
        select customer_id from analytics.dim_customers
        where not (consent_email or consent_sms or consent_direct_mail or consent_ads)""",
    "prospect": "select customer_id from analytics.customer_lifecycle where lifecycle_stage = 'prospect'",
    "advocate": "select customer_id from analytics.customer_lifecycle where lifecycle_stage = 'advocate'",
}


@pytest.mark.parametrize("case", sorted(AUDIENCE_CASES))
def test_sample_covers_every_audience_case(con: duckdb.DuckDBPyConnection, case: str) -> None:
    assert len(rows(con, AUDIENCE_CASES[case])) >= 3, case


def test_first_build_records_each_customers_current_stage(con: duckdb.DuckDBPyConnection) -> None:
    mismatched = rows(
        con,
        f"""
        select l.customer_id from analytics.customer_lifecycle l
        left join analytics.lifecycle_transitions t on t.customer_id = l.customer_id and t.track = 'lifecycle'
        where t.to_stage is distinct from l.lifecycle_stage
           or t.entered_on is distinct from l.lifecycle_stage_entered_on
           or not t.is_first_record
           or l.lifecycle_stage_entered_on > date '{AS_OF.isoformat()}'
    """,
    )
    assert mismatched == []


def run_lifecycle(warehouse: Path, target: Path, as_of: date, select: str) -> None:
    run_dbt("run", "--select", select, warehouse=warehouse, target_path=target, as_of=as_of)


def test_transitions_append_changes_and_never_move_backwards(warehouse_copy: Path, tmp_path: Path) -> None:
    two_weeks_later = date(2026, 11, 15)
    run_lifecycle(warehouse_copy, tmp_path / "target", two_weeks_later, "+customer_lifecycle")
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        appended = rows(
            con,
            """
            select from_stage, to_stage, entered_on, recorded_on, is_first_record, sequence
            from analytics.lifecycle_transitions where sequence = 2
        """,
        )
        entered_at_risk = rows(
            con,
            """
            select count(*) from analytics.customer_lifecycle l
            join analytics.lifecycle_transitions t
              on t.customer_id = l.customer_id and t.track = 'lifecycle' and t.sequence = 2
            where l.lifecycle_stage = 'at_risk' and l.lifecycle_stage_entered_on = date '2026-11-15'
              and l.previous_lifecycle_stage = t.from_stage
        """,
        )[0][0]
        total_before_rewind = rows(con, "select count(*) from analytics.lifecycle_transitions")[0][0]

    # two weeks without new activity moves customers on, each change dated the new as-of date
    assert appended and entered_at_risk > 0
    assert all(row[0] != row[1] and row[2] == row[3] == two_weeks_later and not row[4] for row in appended)

    # a rebuild as of an earlier date, its inputs included, adds nothing: not even for customers whose latest
    # record (an entered date estimated on the first build) is older than that date
    for rewound in (AS_OF, date(2026, 11, 8)):
        run_lifecycle(warehouse_copy, tmp_path / "target", rewound, "+lifecycle_transitions")
        with duckdb.connect(str(warehouse_copy), read_only=True) as con:
            assert rows(con, "select count(*) from analytics.lifecycle_transitions")[0][0] == total_before_rewind


def test_events_are_loaded_by_arrival_late_or_stamped_in_the_future(warehouse_copy: Path, tmp_path: Path) -> None:
    """An event that arrives a week after it happened is loaded, and one a client stamped a year ahead does not
    stop the events that arrive after it from loading."""
    with duckdb.connect(str(warehouse_copy)) as con:
        [(newest,)] = con.execute("select max(received_at) from raw.product_events").fetchall()
        con.execute(
            """insert into raw.product_events
            select * exclude (suffix, shift, arrival) replace (
                event_id || suffix as event_id,
                "timestamp" + shift as "timestamp",
                ?::timestamp + arrival as received_at
            )
            from (select * from raw.product_events limit 1),
                 (values ('_late', interval '-10 days', interval '1 minute'),
                         ('_future', interval '365 days', interval '2 minutes')) t(suffix, shift, arrival)""",
            [newest],
        )
    run_lifecycle(warehouse_copy, tmp_path / "target", date(2026, 11, 2), "fct_events")
    with duckdb.connect(str(warehouse_copy)) as con:
        [(newest,)] = con.execute("select max(received_at) from raw.product_events").fetchall()
        con.execute(
            """insert into raw.product_events
            select * replace (event_id || '_after' as event_id, ?::timestamp as received_at)
            from (select * from raw.product_events where not suffix(event_id, '_late') limit 1)""",
            [newest + timedelta(hours=1)],
        )
    run_lifecycle(warehouse_copy, tmp_path / "target", date(2026, 11, 2), "fct_events")
    with duckdb.connect(str(warehouse_copy), read_only=True) as con:
        loaded = {
            suffix
            for (event_id,) in con.execute("select event_id from analytics.fct_events").fetchall()
            for suffix in ("_late", "_future", "_after")
            if event_id.endswith(suffix)
        }
    assert loaded == {"_late", "_future", "_after"}
