"""The sample-data generator: deterministic per seed and as-of date, different across seeds, scaled by customers."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import pytest

from syncs.sample_data import RAW_TABLES, generate

AS_OF = date(2026, 11, 1)


def table_checksums(warehouse: Path) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent content hash of every raw table."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            table: con.execute(
                f"select count(*), md5(coalesce(string_agg(md5(t::varchar), '' order by md5(t::varchar)), '')) "
                f"from raw.{table} t"
            ).fetchone()
            for table in RAW_TABLES
        }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    warehouse = tmp_path_factory.mktemp("sample") / "small.duckdb"
    return warehouse, generate(warehouse, customers=300, seed=11, as_of=AS_OF)


def test_same_seed_and_date_give_identical_tables(small: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    warehouse, _ = small
    again = tmp_path / "again.duckdb"
    generate(again, customers=300, seed=11, as_of=AS_OF)

    assert table_checksums(again) == table_checksums(warehouse)


def test_rerun_replaces_tables_in_place(tmp_path: Path) -> None:
    warehouse = tmp_path / "rerun.duckdb"
    first = generate(warehouse, customers=120, seed=5, as_of=AS_OF)
    before = table_checksums(warehouse)

    second = generate(warehouse, customers=120, seed=5, as_of=AS_OF)

    assert second == first
    assert table_checksums(warehouse) == before


def test_another_seed_or_date_changes_every_table(small: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    warehouse, _ = small
    other_seed, other_date = tmp_path / "seed.duckdb", tmp_path / "date.duckdb"
    generate(other_seed, customers=300, seed=12, as_of=AS_OF)
    generate(other_date, customers=300, seed=11, as_of=date(2026, 12, 1))
    reference = table_checksums(warehouse)

    for variant in (table_checksums(other_seed), table_checksums(other_date)):
        changed = {table for table in RAW_TABLES if variant[table][1] != reference[table][1]}
        assert changed == set(RAW_TABLES)


def test_counts_are_reported_and_scale_with_customers(small: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    warehouse, counts = small
    larger = generate(tmp_path / "larger.duckdb", customers=1200, seed=11, as_of=AS_OF)

    assert counts == {table: rows for table, (rows, _) in table_checksums(warehouse).items()}
    assert counts["crm_customers"] == 300 and larger["crm_customers"] == 1200
    for table in ("product_events", "shop_orders", "billing_subscriptions", "consent_events", "esp_message_events"):
        assert 3.0 < larger[table] / counts[table] < 5.0, table
    # ad spend is one row per campaign and day whatever the base size
    assert larger["ad_spend"] == counts["ad_spend"]


def test_data_is_messy_the_way_real_exports_are(small: tuple[Path, dict[str, int]]) -> None:
    warehouse, _ = small
    with duckdb.connect(str(warehouse), read_only=True) as con:
        emails = [row[0] for row in con.execute("select email from raw.crm_customers").fetchall()]
        phones = [row[0] for row in con.execute("select phone from raw.crm_customers").fetchall() if row[0]]
        names = [row[0] for row in con.execute("select last_name from raw.crm_customers").fetchall()]
        missing_address = con.execute("select count(*) filter (where address_line1 is null) from raw.crm_customers")
        missing_address = missing_address.fetchone()[0]

    present = [email for email in emails if email is not None]
    assert any(email != email.strip() for email in present)
    assert any(email != email.lower() for email in present)
    assert any("@" not in email or email.count("@") > 1 for email in present)
    assert None in emails
    assert any(phone.startswith("+") for phone in phones) and any(phone.startswith("00") for phone in phones)
    assert any(phone.startswith("(") for phone in phones)
    assert any(not any(ch.isdigit() for ch in phone) for phone in phones)
    assert any(not name.isascii() for name in names)
    assert missing_address > 0


def test_nothing_is_dated_after_the_as_of_day_except_future_billing(small: tuple[Path, dict[str, int]]) -> None:
    warehouse, _ = small
    past_columns = {
        "product_events": '"timestamp"',
        "shop_orders": "created_at",
        "consent_events": "occurred_at",
        "suppressions": "created_at",
        "billing_payments": "attempted_at",
        "esp_message_events": "occurred_at",
        "crm_customers": "created_at",
    }
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table, column in past_columns.items():
            latest = con.execute(f"select max({column}) from raw.{table}").fetchone()[0]
            assert latest.date() < AS_OF, table
        future_renewals = con.execute(
            "select count(*) from raw.billing_subscriptions where current_period_end > ?", [AS_OF]
        ).fetchone()[0]
    assert future_renewals > 0


def test_command_line_writes_the_warehouse(tmp_path: Path) -> None:
    warehouse = tmp_path / "cli.duckdb"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncs.sample_data",
            "--customers",
            "40",
            "--seed",
            "3",
            "--as-of",
            "2026-11-01",
            "--warehouse",
            str(warehouse),
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert "raw.crm_customers" in result.stdout
    assert table_checksums(warehouse)["crm_customers"][0] == 40


def test_rejects_an_empty_customer_base(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="customers must be at least 1"):
        generate(tmp_path / "empty.duckdb", customers=0)
