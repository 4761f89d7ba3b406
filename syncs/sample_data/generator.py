"""Generate the raw source tables of a realistic, messy customer base into schema `raw` of a DuckDB file.

Everything is computed set-wise in DuckDB SQL from seeded hashes (see `randomness`), so a million customers
take seconds, the same seed and as-of date always give identical tables, and re-running replaces them.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import duckdb

from syncs.sample_data import billing, commerce, events, marketing, people, permissions
from syncs.sample_data.randomness import macro_statements
from syncs.settings import AS_OF_ENV, RAW_SCHEMA
from syncs.state import busy_as_error

RAW_TABLES = (
    "crm_customers",
    "product_events",
    "shop_orders",
    "shop_order_lines",
    "billing_subscriptions",
    "billing_invoices",
    "billing_payments",
    "consent_events",
    "suppressions",
    "ad_spend",
    "esp_message_events",
)

# Order matters: later steps read the hidden persona tables and the raw tables written before them.
_STEPS = (people, commerce, events, billing, permissions, marketing)


def default_as_of() -> date:
    """TIDINGS_AS_OF_DATE, the date dbt's as_of_date() also reads, else today: data and models name one "today"."""
    value = os.environ.get(AS_OF_ENV)
    try:
        return date.fromisoformat(value) if value else date.today()
    except ValueError:
        raise ValueError(f"{AS_OF_ENV}={value!r} is not a date: use YYYY-MM-DD") from None


def generate(warehouse: Path, *, customers: int, seed: int = 42, as_of: date | None = None) -> dict[str, int]:
    """Write every raw table for `customers` customers; returns the row count of each raw table."""
    if customers < 1:
        raise ValueError(f"customers must be at least 1, got {customers}")
    as_of = as_of or default_as_of()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with busy_as_error(warehouse):
        con = duckdb.connect(str(warehouse))
    with con:
        for statement in macro_statements(seed=seed, as_of=as_of, customers=customers):
            con.execute(statement)
        con.execute(f"create schema if not exists {RAW_SCHEMA}")
        con.execute("begin transaction")
        for step in _STEPS:
            for statement in step.STATEMENTS:
                con.execute(statement)
        con.execute("commit")
        return {table: con.execute(f"select count(*) from {RAW_SCHEMA}.{table}").fetchone()[0] for table in RAW_TABLES}
