"""The Great Expectations gate on small hand-made tables: each rule fails exactly the rows it should."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from orchestration.quality import GateRules, SizeBand, load_gate_frame, validate

CUSTOMERS = """
    create table analytics.dim_customers as select * from (values
        ('c1', false, true,  false, false, true),
        ('c2', true,  false, false, false, false),
        ('c3', false, true,  true,  true,  true),
        ('c4', false, false, true,  false, false)
    ) t(customer_id, is_globally_suppressed, can_email, can_sms, can_mail, can_ads)
"""
AUDIENCE_RULES = GateRules("seg_test", ("customer_id",), frozenset({"email"}), checks_size=True)
NO_BAND = SizeBand(baseline=None, max_shrink=0.5, max_growth=1.0)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "gate.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("create schema analytics")
        con.execute(CUSTOMERS)
    return path


def make_model(warehouse: Path, rows: str, columns: str = "customer_id, channel, email, phone_e164") -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"create or replace table analytics.seg_test as select * from (values {rows}) t({columns})")


def gate(warehouse: Path, rules: GateRules = AUDIENCE_RULES, band: SizeBand = NO_BAND) -> str:
    return validate(load_gate_frame(warehouse, rules), rules, band).summary()


def test_clean_audience_passes(warehouse: Path):
    make_model(warehouse, "('c1', 'email', 'a@example.com', null), ('c3', 'sms', null, '+14155550100')")
    assert gate(warehouse).startswith("seg_test: ")
    assert "passed on 2 rows" in gate(warehouse)


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (
            "('c1', 'email', 'a@example.com', null), ('c2', 'email', 'b@example.com', null)",
            "suppressed customer (1 rows)",
        ),
        (
            "('c1', 'email', 'a@example.com', null), ('c4', 'email', 'd@example.com', null)",
            "no consent for the channel (1 rows)",
        ),
        (
            "('c1', 'email', 'a@example.com', null), ('c3', 'email', null, '+14155550100')",
            "identifier missing for channel (1 rows)",
        ),
        ("('c1', 'email', 'a@example', null), ('c3', 'email', 'c@example.com', null)", "malformed email (1 rows)"),
        (
            "('c1', 'email', 'a@example.com', null), ('c1', 'email', 'a@example.com', null)",
            "customer_id repeats (2 rows)",
        ),
        (
            "('c1', 'email', 'a@example.com', null), ('c9', 'email', 'z@example.com', null)",
            "customer not in dim_customers (1 rows)",
        ),
        ("('c3', 'sms', null, '4155550100')", "malformed phone (1 rows)"),
    ],
)
def test_each_rule_blocks_with_its_reason(warehouse: Path, rows: str, reason: str):
    make_model(warehouse, rows)
    summary = gate(warehouse)
    assert summary.startswith("seg_test blocked: ")
    assert reason in summary


def test_without_a_channel_column_the_syncs_channel_applies(warehouse: Path):
    make_model(warehouse, "('c1', 'a@example.com'), ('c4', 'd@example.com')", columns="customer_id, email")
    assert gate(warehouse) == "seg_test blocked: no consent for the channel (1 rows)"


def test_audience_size_must_stay_within_the_band_of_the_last_passing_run(warehouse: Path):
    make_model(warehouse, "('c1', 'email', 'a@example.com', null)")
    assert "blocked: audience size outside 5..21" in gate(warehouse, band=SizeBand(10, max_shrink=0.5, max_growth=1.0))
    assert "passed" in gate(warehouse, band=SizeBand(2, max_shrink=0.5, max_growth=1.0))


def test_message_lists_have_no_size_band(warehouse: Path):
    make_model(warehouse, "('c1', 'email', 'a@example.com', null)")
    rules = GateRules("seg_test", ("customer_id",), frozenset({"email"}), checks_size=False)
    assert "passed" in gate(warehouse, rules, band=SizeBand(1000, max_shrink=0.1, max_growth=0.1))


def test_missing_model_says_to_build_it(warehouse: Path):
    with pytest.raises(LookupError, match="build it first"):
        load_gate_frame(warehouse, AUDIENCE_RULES)
