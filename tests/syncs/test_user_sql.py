"""User SQL is untrusted: only single read-only expressions/SELECTs over allowed relations get through."""

from __future__ import annotations

import pytest

from syncs.user_sql import UnsafeSQLError, validate_condition, validate_query

COLUMNS = ["customer_id", "email", "score", "signup_date", "tags"]


@pytest.mark.parametrize(
    "condition",
    [
        "score >= 10 and email like '%@example.com'",
        "signup_date > current_date - interval 30 day",
        "coalesce(score, 0) between 1 and 5 or customer_id in ('a', 'b')",
        "list_contains(tags, 'vip')",
        "lower(email) = 'x' -- a trailing comment is dropped",
    ],
)
def test_accepts_boolean_filters_over_the_model_columns(condition):
    rendered = validate_condition(condition, COLUMNS)
    assert "--" not in rendered


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("score > 1; drop table analytics.dim_customers", "exactly one statement"),
        ("read_csv('/etc/passwd') is not null", "READCSV"),
        ("exists (select 1 from analytics.dim_customers)", "subqueries"),
        ("customer_id in (select customer_id from raw.crm_customers)", "subqueries"),
        ("getenv('HOME') = '/root'", "function getenv"),
        ("query('select 1') is null", "function query"),
        ("password_hash = 'x'", "unknown column 'password_hash'"),
        ("other.score > 1", "must not be qualified"),
        ("select * from analytics.seg_x", "not a query"),
        ("score >", "does not parse"),
        ("", "empty"),
    ],
)
def test_rejects_hostile_or_foreign_filters(condition, reason):
    with pytest.raises(UnsafeSQLError, match=reason):
        validate_condition(condition, COLUMNS)


ALLOWED = ["analytics.seg_winback", "analytics.dim_customers"]


def test_accepts_a_select_over_allowed_relations_with_ctes():
    query = (
        "with recent as (select customer_id from analytics.dim_customers where tenure_days < 30) "
        "select s.* from analytics.seg_winback s join recent using (customer_id)"
    )
    assert validate_query(query, ALLOWED).lower().startswith("with recent as")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("delete from analytics.seg_winback", "single SELECT"),
        ("drop table analytics.seg_winback", "single SELECT"),
        ("create table x as select 1", "single SELECT"),
        ("copy analytics.seg_winback to '/tmp/out.csv'", "single SELECT"),
        ("attach '/tmp/other.duckdb' as other", "single SELECT"),
        ("install httpfs", "single SELECT"),
        ("load httpfs", "single SELECT"),
        ("pragma database_list", "single SELECT"),
        ("set enable_external_access = true", "single SELECT"),
        ("select * from analytics.seg_winback; select 1", "exactly one statement"),
        ("select * into backup from analytics.seg_winback", "INTO"),
        ("select * from '/etc/passwd'", "relation '/etc/passwd' is not allowed"),
        ("select * from read_parquet('s3://bucket/x.parquet')", "table functions and file paths"),
        ("select * from read_json_auto('/tmp/x.json')", "not allowed"),
        ("select * from glob('/home/*')", "not allowed"),
        ("select * from raw.crm_customers", "relation 'raw.crm_customers' is not allowed"),
        ("select * from other_db.analytics.seg_winback", "catalog"),
        ("select * from analytics.seg_winback where email in (select email from raw.crm_customers)", "raw.crm"),
    ],
)
def test_rejects_hostile_queries(query, reason):
    with pytest.raises(UnsafeSQLError, match=reason):
        validate_query(query, ALLOWED)


def test_error_messages_do_not_echo_literal_values():
    with pytest.raises(UnsafeSQLError) as raised:
        validate_condition("email = 'jane.doe@example.com'; drop table x", COLUMNS)
    assert "jane.doe" not in str(raised.value)
