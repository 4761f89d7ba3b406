"""Seeded pseudo-randomness as DuckDB macros, so every table is generated set-wise in SQL.

Each draw hashes (key, salt, seed): the same seed, key and salt always give the same value, a different seed
gives an unrelated one, and no state is carried between rows, so generation parallelises freely.
"""

from __future__ import annotations

from datetime import date


def macro_statements(*, seed: int, as_of: date, customers: int) -> list[str]:
    """Temporary macros for one generation run; the values are typed Python ints/dates, never user text."""
    seed, customers = int(seed), int(customers)
    modulus = 1_000_003  # prime, so uniform draws do not alias with small modular patterns
    return [
        f"create or replace temp macro sd_seed() as {seed}",
        f"create or replace temp macro sd_customers() as {customers}",
        f"create or replace temp macro sd_as_of() as date '{as_of.isoformat()}'",
        # The generation instant: the start of the as-of day. Past facts happen before it, future ones after.
        f"create or replace temp macro sd_now() as timestamp '{as_of.isoformat()} 00:00:00'",
        f"create or replace temp macro rnd(k, salt) as ((hash(k, salt, {seed}) % {modulus})::double / {modulus})",
        f"create or replace temp macro rnd2(a, b, salt) as "
        f"((hash(a, b, salt, {seed}) % {modulus})::double / {modulus})",
        # Uniform integer in [lo, hi].
        "create or replace temp macro rint(k, salt, lo, hi) as (lo + floor(rnd(k, salt) * (hi - lo + 1))::bigint)",
        "create or replace temp macro rint2(a, b, salt, lo, hi) as "
        "(lo + floor(rnd2(a, b, salt) * (hi - lo + 1))::bigint)",
        "create or replace temp macro pick(lst, k, salt) as lst[1 + floor(rnd(k, salt) * len(lst))::bigint]",
        "create or replace temp macro pick2(lst, a, b, salt) as lst[1 + floor(rnd2(a, b, salt) * len(lst))::bigint]",
        # A moment `days_ago` days (fractional) before the generation instant, at a seeded time of day.
        "create or replace temp macro days_before(days_ago) as (sd_now() - to_seconds((days_ago * 86400)::bigint))",
    ]
