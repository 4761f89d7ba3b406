"""Invariant 4 and untrusted input: malformed and adversarial row values never crash a run nor vanish silently;
malformed configuration names its file and field; user SQL is refused unless it is one read-only SELECT, and
a refused filter never reaches the warehouse."""

from __future__ import annotations

import subprocess

import duckdb
import pytest

from syncs import state
from syncs.config import ConfigError
from syncs.engine import load_project
from syncs.user_sql import UnsafeSQLError, validate_condition, validate_query
from tests.reliability.figures import FIGURES
from tests.reliability.harness import child_environment, cli_command

ADVERSARIAL_VALUES = [
    ("not-an-email", "12", "Plain"),
    ("@example.com", "+1 (415) 555-2671", "NoLocal"),
    ("a@b", "+999 000", "NoTld"),
    ("user@example.com\n", "555-0100 ext. 7", "Trailing newline"),
    (" spaced @example.com", "phone", "Space"),
    ("x@example.com'; drop table analytics.audience; --", "' or 1=1 --", "Robert'); DROP TABLE students;--"),
    ("\u202eevil@example.com", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667", "\u202bRTL \u05e9\u05dc\u05d5\u05dd"),
    ("emoji\U0001f600@example.com", "\U0001f4de 555", "\U0001f9d1\u200d\U0001f4bb"),
    ("zero\u200bwidth@example.com", "+1\u200b415\u200b555\u200b2671", "Zero\u200bWidth\ufeff"),
    ("A" * 100_000 + "@example.com", "9" * 5_000, "N" * 200_000),
    (None, None, None),
    ("", "", ""),
    ("null@example.com\x00", "\x00", "Nul\x00byte"),
    ('{"json": true}@example.com', "[1,2]", '{"a": 1}'),
    ("valid@example.com", "+14155552671", "Valid"),
]


def test_adversarial_values_become_row_errors_or_deliveries_never_a_crash(rel_env):
    rows = [(f"a{i:03d}", *values) for i, values in enumerate(ADVERSARIAL_VALUES)]
    rows += [("dup", "one@example.com", None, "First"), ("dup", "two@example.com", None, "Second")]
    rows += [(None, "nokey@example.com", None, "NoKey")]
    with duckdb.connect(str(rel_env.warehouse)) as con:
        con.executemany("insert into analytics.adversarial values (?, ?, ?, ?)", rows)
    FIGURES.bad_inputs_tried += len(rows) * 3

    result = rel_env.run("adversarial_upsert")

    assert result.status in ("success", "partial"), result.message
    delivered = set(rel_env.webhook().members.get("adversarial", {}))
    errors = {
        key: (code, message)
        for key, code, message in rel_env.sql(
            "select row_key, code, message from tidings.row_errors where sync_name = 'adversarial_upsert'"
        )
    }
    keys = {row[0] for row in rows if row[0] is not None}
    unaccounted = keys - delivered - set(errors)
    FIGURES.rows_checked += len(keys)
    FIGURES.rows_lost += len(unaccounted)
    assert not unaccounted, f"rows neither delivered nor reported: {sorted(unaccounted)}"
    assert all(code and message for code, message in errors.values()), errors
    assert rel_env.sql("select count(*) from analytics.audience") == [(100,)]  # the SQL-looking value stayed data
    assert result.skipped >= 1, "the row without a key is not counted anywhere"


def test_a_duplicated_key_is_reported_per_row_with_a_reason(rel_env):
    """Two model rows share a key: the engine cannot know which is right, so the key must be reported in
    tidings.row_errors (not just counted), whatever it decides to send."""
    rel_env.sql(
        "insert into analytics.adversarial values ('dup', 'one@example.com', null, 'First'), "
        "('dup', 'two@example.com', null, 'Second'), ('ok', 'ok@example.com', null, 'Ok')"
    )
    FIGURES.bad_inputs_tried += 2

    result = rel_env.run("adversarial_upsert")

    assert result.status in ("success", "partial")
    errors = rel_env.sql("select row_key, code, message from tidings.row_errors where row_key = 'dup'")
    assert errors and errors[0][1] and errors[0][2], "duplicate key 'dup' has no row error with a reason"


SYNC_TEMPLATE = """
models:
  - name: audience
    config:
      meta:
        tidings:
          syncs:
            - name: {name}
              destination: {destination}
              mode: {mode}
              primary_key: customer_id
              target: {{topic: t}}
              mapping: {{email: email}}
              {extra}
"""

BAD_CONFIGS = {
    "unknown mode": ({"mode": "sometimes"}, "mode"),
    "unknown destination": ({"destination": "nowhere"}, "destination"),
    "bad sync name": ({"name": "Bad Name!"}, "name"),
    "bad schedule": ({"extra": "schedule: 'every day'"}, "schedule"),
    "unknown field": ({"extra": "colour: blue"}, "colour"),
    "removal share above 1": ({"extra": "guards: {max_removal_share: 7}"}, "guards.max_removal_share"),
    "unsafe where": ({"extra": 'where: "score > 0; drop table analytics.audience"'}, "where"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_malformed_sync_config_names_the_file_and_field(write_project, case):
    overrides, field = BAD_CONFIGS[case]
    values = {"name": "s", "destination": "hooks", "mode": "mirror", "extra": ""} | overrides
    project_dir, destinations = write_project(SYNC_TEMPLATE.format(**values))
    FIGURES.bad_inputs_tried += 1
    with pytest.raises(ConfigError) as raised:
        load_project(project_dir, destinations, profile="sandbox")
    message = str(raised.value)
    assert str(project_dir / "models" / "_models.yml") in message
    assert f"field '{field}'" in message and "Fix:" in message


BAD_DESTINATIONS = {
    "literal secret": (
        "profiles:\n  sandbox:\n    d:\n      type: webhook\n      base_url: http://x\n      secret: hunter2\n",
        "secret",
    ),
    "unknown type": ("profiles:\n  sandbox:\n    d:\n      type: carrier_pigeon\n", "type"),
    "missing profile": ("profiles:\n  production: {}\n", "profiles"),
    "not yaml": ("profiles: [unclosed\n", "(file)"),
    "missing base_url": ("profiles:\n  sandbox:\n    d:\n      type: webhook\n      secret_env: X\n", "base_url"),
}


@pytest.mark.parametrize("case", list(BAD_DESTINATIONS))
def test_malformed_destinations_file_names_the_file_and_field(write_project, case):
    text, field = BAD_DESTINATIONS[case]
    project_dir, destinations = write_project("models: []\n", text)
    FIGURES.bad_inputs_tried += 1
    with pytest.raises(ConfigError) as raised:
        load_project(project_dir, destinations, profile="sandbox")
    assert str(destinations) in str(raised.value) and f"'{field}'" in str(raised.value)
    assert "hunter2" not in str(raised.value)


UNSAFE_QUERIES = [
    "drop table analytics.audience",
    "create table x as select 1",
    "insert into analytics.audience values ('x', 'x', 'x', 1)",
    "update analytics.audience set score = 0",
    "delete from analytics.audience",
    "select 1; select 2",
    "select * from analytics.audience; drop table analytics.audience",
    "copy analytics.audience to '/tmp/out.csv'",
    "attach '/tmp/other.duckdb' as other",
    "select * from read_csv('/etc/passwd')",
    "select * from read_csv_auto('/etc/passwd')",
    "select * from read_parquet('/tmp/x.parquet')",
    "select * from read_json('/tmp/x.json')",
    "select * from read_text('/etc/passwd')",
    "select * from glob('/etc/*')",
    "select * from '/etc/passwd'",
    "select * from 'https://example.com/x.csv'",
    "install httpfs",
    "load httpfs",
    "pragma database_list",
    "set enable_external_access = true",
    "export database '/tmp/dump'",
    "select * into new_table from analytics.audience",
    "call pragma_version()",
    "select * from other.analytics.audience",
    "select * from raw.crm_customers",
    "select * from analytics.audience where customer_id in (select customer_id from tidings.sync_state)",
    "with x as (select * from information_schema.tables) select * from x",
    "select getenv('HOME')",
    "select * from duckdb_settings()",
    "",
]
UNSAFE_CONDITIONS = [
    "score > 0; drop table analytics.audience",
    "score > (select count(*) from analytics.audience)",
    "exists (select 1 from tidings.sync_state)",
    "customer_id in (select column0 from read_csv('/etc/passwd'))",
    "audience.score > 1",
    "password = 'x'",
    "getenv('HOME') is not null",
    "score > 0 -- \n; drop table x",
]


@pytest.mark.parametrize("query", UNSAFE_QUERIES)
def test_user_queries_other_than_one_read_only_select_are_refused(query):
    FIGURES.unsafe_sql_refused += 1
    with pytest.raises(UnsafeSQLError):
        validate_query(query, ["analytics.audience"])


@pytest.mark.parametrize("condition", UNSAFE_CONDITIONS)
def test_unsafe_filters_are_refused(condition):
    FIGURES.unsafe_sql_refused += 1
    with pytest.raises(UnsafeSQLError):
        validate_condition(condition, ["customer_id", "email", "score"])


def test_safe_user_sql_is_accepted_and_rerendered_without_comments():
    assert validate_query("select customer_id from analytics.audience -- hi", ["analytics.audience"]).startswith(
        "SELECT"
    )
    assert "--" not in validate_condition("score >= 10 /* c */", ["score"])


def test_a_refused_where_never_reaches_execution(rel_env):
    """The sync with a malicious filter never loads, the CLI refuses with exit code 2, and the warehouse is
    untouched: no run recorded, the audience table intact."""
    yaml_path = rel_env.dbt_project_dir / "models" / "_evil.yml"
    yaml_path.write_text(
        SYNC_TEMPLATE.format(
            name="evil",
            destination="hooks",
            mode="mirror",
            extra='where: "score > 0; drop table analytics.audience"',
        )
    )
    FIGURES.unsafe_sql_refused += 1
    with pytest.raises(ConfigError):
        rel_env.project()
    child = subprocess.run(
        cli_command(rel_env, "audience_mirror"), env=child_environment(), capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 2 and "_evil.yml" in child.stderr and "where" in child.stderr
    assert rel_env.sql("select count(*) from analytics.audience") == [(100,)]
    tables = {t for (t,) in rel_env.sql("select table_name from information_schema.tables")}
    assert "sync_runs" not in tables or rel_env.sql("select count(*) from tidings.sync_runs") == [(0,)]


def test_the_engine_connection_cannot_read_files(rel_env):
    """Defense in depth behind the parser: the connection syncs use has DuckDB external access disabled."""
    con = state.connect(rel_env.warehouse)
    try:
        for statement in ("select * from '/etc/passwd'", "select * from read_csv('/etc/passwd')"):
            with pytest.raises(duckdb.Error):
                con.execute(statement).fetchall()
    finally:
        con.close()
