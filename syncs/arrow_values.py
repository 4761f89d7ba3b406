"""Python values (and CSV text) of the Arrow columns the runner streams from DuckDB, where Arrow's form of a
value is not what a destination should get.

A HUGEINT (what `sum()` of integers returns) arrives as a 128-bit decimal with no fraction: it becomes a Python
int again, so a JSON destination gets the same number whether the row was rendered in the warehouse or in Python.
DuckDB's `infinity` and `-infinity` dates and timestamps (an open-ended `valid_to`, a lifetime plan's `ends_at`)
arrive as the extreme values of the column's storage, which Python's date types cannot hold (building a row
raises OverflowError) and pyarrow's CSV writer prints as `<value out of range: ...>`. Rows and CSV cells get the
text DuckDB's own JSON and CSV writers use for them, `infinity` and `-infinity`; Parquet keeps the stored value,
as DuckDB's own Parquet writer does.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

INFINITY = "infinity"
NEGATIVE_INFINITY = "-infinity"
_DATE_INFINITY = 2**31 - 1
_TIMESTAMP_INFINITY = 2**63 - 1
HUGEINT_ARROW_TYPE = pa.decimal128(38, 0)  # also DECIMAL(38, 0), whose values are whole numbers too


def _is_dated(column: pa.ChunkedArray | pa.Array) -> bool:
    return pa.types.is_date32(column.type) or pa.types.is_timestamp(column.type)


def _infinities(column: pa.ChunkedArray | pa.Array) -> tuple[pa.ChunkedArray, pa.ChunkedArray] | None:
    """Masks of the infinite and minus-infinite values of a date or timestamp column, or None when it has none."""
    if not _is_dated(column):
        return None
    storage = pc.cast(column, pa.int32() if pa.types.is_date32(column.type) else pa.int64())
    infinity = _DATE_INFINITY if pa.types.is_date32(column.type) else _TIMESTAMP_INFINITY
    positive, negative = pc.equal(storage, infinity), pc.equal(storage, -infinity)
    if not (pc.any(positive).as_py() or pc.any(negative).as_py()):
        return None
    return positive, negative


def _without_infinities(column: pa.ChunkedArray, masks: tuple[pa.ChunkedArray, pa.ChunkedArray]) -> pa.ChunkedArray:
    return pc.if_else(pc.or_(*masks), pa.scalar(None, column.type), column)


def python_values(column: pa.ChunkedArray) -> list[Any]:
    """`column.to_pylist()`, with whole 128-bit decimals as ints and infinite dates and timestamps as the text
    `infinity` / `-infinity`."""
    if column.type == HUGEINT_ARROW_TYPE:
        return [None if value is None else int(value) for value in column.to_pylist()]
    masks = _infinities(column)
    if masks is None:
        return column.to_pylist()
    positive, negative = masks
    finite = _without_infinities(column, masks).to_pylist()
    return [
        INFINITY if up else NEGATIVE_INFINITY if down else value
        for value, up, down in zip(finite, positive.to_pylist(), negative.to_pylist(), strict=True)
    ]


def csv_ready(table: pa.Table) -> pa.Table:
    """The table with every date and timestamp column as text (the same text pyarrow's CSV writer prints), its
    infinities as `infinity` / `-infinity`. Every batch converts, so the file's columns never change type."""
    for index, column in enumerate(table.columns):
        if not _is_dated(column):
            continue
        masks = _infinities(column)
        if masks is None:
            text = pc.cast(column, pa.string())
        else:
            positive, negative = masks
            finite = pc.cast(_without_infinities(column, masks), pa.string())
            text = pc.if_else(positive, INFINITY, pc.if_else(negative, NEGATIVE_INFINITY, finite))
        table = table.set_column(index, table.schema.field(index).with_type(pa.string()), text)
    return table
