"""Identities of mirror members compared in SQL, and the release of an identity another member keeps.

An identity-keyed destination (an ad audience, an ESP list) holds one member per identity. A mirror whose plan
removes a member, or retires a member's previous identity, would also take that identity away from a member who
shares it (a household email) and stays; such removals become `release`: dropped from the sync's state, never
sent. Identities compare as every connector normalizes them at least (trimmed, case folded unless the field is
case-sensitive); for fields a connector normalizes further (Gmail dots, phone formats), pairs are found by a
coarse key per kind and confirmed with the identifiers the connector would send.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from syncs.destinations.base import IdentityKind
from syncs.sql_text import literal, quote

RETIRED_MARKER = "#retired:"  # retirement rows are keyed `<row key>#retired:<md5 of the previous fields>`


@dataclass(frozen=True)
class IdentityField:
    name: str  # a destination field that identifies a member
    fold_case: bool  # compared case-insensitively (the connector lower-cases it)


def identity_fields_mapped(
    field_names: list[str], identity_fields: frozenset[str], case_sensitive_fields: frozenset[str]
) -> list[IdentityField]:
    """The destination's identity fields a sync maps, in name order, each compared with or without its case."""
    names = sorted(identity_fields & set(field_names))
    return [IdentityField(name, fold_case=name not in case_sensitive_fields) for name in names]


IDENTITY_TRIM = " \t\n\r\x0b"  # ASCII whitespace every identity normalizer strips (`syncs.identity`)


def _field_sql(fields_json: str, name: str) -> str:
    """One field of a row's fields JSON, as text."""
    return f"json_extract_string({fields_json}, {literal(f'$.{quote(name)}')})"


def identity_value_sql(fields_json: str, field: IdentityField) -> str:
    """One identity field of a row's fields JSON as compared: without the ASCII whitespace around it and, unless
    the connector keeps its case, lower-cased. Every identity-keyed connector normalizes at least that much
    before sending (`syncs.identity`), so equal values here are equal in the destination."""
    value = f"trim({_field_sql(fields_json, field.name)}, {literal(IDENTITY_TRIM)})"
    return f"lower({value})" if field.fold_case else value


def identity_sql(fields_json: str, retiring: list[IdentityField]) -> str:
    """A row's whole identity (every identity field it maps) as one comparable text."""
    return f"json_array({', '.join(identity_value_sql(fields_json, field) for field in retiring)})::varchar"


# A key each identity kind's values share whenever a connector normalizes them to the same identifier: an email
# without case, outer whitespace or dots (Gmail ignores dots in the local part), a phone's last seven characters
# once the usual ASCII separators are gone (the same number in national or international format). Equal keys only
# make candidates; a number written with other characters (`ext. 2`, a non-breaking space) only misses its pair.
# `translate` of ASCII characters rather than a regular expression or non-ASCII ones: the key is computed for
# every settled member (at 1M members, 0.3 s against 0.6-0.7 s).
PHONE_SEPARATORS = " \t()-.+/"
COARSE_IDENTITY_SQL: dict[str, str] = {
    "email": f"replace(lower(trim({{value}}, {literal(IDENTITY_TRIM)})), '.', '')",
    "phone": f"nullif(right(translate({{value}}, {literal(PHONE_SEPARATORS)}, ''), 7), '')",
}


def _match_key_sql(retiring: list[IdentityField], normalized: Mapping[str, IdentityKind]) -> str:
    """`identity_sql` of `row_fields`, with the coarse key of its kind for each field in `normalized`."""
    values = []
    for identity_field in retiring:
        if identity_field.name in normalized:
            value = _field_sql("row_fields", identity_field.name)
            values.append(COARSE_IDENTITY_SQL[normalized[identity_field.name]].format(value=value))
        else:
            values.append(identity_value_sql("row_fields", identity_field))
    return f"json_array({', '.join(values)})::varchar"


def release_shared_identities(
    con: duckdb.DuckDBPyConnection,
    table: str,
    state_sql: str,
    retiring: list[IdentityField],
    normalized: Mapping[str, IdentityKind],
    sent_identity: Callable[[Mapping[str, Any]], str | None] | None,
) -> None:
    """Removals and retirements of an identity another member keeps become `release`: not sent, only dropped from
    the sync's state. An identity-keyed destination holds one member per identity, so removing it for a customer
    who left would also remove it for a customer who shares it (a household email) and stays.

    The member keeping it must be settled in state with that identity and still hold it after this run: not
    removed, and not retiring it (an unchanged member, or one changed in other fields), so the destination holds
    the identity and that member's own removal later takes it out. An identity a member only gains in this run
    is sent after the removals, which cannot undo it. The whole identity tuple must match: a removal sharing only
    some identifiers (one email, two phones) is sent, since the destination may match on any of them.

    Identities match when their identity fields are equal once trimmed and, unless case-sensitive, lower-cased.
    For fields the connector normalizes further (`normalized`: Gmail dots, phone formats), that comparison would
    miss members the destination holds as one, so pairs are found by a coarse key per kind
    (`COARSE_IDENTITY_SQL`) and kept only when the connector sends the same identifiers for both
    (`sent_identity`): a release is never wrong, and a pair the key misses is only a removal sent."""
    if not normalized or sent_identity is None:
        identity = identity_sql("row_fields", retiring)
        removed = f"select {identity} from {table} where action in ('remove', 'retire')"
        kept = f"select {identity} from ({_kept_members_sql(table, state_sql)}) where {identity} in ({removed})"
        con.execute(
            f"update {table} set action = 'release' where action in ('remove', 'retire') and {identity} in ({kept})"
        )
        return
    match = _match_key_sql(retiring, normalized)
    no_identity = literal(json.dumps([None] * len(retiring), separators=(",", ":")))  # would pair with every other
    pairs = con.execute(
        f"""
        with leaving as (
            select row_key, row_fields, {match} as match from {table}
            where action in ('remove', 'retire') and {match} <> {no_identity}
        ),
        kept as (
            select distinct row_fields, {match} as match from ({_kept_members_sql(table, state_sql)})
            where {match} in (select match from leaving)
        )
        select leaving.row_key, leaving.row_fields, kept.row_fields from leaving join kept using (match)"""
    ).fetchall()
    identities: dict[str, str | None] = {}

    def identity_of(fields_json: str) -> str | None:
        if fields_json not in identities:
            identities[fields_json] = sent_identity(json.loads(fields_json))
        return identities[fields_json]

    def held_by_kept(leaving: str, kept: str) -> bool:
        identity = identity_of(leaving)
        return identity is not None and identity == identity_of(kept)

    released = sorted({key for key, leaving, kept in pairs if held_by_kept(leaving, kept)})
    if released:
        con.execute(
            f"update {table} set action = 'release' where action in ('remove', 'retire') "
            "and row_key in (select unnest(?::varchar[]))",
            [released],
        )


def plans_removals(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute(f"select 1 from {table} where action in ('remove', 'retire') limit 1").fetchall())


def _kept_members_sql(table: str, state_sql: str) -> str:
    """State rows of members settled in the destination that still hold their identity after this run: not
    removed, and not retiring it. A member settled without fields (sent in upsert mode) that the plan records holds
    the model's (`record`: its hash is unchanged), though the state learns them only when the run delivers."""
    leaving = (
        f"select row_key from {table} where action = 'remove' union all "
        f"select split_part(row_key, {literal(RETIRED_MARKER)}, 1) from {table} where action = 'retire'"
    )
    recorded = f"select row_key, row_fields from {table} where action = 'record'"
    return f"""
        select s.row_key, s.row_hash, coalesce(s.row_fields, r.row_fields) as row_fields
        from ({state_sql}) s left join ({recorded}) r on r.row_key = s.row_key
        where s.row_hash <> '' and s.row_key not in ({leaving})"""
