"""The values a PII scan looks for: every email and phone in a warehouse, raw and normalized."""

from __future__ import annotations

from typing import Any

import duckdb

MIN_NEEDLE_LENGTH = 8  # shorter values (a 7-digit local number) would match unrelated digits


def personal_values(warehouse: Any) -> set[str]:
    """Every email and phone in the warehouse, as the source wrote it and as the models normalized it."""
    queries = [
        "select email, phone_e164 from analytics.dim_customers",
        "select email, phone from raw.crm_customers",
    ]
    values: set[str] = set()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for query in queries:
            for row in con.execute(query).fetchall():
                values.update(str(v).strip() for v in row if v is not None)
    return {v for v in values if len(v) >= MIN_NEEDLE_LENGTH}
