"""Which kinds of warehouse column types a sync may map, checked against its destination before planning.

A column no connector can carry (a list sent to an ESP, a blob in a webhook, an interval in a CSV) would otherwise
fail every row of every run with the connector's own exception; a UHUGEINT or BIGNUM, which the runner's Arrow
stream cannot hold, would reach the destination wrapped around (2^128 - 1 as -1), and a TIME WITH TIME ZONE without
its offset. Each is a configuration problem, named with the sync's file, the mapped field, the column's type and a
cast that fixes it.
"""

from __future__ import annotations

from typing import Literal

import duckdb

from syncs.config import ConfigError, ConfigProblem, SyncSpec
from syncs.destinations.base import Destination
from syncs.settings import models_schema

TypeFamily = Literal["scalar", "wide_integer", "zoned_time", "nested", "map", "union", "binary", "interval"]

_DESCRIPTIONS: dict[TypeFamily, str] = {
    "wide_integer": "an integer wider than the signed 128 bits rows are streamed in (DuckDB's Arrow form of it wraps "
    "around or is opaque)",
    "zoned_time": "a time of day with an offset, which the runner's Arrow stream drops (10:00+02 arrives as 10:00)",
    "nested": "a list or struct",
    "map": "a map",
    "union": "a union",
    "binary": "binary",
    "interval": "an interval",
}
_FIXES: dict[TypeFamily, str] = {
    "wide_integer": "map it as text ({column}::varchar), or as {column}::decimal(38, 0) when its values fit",
    "zoned_time": "map it as text, which keeps the offset: {column}::varchar",
    "nested": "select the scalar values you need in the model, or map JSON text: to_json({column})::varchar",
    "map": "select the values you need in the model, or map JSON text: to_json({column})::varchar",
    "union": "map one member of it, or its text: {column}::varchar",
    "binary": "map it as text in the model: hex({column}) or to_base64({column})",
    "interval": "map it as text ({column}::varchar) or as a number of seconds (epoch({column}))",
}


def type_family(data_type: str) -> TypeFamily:
    """The kind of a DuckDB type as information_schema.columns spells it (`VARCHAR[]`, `STRUCT(k INTEGER)`, ...)."""
    upper = data_type.upper()
    if upper.endswith("]") or upper.startswith("STRUCT("):
        return "nested"
    if upper.startswith("MAP("):
        return "map"
    if upper.startswith("UNION("):
        return "union"
    if upper in ("BLOB", "BIT"):
        return "binary"
    if upper == "INTERVAL":
        return "interval"
    if upper in ("UHUGEINT", "BIGNUM", "VARINT"):
        return "wide_integer"
    if upper in ("TIME WITH TIME ZONE", "TIMETZ"):
        return "zoned_time"
    return "scalar"


def check_mapped_column_types(con: duckdb.DuckDBPyConnection, sync: SyncSpec, destination: type[Destination]) -> None:
    """Raise ConfigError naming every mapped column whose type the destination cannot send (columns missing from
    the model are left to the planner, which names them)."""
    types = {
        name.lower(): data_type
        for name, data_type in con.execute(
            "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ?",
            [models_schema(), sync.model],
        ).fetchall()
    }
    accepted = destination.accepted_type_families(sync.target)
    problems = []
    for field, column in sorted(sync.mapping.items()):
        data_type = types.get(column.lower())
        family = type_family(data_type) if data_type else "scalar"
        if family in accepted:
            continue
        problems.append(
            ConfigProblem(
                sync.source_file,
                f"model {sync.model}, sync {sync.name}",
                f"mapping.{field}",
                f"column {column!r} is {data_type}, {_DESCRIPTIONS[family]}, which a {destination.type_name} "
                "destination cannot send",
                _FIXES[family].format(column=column),
            )
        )
    if problems:
        raise ConfigError(problems)
