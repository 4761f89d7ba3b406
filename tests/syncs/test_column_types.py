"""A mapped column whose type the destination cannot send is a configuration problem named before anything is
planned or sent (file, field, type, fix), not the connector's exception on every row of every run. Values JSON
has no form for (NaN, Infinity) fail their own rows only."""

from __future__ import annotations

from typing import Any

import pytest

from syncs.column_types import type_family
from syncs.config import ConfigError
from syncs.engine import plan_sync

ODD_YAML = """
models:
  - name: odd
    config:
      meta:
        tidings:
          syncs:
            - name: odd_webhook
              destination: hooks
              mode: mirror
              primary_key: customer_id
              target: {{topic: odd}}
              mapping: {{email: email, value: {column}}}
            - name: odd_csv
              destination: files
              mode: export
              primary_key: customer_id
              target: {{name: odd_csv, format: csv}}
              mapping: {{email: email, value: {column}}}
            - name: odd_parquet
              destination: files
              mode: export
              primary_key: customer_id
              target: {{name: odd_parquet, format: parquet}}
              mapping: {{email: email, value: {column}}}
"""
COLUMNS = """
    ['gold', 'early'] as tags, {'tier': 'gold', 'points': i} as loyalty, map {'a': i} as counters,
    '\\xAA\\xBB'::blob as avatar, interval (i) day as tenure, time '09:30:00' as preferred_time,
    case when i = 1 then 'nan'::double when i = 2 then 'infinity'::double else i / 2 end as score,
    340282366920938463463374607431768211455::uhugeint - i::uhugeint as wide, '09:30:00+02'::timetz as call_window
"""


def with_odd_model(env: Any, column: str) -> Any:
    (env.dbt_project_dir / "models" / "_odd.yml").write_text(ODD_YAML.format(column=column))
    env.sql(
        f"create table analytics.odd as select 'c' || i as customer_id, 'a' || i || '@example.com' as email, {COLUMNS} "
        "from range(4) t(i)"
    )
    return env


@pytest.mark.parametrize(
    ("data_type", "family"),
    [
        ("VARCHAR[]", "nested"),
        ("INTEGER[2]", "nested"),
        ("STRUCT(k INTEGER)", "nested"),
        ("MAP(VARCHAR, INTEGER)", "map"),
        ("UNION(num INTEGER, str VARCHAR)", "union"),
        ("BLOB", "binary"),
        ("BIT", "binary"),
        ("INTERVAL", "interval"),
        ("TIME WITH TIME ZONE", "zoned_time"),
        ("DECIMAL(10,2)", "scalar"),
        ("ENUM('a', 'b')", "scalar"),
        ("JSON", "scalar"),
        ('"NULL"', "scalar"),
        ("UHUGEINT", "wide_integer"),
        ("BIGNUM", "wide_integer"),
        ("HUGEINT", "scalar"),
    ],
)
def test_type_families(data_type: str, family: str) -> None:
    assert type_family(data_type) == family


@pytest.mark.parametrize(
    ("column", "sync", "fix"),
    [
        ("tags", "odd_webhook", "to_json(tags)::varchar"),
        ("loyalty", "odd_csv", "to_json(loyalty)::varchar"),
        ("counters", "odd_parquet", "to_json(counters)::varchar"),
        ("avatar", "odd_webhook", "hex(avatar)"),
        ("tenure", "odd_parquet", "epoch(tenure)"),
        ("wide", "odd_webhook", "wide::varchar"),
        ("wide", "odd_csv", "wide::varchar"),
        ("wide", "odd_parquet", "wide::decimal(38, 0)"),
        ("call_window", "odd_webhook", "call_window::varchar"),
    ],
)
def test_a_column_the_destination_cannot_send_is_a_config_error(sync_env, column: str, sync: str, fix: str):
    env = with_odd_model(sync_env, column)

    with pytest.raises(ConfigError) as planned:
        plan_sync(sync, project=env.project(), warehouse=env.warehouse)
    with pytest.raises(ConfigError) as ran:
        env.run(sync)

    message = str(ran.value)
    assert str(planned.value) == message
    assert "_odd.yml" in message and f"sync {sync}" in message and "field 'mapping.value'" in message
    assert f"column '{column}' is " in message and fix in message
    assert env.sql(f"select status from tidings.sync_runs where sync_name = '{sync}'") == [("failed",)]
    assert env.webhook().deliveries == []


@pytest.mark.parametrize("column", ["tags", "loyalty", "avatar"])
def test_parquet_keeps_lists_structs_and_binary(sync_env, column: str):
    result = with_odd_model(sync_env, column).run("odd_parquet")

    assert (result.status, result.sent) == ("success", 4)


def test_times_go_out_as_iso_8601_and_non_finite_numbers_fail_their_rows(sync_env):
    env = with_odd_model(sync_env, "preferred_time")
    assert env.run("odd_webhook").sent == 4
    assert {d["fields"]["value"] for d in env.webhook().deliveries} == {"09:30:00"}

    (env.dbt_project_dir / "models" / "_odd.yml").write_text(ODD_YAML.format(column="score"))
    env.webhook().reset()
    result = env.run("odd_webhook")

    assert (result.status, result.sent, result.failed) == ("partial", 2, 2)
    assert sorted(d["key"] for d in env.webhook().deliveries) == ["c0", "c3"]
    assert env.sql("select row_key, code, permanent from tidings.row_errors order by row_key") == [
        ("c1", "non_finite_number", True),
        ("c2", "non_finite_number", True),
    ]
    assert env.run("odd_webhook").failed == 0  # rejected for good in this version: not sent again


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ("nonexistent_column > 1", 'Referenced column "nonexistent_column" not found'),
        ("cast(email as integer) > 1", "Could not convert string '…' to INT32"),
    ],
)
def test_a_filter_that_fails_on_the_built_model_is_a_config_error(sync_env, where: str, named: str):
    """The filter passed the load-time checks (one read-only expression); the warehouse refuses it. The error
    names the sync's file and field, and never quotes a row value (the email it could not convert)."""
    env = with_odd_model(sync_env, "score")
    models = env.dbt_project_dir / "models" / "_odd.yml"
    models.write_text(
        models.read_text().replace(
            "mapping: {email: email, value: score}",
            f'where: "{where}"\n              mapping: {{email: email, value: score}}',
            1,
        )
    )

    with pytest.raises(ConfigError) as raised:
        env.run("odd_webhook")

    message = str(raised.value)
    assert "_odd.yml" in message and "sync odd_webhook" in message and "field 'where'" in message
    assert named in message and "@example.com" not in message
    assert env.sql("select message from tidings.sync_runs where sync_name = 'odd_webhook'") == [(message,)]
