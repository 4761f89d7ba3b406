"""The diff between a model's current rows and a sync's state, computed in the warehouse with SQL.

Each current row gets a key (its primary-key columns) and a hash (md5 of a JSON object of its mapped fields,
sorted by field name, so column order never matters). Joined with the sync's state this classifies every
row as add / change / remove / unchanged, plus rows not sent: a null key, a permanent error on record for
the same row version, or a key shared by model rows with different values (`duplicate_key`: the engine
cannot know which is right, so none is sent and the key gets a row error). Identical duplicate rows are
sent once. A mirror's state includes members whose batch was sent but never settled (`pending_members`,
written ahead of the sends), so a crash between the destination's acknowledgement and the state commit
never strands a member the mirror put there. The classified rows are materialized in a plan
table, which the runner streams from and the dry run previews: both see the same rows.

Identity-keyed destinations (ad audiences, ESP lists) know a member only by its identifiers, so a mirror whose
change gives a member other identifiers (a new email) also plans `retire`: a removal of the previous
identifiers, keyed `<row key>#retired:<md5 of the previous fields>`, sent before the run's upserts and written
ahead like a member, so it is retried until the destination acknowledges it. A removal or retirement of an
identity another member keeps becomes `release` instead (`syncs.identity_release`).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import duckdb

from syncs.arrow_values import python_values
from syncs.config import ConfigError, ConfigProblem, SyncSpec
from syncs.destinations.base import IdentityKind, Mode
from syncs.identity_release import (
    RETIRED_MARKER,
    IdentityField,
    identity_fields_mapped,
    identity_value_sql,
    plans_removals,
    release_shared_identities,
)
from syncs.masking import mask_row
from syncs.settings import STATE_SCHEMA, models_schema
from syncs.sql_text import literal, quote
from syncs.state import CARRIED_RUN_PREFIX, REDO_RUN_PREFIX, sent_occurrences_sql

S = STATE_SCHEMA
PREVIEW_ROWS = 10
# Actions whose rows are sent; everything else in the plan table is for counting and previewing.
SENT_ACTIONS: dict[Mode, tuple[str, ...]] = {
    Mode.MIRROR: ("retire", "add", "change", "remove"),
    Mode.UPSERT: ("add", "change"),
    Mode.SEND_ONCE: ("add",),
    Mode.EXPORT: ("add", "change", "unchanged"),
}


@dataclass
class PlanCounts:
    add: int = 0
    change: int = 0
    remove: int = 0  # members removed, and previous identities retired
    unchanged: int = 0


@dataclass
class Plan:
    sync_name: str
    mode: Mode
    counts: PlanCounts
    table: str  # the materialized plan, dropped by `drop_plan`
    field_names: list[str]  # destination field names, in the order of the plan table's f_<i> columns
    current_rows: int  # rows of the model after `where`, with a usable key
    # Members this mirror put in the destination, the removal guard's denominator; None for other modes (a
    # send_once sync's count would scan its whole ledger history for a figure nothing reads).
    mirror_members: int | None
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    # Removals written ahead again because the destination failed the run that sent them (`syncs.later_checks`):
    # that run's guards passed them already.
    redone_removals: int = 0
    # Retirements a renamed sync's carry-over wrote of identities its earlier name left (`syncs.sync_names`): they
    # come from state, not from the model, so the removal guard names them and does not count them either.
    carried_removals: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)
    guard_decisions: list[str] = field(default_factory=list)
    # State carried over from earlier names (a preview's), members the run cannot remove (`unrecorded_warning`).
    warnings: list[str] = field(default_factory=list)
    # Whether every mapped field has a type whose warehouse JSON is exactly what Python's json module writes
    # (text, integers, booleans, dates), so rows may be rendered as JSON in the warehouse (`stream_sql`).
    json_exact: bool = False
    # Destination field names in the order the sync's mapping declares them: the order rows hand their fields to
    # connectors (an export's columns, a mail drop's personalization); empty means `field_names`' order.
    mapping_order: list[str] = field(default_factory=list)

    @property
    def declared_fields(self) -> list[tuple[str, str]]:
        """(destination field, plan table column) pairs in mapping order. The plan table keeps the fields sorted
        by name, the order the row hash is computed in, so reordering a mapping never re-sends an audience."""
        column = {name: f"f_{i}" for i, name in enumerate(self.field_names)}
        return [(name, column[name]) for name in self.mapping_order or self.field_names]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


PLAN_TABLE_PREFIX = "plan__"
RUN_ID_PATTERN = r"[0-9]{8}T[0-9]{6}_[0-9a-f]{8}"  # `engine.new_run_id`
REMOVAL_ACTIONS = frozenset({"remove", "retire"})  # rows sent with their last sent fields


def plan_table_name(sync_name: str, run_id: str) -> str:
    return f"{S}.{quote(f'{PLAN_TABLE_PREFIX}{sync_name}__{run_id}')}"


def drop_orphan_plans(con: duckdb.DuckDBPyConnection, sync_name: str) -> None:
    """Plan tables left behind by runs of this sync that crashed (call while holding the sync's lock). The whole
    name is matched, run id included: sync `meta`'s prefix also starts the plans of a sync named `meta__lapsed`."""
    pattern = f"{PLAN_TABLE_PREFIX}{sync_name}__{RUN_ID_PATTERN}"
    for (name,) in con.execute(
        "select table_name from information_schema.tables where table_schema = ? and regexp_full_match(table_name, ?)",
        [S, pattern],
    ).fetchall():
        con.execute(f"drop table if exists {S}.{quote(name)}")


def build_plan(
    con: duckdb.DuckDBPyConnection,
    sync: SyncSpec,
    run_id: str,
    *,
    only_rows_in_error: bool = False,
    resend_all: bool = False,
    identity_fields: frozenset[str] = frozenset(),
    case_sensitive_fields: frozenset[str] = frozenset(),
    normalized_kinds: Mapping[str, IdentityKind] = MappingProxyType({}),
    sent_identity: Callable[[Mapping[str, Any]], str | None] | None = None,
    remove_all: bool = False,
) -> Plan:
    """Materialize the plan for `sync` and return its counts and a masked preview. `identity_fields` are the
    destination fields that identify a member there (`Destination.identity_fields`; those in
    `case_sensitive_fields` compared with their case): a mirror retires the previous identity of a member whose
    change alters any of them, and releases an identity another member keeps instead of removing it, also when
    the two differ only in what the connector normalizes away (`normalized_kinds`, `sent_identity`).
    `resend_all` (mirror and upsert) plans every current row as a change, under idempotency keys of this run.
    `remove_all` (mirror) plans the removal of every member without reading the model, which may be gone."""
    field_names = sorted(sync.mapping)
    if remove_all:
        nulls = "".join(f", null::varchar as f_{i}" for i in range(len(field_names)))
        source = f"select null::varchar as row_key{nulls} where false"
    else:
        _check_relation(con, sync)
        source = _source_sql(sync, f"{quote(models_schema())}.{quote(sync.model)}", field_names)
    table = plan_table_name(sync.name, run_id)
    try:
        current_rows, null_keys, extra_rows = con.execute(
            f"select count(distinct row_key), count(*) filter (where row_key is null), "
            f"count(row_key) - count(distinct row_key) from ({source})"
        ).fetchone()
    except FILTER_ERRORS as error:
        if not sync.where:
            raise
        raise _filter_error(sync, error) from None
    # Unchanged rows are only counted, unless the run sends them (export) or a retry restricts the plan.
    keep_unchanged = sync.mode is Mode.EXPORT or only_rows_in_error
    retiring = (
        identity_fields_mapped(field_names, identity_fields, case_sensitive_fields) if sync.mode is Mode.MIRROR else []
    )
    resend_run = run_id if resend_all else None
    sql = _plan_sql(sync, source, field_names, only_rows_in_error, extra_rows > 0, keep_unchanged, retiring, resend_run)
    con.execute(f"create or replace table {table} as {sql}")
    if retiring and plans_removals(con, table):
        mapped_identity = {field.name for field in retiring}
        normalized = {name: kind for name, kind in normalized_kinds.items() if name in mapped_identity}
        release_shared_identities(con, table, member_state_sql(sync), retiring, normalized, sent_identity)
    counts, not_sent = _counts(con, table, None if keep_unchanged else current_rows)
    mirror_members = _mirror_members(con, sync) if sync.mode is Mode.MIRROR else None
    skipped = {reason: n for reason, n in (("null_key", null_keys), *not_sent.items()) if n}
    plan = Plan(sync.name, sync.mode, counts, table, field_names, current_rows, mirror_members, skipped)
    plan.mapping_order = list(sync.mapping)
    if plan.skipped.get("unrecorded_identity"):
        plan.warnings.append(unrecorded_warning(plan.skipped["unrecorded_identity"]))
    if retiring and counts.change and (changed := _changed_without_fields(con, sync, table)):
        plan.warnings.append(
            f"{changed} changed member(s) had no identifiers on record (sent in upsert mode): if their identifiers "
            "changed, the previous ones are not removed and stay in the destination; remove them there"
        )
    if counts.remove and sync.mode is Mode.MIRROR:
        plan.redone_removals = _written_again(con, sync, table, REDO_RUN_PREFIX)
        plan.carried_removals = _written_again(con, sync, table, CARRIED_RUN_PREFIX)
    plan.preview = _preview(con, plan)
    plan.json_exact = _json_exact(con, plan)
    return plan


def unrecorded_warning(members: int) -> str:
    return (
        f"{members} member(s) that left the model were recorded without the identifiers sent to them (by runs in "
        "upsert mode, which keep none): this mirror cannot remove them; a run drops them from its state, and they "
        "stay in the destination: remove them there"
    )


def _changed_without_fields(con: duckdb.DuckDBPyConnection, sync: SyncSpec, table: str) -> int:
    """Members the plan changes whose settled state has no fields: a mirror cannot tell what it retires."""
    return con.execute(
        f"select count(*) from {table} p join {S}.sync_state s on s.sync_name = ? and s.row_key = p.row_key "
        "where p.action = 'change' and s.row_fields is null and s.row_hash <> p.row_hash",
        [sync.name],
    ).fetchone()[0]


# What a `where` that passed the load-time checks (one read-only expression) can still raise on the built model:
# a column it names is not there, or a value cannot be cast as it asks.
FILTER_ERRORS = (duckdb.BinderException, duckdb.CatalogException, duckdb.ConversionException)


def _filter_error(sync: SyncSpec, error: duckdb.Error) -> ConfigError:
    """The warehouse's complaint about a sync's `where`, as a configuration problem. Quoted text is elided: a
    conversion error quotes the row value it could not convert, which may be PII."""
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    detail = re.sub(r"'[^']*'", "'…'", first_line)
    return ConfigError(
        [
            ConfigProblem(
                sync.source_file,
                f"model {sync.model}, sync {sync.name}",
                "where",
                f"the filter fails on the built model ({detail})",
                "use the model's own columns and compatible types: it runs as "
                f"`select ... from {sync.model} where {sync.where}`",
            )
        ]
    )


def check_model(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """What planning `sync` would refuse about the built model, without planning: the model and every column the
    sync uses are there, and its `where` runs over every row. Raises ConfigError."""
    _check_relation(con, sync)
    if sync.where:
        try:
            con.execute(
                f"select count(*) from {quote(models_schema())}.{quote(sync.model)} where {sync.where}"
            ).fetchone()
        except FILTER_ERRORS as error:
            raise _filter_error(sync, error) from None


def drop_plan(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    con.execute(f"drop table if exists {plan.table}")


def stream_sql(plan: Plan, actions: tuple[str, ...], *, json_rows: bool = False) -> str:
    """The plan rows with the given actions, for the runner to stream. With `json_rows`, each row also comes as
    the JSON text `{"key", "idempotency_key", "fields"}` (`json_row`), rendered in the warehouse from the same
    fields JSON the plan hashes; only for plans whose fields are `json_exact`.

    Only an export is ordered (by row key, the primary key as text, so a file compares line by line with the day
    before): a destination does not care in which order members arrive, and sorting every planned row before the
    first batch streams cost a 5M-row upsert 5 s of 29 s, and a 1M-row one 230 MiB of its 820 MiB peak."""
    fields = ", ".join(f"f_{i}" for i in range(len(plan.field_names)))
    wanted = ", ".join(literal(a) for a in actions)
    json_row = (
        ", json_object('key', row_key, 'idempotency_key', idempotency_key, 'fields', json(row_fields))::varchar "
        "as json_row"
        if json_rows
        else ""
    )
    return (
        f"select action, row_key, row_hash, idempotency_key, row_fields, {fields}{json_row} from {plan.table} "
        f"where action in ({wanted}){' order by row_key' if plan.mode is Mode.EXPORT else ''}"
    )


# DuckDB types whose JSON rendering equals Python's json.dumps of the value DuckDB hands to Python. Decimals
# (numbers in DuckDB's JSON, exact strings in connectors), floats (formatting) and timestamps (a space instead of
# ISO 8601's "T") are not among them.
JSON_EXACT_TYPES = frozenset(
    {"VARCHAR", "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"}
    | {"UINTEGER", "UBIGINT", "DATE", '"NULL"'}
)


def _json_exact(con: duckdb.DuckDBPyConnection, plan: Plan) -> bool:
    fields = [f"f_{i}" for i in range(len(plan.field_names))]
    if not fields:
        return True
    types = con.sql(f"select {', '.join(fields)} from {plan.table}").types
    return all(str(t) in JSON_EXACT_TYPES for t in types)


def _check_relation(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> None:
    """The model must exist and have every column the sync uses (YAML may not list them all)."""
    rows = con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [models_schema(), sync.model],
    ).fetchall()
    where = f"model {sync.model}, sync {sync.name}"
    if not rows:
        missing = f"{models_schema()}.{sync.model} is not in the warehouse"
        fix = "build the model first (`dbt build --select <model>`)"
        raise ConfigError([ConfigProblem(sync.source_file, where, "model", missing, fix)])
    columns = {r[0].lower() for r in rows}
    used = [("primary_key", c) for c in sync.primary_key] + [(f"mapping.{f}", c) for f, c in sync.mapping.items()]
    problems = [
        ConfigProblem(
            sync.source_file,
            where,
            name,
            f"column {column!r} is not in the built model",
            "map an existing column or rebuild the model",
        )
        for name, column in used
        if column.lower() not in columns
    ]
    if problems:
        raise ConfigError(problems)


def _source_sql(sync: SyncSpec, relation: str, field_names: list[str]) -> str:
    keys = [f"cast({quote(c)} as varchar)" for c in sync.primary_key]
    if len(keys) == 1:
        key = keys[0]
    else:
        any_null = " or ".join(f"{k} is null" for k in keys)
        key = f"case when {any_null} then null else concat_ws('|', {', '.join(keys)}) end"
    fields = ", ".join(f"{quote(sync.mapping[name])} as f_{i}" for i, name in enumerate(field_names))
    where = f" where {sync.where}" if sync.where else ""
    return f"select {key} as row_key, {fields} from {relation}{where}"


def _plan_sql(
    sync: SyncSpec,
    source: str,
    field_names: list[str],
    only_rows_in_error: bool,
    has_duplicate_keys: bool,
    keep_unchanged: bool,
    retiring: list[IdentityField],
    resend_run: str | None = None,
) -> str:
    name = literal(sync.name)
    pairs = ", ".join(f"{literal(n)}, f_{i}" for i, n in enumerate(field_names))
    fields = ", ".join(f"c.f_{i}" for i in range(len(field_names)))
    keyed = f"select *, json_object({pairs})::varchar as row_fields from ({source}) where row_key is not null"
    if has_duplicate_keys:  # the window over every key costs a sort: only pay it when a key repeats
        current = (
            "select *, min(row_fields) over by_key <> max(row_fields) over by_key as conflicting, "
            f"count(*) over by_key as copies from ({keyed}) window by_key as (partition by row_key) "
            "qualify row_number() over (partition by row_key order by row_fields) = 1"
        )
    else:
        current = f"select *, false as conflicting, 1 as copies from ({keyed})"
    state = member_state_sql(sync)
    removes = sync.mode in (Mode.MIRROR, Mode.EXPORT)
    removable = "true" if removes else "false"
    # State rows gone from the model matter only to modes that remove (a mirror's retirements come from its state
    # too); the others join from the model, so a send_once ledger of 20M occurrences is not carried through a
    # full outer join for the few thousand the model holds now.
    join = "full outer join" if removes else "left join"
    # A retirement written ahead by an earlier run and not acknowledged yet: only ever in pending_members.
    retirement = f"c.row_key is null and s.row_hash is null and contains(s.row_key, {literal(RETIRED_MARKER)})"
    # A mirror member settled without the fields sent to it: sent while the sync ran in upsert mode, which records
    # none. Still in the model with the same hash, its fields are the model's (`record`, settled without a send);
    # gone, it cannot be removed (`unrecorded`).
    unrecorded = "s.row_fields is null" if sync.mode is Mode.MIRROR else "false"
    resend = "true" if resend_run else "false"
    # Its member, when still in the model, is sent again after it: the two may differ only in what the destination
    # normalizes away (a phone written another way), and the removal would then take the member's current identity.
    retiring_member = "false"
    if sync.mode is Mode.MIRROR:
        retiring_member = (
            f"c.row_key in (select split_part(row_key, {literal(RETIRED_MARKER)}, 1) from {S}.pending_members "
            f"where sync_name = {name} and contains(row_key, {literal(RETIRED_MARKER)}))"
        )
    classified = f"""
        select coalesce(c.row_key, s.row_key) as row_key,
            case when {retirement} then 'retire'
                 when c.row_key is null then case when {unrecorded} then 'unrecorded'
                                                  when {removable} then 'remove' end
                 when c.conflicting then 'duplicate_key'
                 when s.row_key is null or s.row_hash is null then 'add'
                 when {unrecorded} and s.row_hash = c.row_hash and not {resend} and not {retiring_member}
                      then 'record'
                 when (s.row_hash <> c.row_hash or {retiring_member} or {resend})
                      and {literal(sync.mode.value)} <> 'send_once' then 'change'
                 else 'unchanged' end as action,
            case when {retirement} then md5(s.row_fields) else coalesce(c.row_hash, s.row_hash) end as row_hash,
            coalesce(c.row_fields, s.row_fields) as row_fields,
            c.row_key is not null as in_model,
            c.copies,
            {fields}
        from (select *, md5(row_fields) as row_hash from ({current})) c
        {join} ({state}) s on c.row_key = s.row_key"""
    if retiring:
        classified += _retirements_sql(sync, current, state, retiring, len(field_names))
    in_error = f"select row_key, row_hash, permanent from {S}.row_errors where sync_name = {name}"
    resent = f" || '/resend/' || {literal(resend_run)}" if resend_run else ""  # a receiver must not dedupe it
    identity = f"md5({name} || '/' || p.action || '/' || p.row_key || '/' || p.row_hash{resent})"
    written_ahead = ""
    if sync.mode is Mode.SEND_ONCE:
        # An occurrence written ahead keeps the key it was first sent under, whatever the sync is called now.
        identity = f"coalesce(w.idempotency_key, md5({name} || '/' || p.row_key))"
        keys = (
            f"select occurrence_key, min(idempotency_key) as idempotency_key from {S}.message_ledger "
            f"where sync_name = {name} and status = 'pending' group by occurrence_key"
        )
        written_ahead = f" left join ({keys}) w on w.occurrence_key = p.row_key"
    # A retry sends exactly the rows in error; a normal run skips rows rejected for good in this version.
    # (Members a takeover records come along: they keep identities a removal in the retry may share.)
    restrict = " and (e.row_key is not null or p.action = 'record')" if only_rows_in_error else ""
    skip = "false" if only_rows_in_error else "e.permanent and e.row_hash = p.row_hash"
    return f"""
        select case when p.action not in ('unchanged', 'record', 'unrecorded') and {skip} then 'skipped_error'
                    else p.action end as action,
               p.* exclude (action), {identity} as idempotency_key
        from ({classified}) p left join ({in_error}) e on e.row_key = p.row_key{written_ahead}
        where p.action is not null{restrict}{"" if keep_unchanged else " and p.action <> 'unchanged'"}"""


def _retirements_sql(sync: SyncSpec, current: str, state: str, retiring: list[IdentityField], field_count: int) -> str:
    """Rows removing the previous identity of members whose identity fields changed (`identity_value_sql`); a finer
    difference the destination ignores only costs a removal followed by the re-add of the same member, since
    retirements are sent before upserts. Retirements already written ahead come from the state instead."""
    differs = " or ".join(
        f"{identity_value_sql('s.row_fields', field)} is distinct from {identity_value_sql('c.row_fields', field)}"
        for field in retiring
    )
    key = f"s.row_key || {literal(RETIRED_MARKER)} || md5(s.row_fields)"
    nulls = "".join(f", null as f_{i}" for i in range(field_count))
    written_ahead = f"select row_key from {S}.pending_members where sync_name = {literal(sync.name)}"
    return f"""
        union all
        select {key}, 'retire', md5(s.row_fields), s.row_fields, false, null{nulls}
        from ({current}) c join ({state}) s on c.row_key = s.row_key
        where c.row_fields <> s.row_fields and not c.conflicting and ({differs})
          and {key} not in ({written_ahead})"""


def member_state_sql(sync: SyncSpec) -> str:
    """What the destination holds for this sync: key, hash and fields last sent. A pending mirror member (written
    ahead of a send that never settled) is sent again when still in the model and removed when gone: as an add
    (null hash) when it was never settled, as a change (empty hash) when it replaces a settled version."""
    name = literal(sync.name)
    if sync.mode is Mode.SEND_ONCE:
        sent = sent_occurrences_sql(name)
        return f"select occurrence_key as row_key, '' as row_hash, null as row_fields from ({sent})"
    settled = f"select row_key, row_hash, row_fields from {S}.sync_state where sync_name = {name}"
    if sync.mode is not Mode.MIRROR:
        return settled
    # A write-ahead entry older than the member's settled state was settled since (entries are cleared lazily).
    pending = (
        f"select p.row_key, arg_max(p.row_fields, p.marked_at) as row_fields from {S}.pending_members p "
        f"left join {S}.sync_state s on s.sync_name = p.sync_name and s.row_key = p.row_key "
        f"where p.sync_name = {name} and (s.synced_at is null or s.synced_at < p.marked_at) group by p.row_key"
    )
    return f"""
        select coalesce(p.row_key, s.row_key) as row_key,
               case when p.row_key is null then s.row_hash when s.row_key is not null then '' end as row_hash,
               coalesce(p.row_fields, s.row_fields) as row_fields
        from ({settled}) s full outer join ({pending}) p on p.row_key = s.row_key"""


def _counts(con: duckdb.DuckDBPyConnection, table: str, current_keys: int | None) -> tuple[PlanCounts, dict[str, int]]:
    """Rows per action, and rows not sent by reason: permanent errors on record, rows of conflicting duplicate
    keys, and identical duplicate rows (sent once). When the plan table leaves unchanged rows out, they are the
    model's keys (`current_keys`) that have no row in it."""
    rows = con.execute(
        f"select action, count(*), coalesce(sum(copies), 0), coalesce(sum(copies - 1), 0), "
        f"count(*) filter (where in_model) from {table} group by action"
    ).fetchall()
    by_action = {action: n for action, n, *_ in rows}
    planned_from_model = sum(in_model for *_, in_model in rows)
    counts = PlanCounts(
        add=by_action.get("add", 0),
        change=by_action.get("change", 0),
        remove=by_action.get("remove", 0) + by_action.get("retire", 0),
        unchanged=by_action.get("record", 0)
        + (by_action.get("unchanged", 0) if current_keys is None else current_keys - planned_from_model),
    )
    not_sent = {
        "permanent_error": by_action.get("skipped_error", 0),
        "duplicate_key": sum(copies for action, _, copies, _, _ in rows if action == "duplicate_key"),
        "duplicate_row": sum(extra for action, _, _, extra, _ in rows if action != "duplicate_key"),
        "shared_identity": by_action.get("release", 0),
        "unrecorded_identity": by_action.get("unrecorded", 0),
    }
    return counts, not_sent


def _written_again(con: duckdb.DuckDBPyConnection, sync: SyncSpec, table: str, run_prefix: str) -> int:
    """Removals and retirements of the plan written ahead under runs `<run_prefix><run>`."""
    entries = (
        f"select row_key from {S}.pending_members where sync_name = {literal(sync.name)} "
        f"and starts_with(run_id, {literal(run_prefix)})"
    )
    if not con.execute(f"{entries} limit 1").fetchall():  # the usual case
        return 0
    return con.execute(
        f"select count(*) from {table} where action in ('remove', 'retire') and row_key in ({entries})"
    ).fetchone()[0]


def _mirror_members(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> int:
    return con.execute(f"select count(*) from {S}.sync_state where sync_name = {literal(sync.name)}").fetchone()[0]


def _preview(con: duckdb.DuckDBPyConnection, plan: Plan) -> list[dict[str, Any]]:
    """A masked sample of the rows the run would send, removals included, with their values as the runner hands
    them to connectors (read through Arrow, like the run: an infinite date shows as `infinity`)."""
    actions = SENT_ACTIONS[plan.mode]
    if plan.mode is not Mode.EXPORT:
        actions = tuple(a for a in actions if a != "unchanged")
    reader = con.cursor()
    try:
        sample = reader.sql(f"{stream_sql(plan, actions)} limit {PREVIEW_ROWS}").to_arrow_table()
    finally:
        reader.close()
    declared = plan.declared_fields
    names = [name for name, _ in declared]
    columns = [python_values(sample.column(column)) for _, column in declared]
    entries = zip(sample.column("action").to_pylist(), sample.column("row_key").to_pylist(), strict=True)
    values = zip(*columns, strict=True) if columns else itertools.repeat((), sample.num_rows)
    row_fields = sample.column("row_fields").to_pylist()
    preview = []
    for (action, row_key), sent, row in zip(entries, row_fields, values, strict=True):
        fields = json.loads(sent) if action in REMOVAL_ACTIONS else dict(zip(names, row, strict=True))
        preview.append({"action": action, "key": row_key, "fields": mask_row(fields)})
    return preview
