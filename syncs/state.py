"""Sync state in the warehouse (schema `tidings`): row state, run history, row errors, the message ledger
and per-sync locks. Every write is one short transaction, so state only moves forward by acknowledged batches
(one, or a group the committer settles together) and a crash at any point leaves it consistent.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from syncs.config import ConfigError, ConfigProblem
from syncs.logs import get_logger, log_event
from syncs.settings import STATE_SCHEMA, duckdb_memory_limit
from syncs.sql_text import literal

S = STATE_SCHEMA
# `pending_members.run_id` of removals written ahead again because the destination failed the work that made them
# (`syncs.later_checks.redo`): `redo:<the run that made them>`. The removal guard does not count them again.
REDO_RUN_PREFIX = "redo:"
# `pending_members.run_id` of a retirement a renamed sync's carry-over wrote for an identity its earlier name's run
# `<run>` added (`syncs.sync_names`): held while that run's work is in flight, as the run's own entries are.
CARRIED_RUN_PREFIX = "carried:"
log = get_logger("state")

# One row per occurrence a send_once sync ever handed over, so it grows with every message sent: no key,
# because DuckDB holds a table's key index whole in memory once a statement touches it (a 20M-row ledger ran
# a send_once run out of its 512MB limit). Runs find occurrences with joins; `mark_pending` keeps one row each.
MESSAGE_LEDGER_DDL = f"""create table if not exists {S}.message_ledger (
    sync_name varchar not null,
    occurrence_key varchar not null,
    idempotency_key varchar not null,
    status varchar not null,  -- pending | sent
    destination_ref varchar,
    cost double,
    sent_at timestamp,
    run_id varchar not null)"""

DDL = [
    f"create schema if not exists {S}",
    f"""create table if not exists {S}.sync_state (
        sync_name varchar not null,
        row_key varchar not null,
        row_hash varchar not null,
        row_fields varchar,  -- JSON of the fields last sent (mirror only: a removal needs the identifiers)
        destination_ref varchar,
        synced_at timestamp not null,
        primary key (sync_name, row_key))""",
    f"""create table if not exists {S}.sync_runs (
        run_id varchar primary key,
        sync_name varchar not null,
        mode varchar not null,
        dry_run boolean not null,
        status varchar not null,
        started_at timestamp not null,
        finished_at timestamp,
        planned_add bigint,
        planned_change bigint,
        planned_remove bigint,
        planned_unchanged bigint,
        sent bigint,
        failed bigint,
        removed bigint,
        skipped bigint,
        duration_seconds double,
        guard_decisions varchar,  -- JSON list of strings
        error_summary varchar,  -- JSON object: error code -> row count
        message varchar)""",
    f"""create table if not exists {S}.row_errors (
        sync_name varchar not null,
        row_key varchar not null,
        row_hash varchar,
        run_id varchar not null,
        code varchar not null,
        message varchar,
        permanent boolean not null,
        attempts integer not null,
        first_seen_at timestamp not null,
        last_seen_at timestamp not null,
        primary key (sync_name, row_key))""",
    MESSAGE_LEDGER_DDL,
    # Acknowledgements of a run's sends, appended as its batches settle (an update of the unkeyed ledger would
    # scan it per commit) and folded into the ledger when the run has delivered (`fold_acknowledged_sends`). An
    # occurrence acknowledged here is sent, whether or not it was folded yet.
    f"""create table if not exists {S}.message_acks (
        sync_name varchar not null,
        occurrence_key varchar not null,
        destination_ref varchar,
        cost double,
        sent_at timestamp not null,
        run_id varchar not null)""",
    # Append-only write-ahead log of the mirror rows a run is about to send (no key: appends stay cheap). An entry
    # older than its member's sync_state row is void; a run clears its own entries and void ones when it ends.
    f"""create table if not exists {S}.pending_members (
        sync_name varchar not null,
        row_key varchar not null,
        row_fields varchar,  -- JSON of the fields being sent: a removal needs the identifiers
        run_id varchar not null,
        marked_at timestamp not null)""",
    # Work a destination that `confirms_later` took from a run and may still fail (a Google job it processes
    # hours later): one row per run, checked before later runs plan (`syncs.later_checks`) and dropped once done.
    f"""create table if not exists {S}.unconfirmed_deliveries (
        sync_name varchar not null,
        destination_ref varchar not null,
        run_id varchar not null,
        recorded_at timestamp not null)""",
    # The members such work removed (or retired), with the fields sent: gone from sync_state, they are what a
    # failed removal has to send again.
    f"""create table if not exists {S}.unconfirmed_removals (
        sync_name varchar not null,
        destination_ref varchar not null,
        row_key varchar not null,
        row_fields varchar)""",
    # The members such work adds or changes, with the fields sent (recorded when the work is handed over): while it
    # runs, a removal or retirement of the member waits for it (`later_checks.in_flight`), whatever the member's
    # state says since (removed, changed again).
    f"""create table if not exists {S}.unconfirmed_adds (
        sync_name varchar not null,
        destination_ref varchar not null,
        row_key varchar not null,
        row_fields varchar)""",
    # Where a mirror or upsert sync's members were sent: its destination and target (`syncs.sync_places`).
    f"""create table if not exists {S}.sync_places (
        sync_name varchar primary key,
        place varchar not null,
        recorded_at timestamp not null)""",
    f"""create table if not exists {S}.sync_locks (
        sync_name varchar primary key,
        run_id varchar not null,
        pid integer not null,
        host varchar not null,
        acquired_at timestamp not null)""",
]

# Arrow schema of one settled batch, as the runner hands it to `commit_batch`.
OUTCOME_SCHEMA = pa.schema(
    [
        ("row_key", pa.string()),
        ("ok", pa.bool_()),
        ("code", pa.string()),
        ("message", pa.string()),
        ("permanent", pa.bool_()),
        ("destination_ref", pa.string()),
        ("cost", pa.float64()),
    ]
)
# The same with each row's plan entry, for rows the runner still holds: committing them then never touches the
# plan table, so a batch's commit costs the same at 1M rows as at 1k.
PLANNED_OUTCOME_SCHEMA = (
    OUTCOME_SCHEMA.append(pa.field("action", pa.string()))
    .append(pa.field("row_hash", pa.string()))
    .append(pa.field("row_fields", pa.string()))
)


class WarehouseBusy(Exception):
    """Another process has the warehouse open: DuckDB lets a process write a file only while no other has it open."""


@contextmanager
def busy_as_error(warehouse: Path) -> Iterator[None]:
    """Opening the warehouse while another process holds it raises `WarehouseBusy`, naming the holder's PID."""
    try:
        yield
    except duckdb.IOException as error:
        if "Could not set lock" not in str(error):
            raise
        holder = re.search(r"\(PID (\d+)\)", str(error))
        raise WarehouseBusy(
            f"the warehouse {warehouse} is open in another process{f' (PID {holder[1]})' if holder else ''}: DuckDB "
            "lets one process at a time write it (a dbt build, a Dagster run, another `tidings` command); run this "
            "again once that one ends"
        ) from error


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """Open the warehouse with DuckDB's external access disabled, because user SQL runs on it.

    DuckDB shares one database instance per file within a process and its configuration must match. When
    this process already holds the file open with external access enabled, the connection uses that
    instance and user SQL relies on syncs.user_sql's validation alone; a warning says so.
    """
    if not warehouse.exists():
        raise FileNotFoundError(f"warehouse {warehouse} does not exist; run `tidings generate` and `dbt build`")
    if warehouse.stem.lower() == S:
        # DuckDB names the catalog after the file, and `tidings.sync_state` would then be ambiguous.
        problem = f"a warehouse file named {warehouse.name} makes DuckDB's catalog '{S}', the name of the state schema"
        fix = "rename the file (e.g. warehouse.duckdb) and point TIDINGS_WAREHOUSE at it"
        raise ConfigError([ConfigProblem(warehouse, "warehouse", "TIDINGS_WAREHOUSE", problem, fix)])
    try:
        with busy_as_error(warehouse):
            con = duckdb.connect(str(warehouse), config={"enable_external_access": False, **_memory_config()})
    except duckdb.ConnectionException as error:
        if "different configuration" not in str(error):
            raise
        log_event(log, "warehouse.external_access_enabled", level=30, warehouse=warehouse.name)
        con = duckdb.connect(str(warehouse))
    con.execute(f"set checkpoint_threshold = '{checkpoint_threshold_mib(con)}MiB'")
    # DuckDB draws a progress bar on stdout for statements over 2 s (the one-time copy of a keyed ledger, a large
    # plan), which would interleave with the CLI's output and the structured logs.
    con.execute("set enable_progress_bar = false")
    return con


# DuckDB checkpoints when its write-ahead log passes 16 MB, which a sync's plan table alone does from ~100k rows:
# the checkpoint then writes the plan to the file although the run drops it minutes later, and does so in the
# middle of the run's commits. Sync connections defer checkpoints to `checkpoint`, once the plan is gone, but
# only up to a quarter of the memory limit: what was written since the last checkpoint stays in memory, and a
# send_once run of 3M occurrences (plan, ledger marks and their key index) ran out of the default 512MB limit
# when checkpoints waited for 1 GB of log.
CHECKPOINT_THRESHOLD_MIB = (16, 1024)  # DuckDB's default, and the most a sync defers
_SIZE = re.compile(r"^\s*([0-9.]+)\s*(bytes|KiB|MiB|GiB|TiB)\s*$")
_SIZE_MIB = {"bytes": 1 / 2**20, "KiB": 1 / 2**10, "MiB": 1, "GiB": 2**10, "TiB": 2**20}


def checkpoint_threshold_mib(con: duckdb.DuckDBPyConnection) -> int:
    """A quarter of the connection's memory limit, between DuckDB's default and 1 GiB."""
    lowest, highest = CHECKPOINT_THRESHOLD_MIB
    (limit,) = con.execute("select current_setting('memory_limit')").fetchone()
    match = _SIZE.match(str(limit))
    if match is None:
        return lowest
    return int(min(highest, max(lowest, float(match[1]) * _SIZE_MIB[match[2]] / 4)))


def checkpoint(con: duckdb.DuckDBPyConnection) -> None:
    """Write what the run committed into the database file now that its plan table is dropped."""
    try:
        con.execute("checkpoint")
    except duckdb.Error as error:  # another connection of this process is mid-transaction: DuckDB checkpoints later
        log_event(log, "warehouse.checkpoint_deferred", level=20, reason=type(error).__name__)


def _memory_config() -> dict[str, str]:
    """DuckDB's buffer pool defaults to 80% of RAM and keeps what a large plan touched; a sync needs far less.
    Work beyond the limit spills to DuckDB's temporary directory instead of growing the process."""
    limit = duckdb_memory_limit()
    return {"memory_limit": limit} if limit else {}


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    with transaction(con):
        for statement in DDL:
            con.execute(statement)
        _drop_ledger_key(con)


def _drop_ledger_key(con: duckdb.DuckDBPyConnection) -> None:
    """Warehouses created before the ledger lost its primary key get the unkeyed table, rows unchanged (DuckDB
    cannot drop a key in place). Runs once: later calls find no key."""
    keyed = con.execute(
        "select 1 from duckdb_constraints() where schema_name = ? and table_name = 'message_ledger' "
        "and constraint_type = 'PRIMARY KEY'",
        [S],
    ).fetchall()
    if not keyed:
        return
    log_event(log, "state.ledger_key_dropped")
    con.execute(f"alter table {S}.message_ledger rename to message_ledger_keyed")
    con.execute(MESSAGE_LEDGER_DDL)
    con.execute(f"insert into {S}.message_ledger select * from {S}.message_ledger_keyed")
    con.execute(f"drop table {S}.message_ledger_keyed")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """`table` is queryable as `name` on `con` for the span of the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# Locks ---------------------------------------------------------------------------------------------------

LOCK_STALE_AFTER_SECONDS = 6 * 3600


def acquire_lock(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str) -> bool:
    """Take the sync's lock; a lock left by a dead process (or older than the stale age) is taken over."""
    host = socket.gethostname()
    try:
        with transaction(con):
            held = con.execute(
                f"select run_id, pid, host, acquired_at from {S}.sync_locks where sync_name = ?", [sync_name]
            ).fetchone()
            if held is not None and not _is_stale(held[1], held[2], held[3], host):
                return False
            if held is not None:
                log_event(log, "lock.stale_recovered", sync=sync_name, stale_run_id=held[0], pid=held[1])
                _close_dead_run(con, sync_name, held[0])
            con.execute(f"delete from {S}.sync_locks where sync_name = ?", [sync_name])
            con.execute(
                f"insert into {S}.sync_locks values (?, ?, ?, ?, ?)", [sync_name, run_id, os.getpid(), host, utcnow()]
            )
    except (duckdb.TransactionException, duckdb.ConstraintException):
        return False  # another thread took it between our read and write
    return True


DEAD_RUN_MESSAGE = (
    "the process running this run died; the batches the destination acknowledged are in state and the rest "
    "are sent by later runs"
)


def _close_dead_run(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str) -> None:
    """A run whose process died never wrote its end: record it as failed, with the sends the ledger credits to
    it (send_once) and the row errors it recorded, so run history tells the truth."""
    con.execute(
        f"""update {S}.sync_runs set status = 'failed', finished_at = ?, message = ?,
            sent = (select count(*) from {S}.message_ledger l
                    where l.sync_name = ? and l.run_id = ? and l.status = 'sent')
                 + (select count(*) from {S}.message_acks a where a.sync_name = ? and a.run_id = ?),
            failed = (select count(*) from {S}.row_errors e where e.sync_name = ? and e.run_id = ?)
        where run_id = ? and status = 'running'""",
        [utcnow(), DEAD_RUN_MESSAGE, sync_name, run_id, sync_name, run_id, sync_name, run_id, run_id],
    )


FORGOTTEN = "forgotten"  # `sync_runs.status` of the row `tidings forget` records: the name's message history is known

# The guards whose passing decision, stored with a run, says it emptied a mirror (`--remove-all`) or sent members
# back after that (`--add-back`): `emptied_by` finds the latest of the two.
REMOVE_ALL_GUARD = "remove_all"
ADD_BACK_GUARD = "add_back"


def emptied_syncs_sql() -> str:
    """(sync_name, run_id, started_at) of the syncs emptied with `--remove-all` and not filled again since
    (`--add-back`) nor forgotten (`tidings forget`: a sync declared under the name again is new). Runs that were
    blocked, locked out or dry leave the mark standing."""
    emptied = literal(f'"passed: {REMOVE_ALL_GUARD}:')
    added_back = literal(f'"passed: {ADD_BACK_GUARD}:')
    marks = f"""
        select sync_name, run_id, started_at, coalesce(contains(guard_decisions, {emptied}), false) as emptied,
               row_number() over (partition by sync_name order by started_at desc) as latest
        from {S}.sync_runs
        where not dry_run and status not in ('blocked', 'locked')
          and (contains(guard_decisions, {emptied}) or contains(guard_decisions, {added_back})
               or status = {literal(FORGOTTEN)})"""
    return f"select sync_name, run_id, started_at from ({marks}) where latest = 1 and emptied"


def emptied_by(con: duckdb.DuckDBPyConnection, sync_name: str) -> str | None:
    """The run that emptied the sync (`emptied_syncs_sql`), as `run <id> of <time>`; None when it is not emptied."""
    row = con.execute(
        f"select run_id, started_at from ({emptied_syncs_sql()}) where sync_name = ?", [sync_name]
    ).fetchone()
    return None if row is None else f"run {row[0]} of {row[1]:%Y-%m-%d %H:%M} UTC"


def release_lock(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str) -> None:
    with transaction(con):
        con.execute(f"delete from {S}.sync_locks where sync_name = ? and run_id = ?", [sync_name, run_id])


def _is_stale(pid: int, host: str, acquired_at: datetime, this_host: str) -> bool:
    age = (utcnow() - acquired_at).total_seconds()
    stale_after = float(os.environ.get("TIDINGS_LOCK_STALE_SECONDS", LOCK_STALE_AFTER_SECONDS))
    return age > stale_after or (host == this_host and not _pid_alive(pid))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Run history ---------------------------------------------------------------------------------------------


def record_run_start(con: duckdb.DuckDBPyConnection, run_id: str, sync_name: str, mode: str, dry_run: bool) -> None:
    with transaction(con):
        con.execute(
            f"insert into {S}.sync_runs (run_id, sync_name, mode, dry_run, status, started_at) "
            "values (?, ?, ?, ?, 'running', ?)",
            [run_id, sync_name, mode, dry_run, utcnow()],
        )


def record_run_end(con: duckdb.DuckDBPyConnection, run_id: str, summary: dict[str, Any]) -> None:
    """`summary` holds the sync_runs columns; lists and dicts are stored as JSON."""
    values = {k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in summary.items()}
    assignments = ", ".join(f"{column} = ?" for column in values)
    with transaction(con):
        con.execute(
            f"update {S}.sync_runs set finished_at = ?, {assignments} where run_id = ?",
            [utcnow(), *values.values(), run_id],
        )


def record_guard_decisions(con: duckdb.DuckDBPyConnection, run_id: str, decisions: list[str]) -> None:
    """Before anything is sent: a run that dies keeps its guards' verdict on record (one that emptied a mirror with
    `--remove-all` must mark it emptied, `emptied_syncs_sql`, even if it died halfway)."""
    with transaction(con):
        con.execute(f"update {S}.sync_runs set guard_decisions = ? where run_id = ?", [json.dumps(decisions), run_id])


def list_runs(con: duckdb.DuckDBPyConnection, sync_name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    where, params = ("where sync_name = ?", [sync_name]) if sync_name else ("", [])
    return _dicts(con, f"select * from {S}.sync_runs {where} order by started_at desc limit {int(limit)}", params)


def list_row_errors(con: duckdb.DuckDBPyConnection, sync_name: str, limit: int = 100) -> list[dict[str, Any]]:
    return _dicts(
        con,
        f"select row_key, code, message, permanent, attempts, first_seen_at, last_seen_at, run_id "
        f"from {S}.row_errors where sync_name = ? order by last_seen_at desc, row_key limit {int(limit)}",
        [sync_name],
    )


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# Per-batch state -----------------------------------------------------------------------------------------


def mark_pending(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, plan_table: str) -> None:
    """Write-ahead for send_once, once per run and before the first send: every occurrence the plan sends is
    recorded `pending` with its idempotency key, so one acknowledged by the destination but not yet committed
    when the process dies is sent again under the same key. Occurrences already in the ledger keep their row:
    the key never changes. (The ledger's rows of this plan are found first, so the join never hashes the whole
    ledger.)"""
    adds = f"select row_key from {plan_table} where action = 'add'"
    with transaction(con):
        con.execute(
            f"insert into {S}.message_ledger (sync_name, occurrence_key, idempotency_key, status, run_id) "
            f"select ?, row_key, idempotency_key, 'pending', ? from {plan_table} where action = 'add' "
            f"and row_key not in (select occurrence_key from {S}.message_ledger "
            f"where sync_name = ? and occurrence_key in ({adds}))",
            [sync_name, run_id, sync_name],
        )


def sent_occurrences_sql(sync_name_literal: str) -> str:
    """The occurrences of a send_once sync its destination acknowledged: in the ledger, or acknowledged by a run
    whose acknowledgements are not folded into it yet (it is delivering, or it died)."""
    return (
        f"select occurrence_key from {S}.message_ledger where sync_name = {sync_name_literal} and status = 'sent' "
        f"union all select occurrence_key from {S}.message_acks where sync_name = {sync_name_literal}"
    )


def fold_acknowledged_sends(con: duckdb.DuckDBPyConnection, sync_name: str) -> None:
    """Move the sync's acknowledgements into its ledger, once a run has delivered: one join of the ledger per run
    instead of a keyed update per commit. Also folds those a dead run left behind. Each pending row is replaced
    by its sent row (an append and a delete): DuckDB updated the rows the run had just written ahead at 25 µs a
    row, 2.5 s for a 100k-occurrence run, against 0.1 s this way."""
    if not con.execute(f"select 1 from {S}.message_acks where sync_name = ? limit 1", [sync_name]).fetchall():
        return
    acknowledged = (
        f"select occurrence_key, arg_min(destination_ref, sent_at) as destination_ref, arg_min(cost, sent_at) as cost, "
        f"min(sent_at) as sent_at, arg_min(run_id, sent_at) as run_id from {S}.message_acks where sync_name = ? "
        "group by occurrence_key"
    )
    with transaction(con):
        con.execute(
            f"insert into {S}.message_ledger select l.sync_name, l.occurrence_key, l.idempotency_key, 'sent', "
            f"a.destination_ref, a.cost, a.sent_at, a.run_id from {S}.message_ledger l join ({acknowledged}) a "
            "on l.occurrence_key = a.occurrence_key where l.sync_name = ? and l.status = 'pending'",
            [sync_name, sync_name],
        )
        con.execute(
            f"delete from {S}.message_ledger where sync_name = ? and status = 'pending' and occurrence_key in "
            f"(select occurrence_key from {S}.message_acks where sync_name = ?)",
            [sync_name, sync_name],
        )
        con.execute(f"delete from {S}.message_acks where sync_name = ?", [sync_name])


def unsettled_runs(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, plan_table: str) -> tuple[str, ...]:
    """send_once: earlier runs that may have delivered, without recording it, an occurrence this plan sends again.
    A `pending` occurrence was written ahead by the run in its ledger row; that run or any later one that died,
    failed or ended `partial` may have delivered it before its acknowledgement was committed, or without ever
    hearing back (a row that failed because its answer was lost). Runs that ended `success` failed no row."""
    rows = con.execute(
        f"""select r.run_id from {S}.sync_runs r
        where r.sync_name = ? and r.run_id <> ? and not r.dry_run and r.status in ('failed', 'partial', 'running')
          and r.started_at >= (
              select min(first_run.started_at) from {plan_table} p
              join {S}.message_ledger l on l.occurrence_key = p.row_key and l.sync_name = ? and l.status = 'pending'
              join {S}.sync_runs first_run on first_run.run_id = l.run_id
              where p.action = 'add')
        order by r.started_at, r.run_id""",
        [sync_name, run_id, sync_name],
    ).fetchall()
    return tuple(run for (run,) in rows)


def mark_members_pending(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, plan_table: str) -> datetime:
    """Write-ahead for mirror upserts, once per run and before the first send: every member the plan adds or
    changes, with the fields about to be sent. If the process dies after the destination applied a batch but
    before its state commit, the planner still knows these members may exist and can remove them later. An
    entry is void once a state commit newer than it holds the member (`clear_pending_members`). A previous
    identity to retire is written ahead too, and stays until the destination acknowledged its removal.

    The entries are stamped after every earlier state commit and write-ahead of the sync, even if the clock went
    back since: an entry that looked older than the settled state would be taken as void (or than an earlier
    entry, superseded), and a member this run may deliver would be removed later by its previous identity,
    leaving the new one in the destination.

    A member the plan removes is written ahead too, as an empty row hash in its state: if the destination applied
    the removal but the process died before its commit, and the member is back in the model by the next run, it
    is sent again (a change) instead of counting as unchanged while the destination no longer holds it."""
    with transaction(con):
        marked_at = write_ahead_stamp(con, sync_name)
        con.execute(
            f"insert into {S}.pending_members select ?, row_key, row_fields, ?, ? from {plan_table} "
            "where action in ('add', 'change', 'retire')",
            [sync_name, run_id, marked_at],
        )
        con.execute(
            f"update {S}.sync_state set row_hash = '' where sync_name = ? "
            f"and row_key in (select row_key from {plan_table} where action = 'remove')",
            [sync_name],
        )
    return marked_at


def write_ahead_stamp(con: duckdb.DuckDBPyConnection, sync_name: str) -> datetime:
    """A stamp for new write-ahead entries: now, or just after every state commit and entry of the sync if the clock
    went back (an entry that looked older than the settled state would be taken as void)."""
    (latest,) = con.execute(
        f"select max(stamp) from (select max(synced_at) as stamp from {S}.sync_state where sync_name = ? "
        f"union all select max(marked_at) from {S}.pending_members where sync_name = ?)",
        [sync_name, sync_name],
    ).fetchone()
    return utcnow() if latest is None else max(utcnow(), latest + timedelta(microseconds=1))


def release_members(con: duckdb.DuckDBPyConnection, sync_name: str, plan_table: str) -> None:
    """Settle the plan's removals that are not sent: `release` rows, removals and retirements of an identity another
    member keeps in the destination (`identity_release.release_shared_identities`), and `unrecorded` rows, members
    whose identifiers were never recorded (`planner.unrecorded_warning`). The member leaves the sync's state, its
    write-ahead entries and its row errors; the destination keeps what it holds."""
    released = f"select row_key from {plan_table} where action in ('release', 'unrecorded')"
    with transaction(con):
        for table in ("sync_state", "pending_members", "row_errors"):
            con.execute(f"delete from {S}.{table} where sync_name = ? and row_key in ({released})", [sync_name])


def record_member_fields(con: duckdb.DuckDBPyConnection, sync_name: str, plan_table: str) -> None:
    """Settle the plan's `record` rows without a send: members a mirror holds with no fields on record (sent in
    upsert mode) whose hash shows the destination has exactly the model's fields, which a later removal needs."""
    recorded = f"select row_key, row_fields from {plan_table} where action = 'record'"
    if not con.execute(f"{recorded} limit 1").fetchall():
        return
    with transaction(con):
        con.execute(
            f"update {S}.sync_state s set row_fields = r.row_fields from ({recorded}) r "
            "where s.sync_name = ? and s.row_key = r.row_key and s.row_fields is null",
            [sync_name],
        )


def clear_pending_members(con: duckdb.DuckDBPyConnection, sync_name: str) -> None:
    """After a mirror run delivered its plan: drop the write-ahead entries a later state commit superseded (the
    member is in state). Entries of rows that failed stay: the destination may hold those members, so the next
    plan sends them again or, once gone from the model, removes them. Commits leave the entries to this one
    statement, so a batch's commit never scans the write-ahead log."""
    with transaction(con):
        con.execute(
            f"delete from {S}.pending_members p where p.sync_name = ? and exists ("
            f"select 1 from {S}.sync_state s where s.sync_name = p.sync_name and s.row_key = p.row_key "
            "and s.synced_at >= p.marked_at)",
            [sync_name],
        )


def record_unconfirmed_delivery(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, ref: str) -> None:
    """Before its rows are settled: the run's work (`ref`) the destination may still fail."""
    con.execute(f"insert into {S}.unconfirmed_deliveries values (?, ?, ?, ?)", [sync_name, ref, run_id, utcnow()])


HANDED_OVER = {"unconfirmed_removals": "('remove', 'retire')", "unconfirmed_adds": "('add', 'change')"}


def record_handover(
    con: duckdb.DuckDBPyConnection,
    sync_name: str,
    run_id: str,
    ref: str,
    *,
    plan_table: str | None = None,
    answered: Sequence[str] = (),
) -> None:
    """Before a destination hands over work it confirms later (`Destination.handover_ref`): the work, and the rows of
    a mirror's `plan_table` it carries (those its batches did not answer): removals and retirements, adds and
    changes, with their fields. A process that dies while handing it over, or before settling, leaves on record
    what may reach the destination. `settle_handover` puts the outcome in its place."""
    with transaction(con):
        record_unconfirmed_delivery(con, sync_name, run_id, ref)
        if plan_table is None:
            return
        with registered(con, "answered_rows", pa.table({"row_key": pa.array(list(answered), pa.string())})):
            for table, actions in HANDED_OVER.items():
                con.execute(
                    f"insert into {S}.{table} select ?, ?, row_key, row_fields from {plan_table} "
                    f"where action in {actions} and row_key not in (select row_key from answered_rows)",
                    [sync_name, ref],
                )


def settle_handover(
    con: duckdb.DuckDBPyConnection,
    sync_name: str,
    run_id: str,
    recorded: str | None,
    acknowledged: Sequence[str],
    refs_by_table: dict[str, str | None],
) -> None:
    """After `close`: the refs it acknowledged replace the one recorded before (the same, unless a job could not
    run), in one transaction. The rows recorded with it move, per `HANDED_OVER` table, to the ref their rows were
    acknowledged under (`refs_by_table`), or go when none was."""
    if recorded is not None and list(acknowledged) == [recorded]:
        return
    with transaction(con):
        if recorded is not None:
            con.execute(
                f"delete from {S}.unconfirmed_deliveries where sync_name = ? and destination_ref = ?",
                [sync_name, recorded],
            )
            for table in HANDED_OVER:
                if (ref := refs_by_table.get(table)) is None:
                    con.execute(
                        f"delete from {S}.{table} where sync_name = ? and destination_ref = ?", [sync_name, recorded]
                    )
                else:
                    con.execute(
                        f"update {S}.{table} set destination_ref = ? where sync_name = ? and destination_ref = ?",
                        [ref, sync_name, recorded],
                    )
        for ref in acknowledged:
            record_unconfirmed_delivery(con, sync_name, run_id, ref)


def unconfirmed_deliveries(con: duckdb.DuckDBPyConnection, sync_name: str) -> list[tuple[str, str, datetime]]:
    """(ref, run id, recorded at) of the sync's work not confirmed yet, oldest first."""
    return con.execute(
        f"select destination_ref, run_id, recorded_at from {S}.unconfirmed_deliveries where sync_name = ? "
        "order by recorded_at, run_id",
        [sync_name],
    ).fetchall()


def forget_delivery(con: duckdb.DuckDBPyConnection, sync_name: str, ref: str) -> None:
    """The work is done or no longer checked: its record and the removals kept for it go, in one transaction."""
    with transaction(con):
        delete_delivery_records(con, sync_name, ref)


def delete_delivery_records(con: duckdb.DuckDBPyConnection, sync_name: str, ref: str) -> None:
    """The statements of `forget_delivery`, inside the caller's transaction (a redo)."""
    for table in ("unconfirmed_deliveries", *HANDED_OVER):
        con.execute(f"delete from {S}.{table} where sync_name = ? and destination_ref = ?", [sync_name, ref])


def record_duplicate_keys(
    con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, plan_table: str, *, found: bool = True
) -> None:
    """Bring the sync's duplicate-key errors in line with the plan, in one transaction: every key the planner found
    in several model rows with different values becomes a permanent row error (none of its versions is sent), and
    errors of keys no longer duplicated (sent again, unchanged or gone) are cleared. `found` False (the plan has
    no duplicate keys) only clears, without reading the plan."""
    now = utcnow()
    with transaction(con):
        if not found:
            con.execute(f"delete from {S}.row_errors where sync_name = ? and code = 'duplicate_key'", [sync_name])
            return
        con.execute(
            f"delete from {S}.row_errors where sync_name = ? and code = 'duplicate_key' and row_key not in "
            f"(select row_key from {plan_table} where action = 'duplicate_key')",
            [sync_name],
        )
        con.execute(
            f"insert into {S}.row_errors select ?, row_key, null, ?, 'duplicate_key', "
            "'several model rows share this key with different values, so none was sent; make the key unique', "
            f"true, 1, ?, ? from {plan_table} where action = 'duplicate_key' "
            "on conflict (sync_name, row_key) do update set row_hash = null, run_id = excluded.run_id, "
            "code = excluded.code, message = excluded.message, permanent = true, "
            "attempts = row_errors.attempts + 1, last_seen_at = excluded.last_seen_at",
            [sync_name, run_id, now, now],
        )


def commit_batch(
    con: duckdb.DuckDBPyConnection,
    sync_name: str,
    run_id: str,
    *,
    send_once: bool,
    keep_fields: bool,
    plan_table: str,
    outcomes: pa.Table,
    clear_errors: bool = True,
    not_before: datetime | None = None,
    keep_removals: bool = False,
) -> None:
    """Apply settled rows (one batch, or a group the committer gathered) in one transaction: acknowledged rows
    move into state (or the ledger), failed rows into row_errors. `keep_fields` stores the sent fields (mirror
    removals need them). `outcomes` follows PLANNED_OUTCOME_SCHEMA, or OUTCOME_SCHEMA when the rows' plan entries
    must be looked up in `plan_table`.

    Each statement runs only when the rows need it: added rows are plain inserts (the plan found their keys
    absent and the sync's lock keeps it so), only changed rows pay for an upsert, and unchanged rows (re-sent by
    exports) leave state as it is. `clear_errors` False skips clearing row errors of
    acknowledged rows when the caller knows the sync has none on record. `not_before` is the run's write-ahead
    stamp (`mark_members_pending`): the commit's stamp is never earlier. `keep_removals` keeps what acknowledged
    removals sent, by their `destination_ref`, for a destination that `confirms_later` (`syncs.later_checks.redo`)."""
    if "action" not in outcomes.column_names:
        outcomes = _with_plan_entries(con, outcomes, plan_table)
    now = utcnow() if not_before is None else max(utcnow(), not_before)
    ok = outcomes["ok"]
    any_ok, any_failed = pc.any(ok).as_py(), not pc.all(ok).as_py()
    acknowledged = set(pc.unique(pc.filter(outcomes["action"], ok)).to_pylist()) if any_ok else set()
    fields = "row_fields" if keep_fields else "null"
    with registered(con, "settled_batch", outcomes), transaction(con):
        if any_ok and send_once:
            con.execute(
                f"insert into {S}.message_acks select ?, row_key, destination_ref, cost, ?, ? "
                "from settled_batch where ok",
                [sync_name, now, run_id],
            )
        elif any_ok:
            for action, verb in (("add", "insert"), ("change", "insert or replace")):
                if action in acknowledged:
                    con.execute(
                        f"{verb} into {S}.sync_state select ?, row_key, row_hash, {fields}, destination_ref, ? "
                        "from settled_batch where ok and action = ?",
                        [sync_name, now, action],
                    )
            if "remove" in acknowledged:
                con.execute(
                    f"delete from {S}.sync_state where sync_name = ? and row_key in "
                    "(select row_key from settled_batch where ok and action = 'remove')",
                    [sync_name],
                )
        if keep_removals and acknowledged & {"remove", "retire"}:
            con.execute(
                f"insert into {S}.unconfirmed_removals select ?, destination_ref, row_key, row_fields "
                "from settled_batch where ok and action in ('remove', 'retire') and destination_ref is not null",
                [sync_name],
            )
        if keep_fields and acknowledged & {"remove", "retire"}:  # a removed member's write-ahead entry is void
            con.execute(
                f"delete from {S}.pending_members where sync_name = ? and row_key in "
                "(select row_key from settled_batch where ok and action in ('remove', 'retire'))",
                [sync_name],
            )
        if any_ok and clear_errors:
            con.execute(
                f"delete from {S}.row_errors where sync_name = ? and row_key in "
                "(select row_key from settled_batch where ok)",
                [sync_name],
            )
        if any_failed:
            con.execute(
                f"insert into {S}.row_errors select ?, row_key, row_hash, ?, code, message, permanent, 1, ?, ? "
                "from settled_batch where not ok "
                "on conflict (sync_name, row_key) do update set row_hash = excluded.row_hash, "
                "run_id = excluded.run_id, code = excluded.code, message = excluded.message, "
                "permanent = excluded.permanent, attempts = row_errors.attempts + 1, "
                "last_seen_at = excluded.last_seen_at",
                [sync_name, run_id, now, now],
            )


def _with_plan_entries(con: duckdb.DuckDBPyConnection, outcomes: pa.Table, plan_table: str) -> pa.Table:
    """Outcomes of rows the runner no longer holds, joined with their plan entries (PLANNED_OUTCOME_SCHEMA)."""
    with registered(con, "bare_outcomes", outcomes):
        joined = con.sql(
            f"select b.*, p.action, p.row_hash, p.row_fields from bare_outcomes b "
            f"join {plan_table} p on p.row_key = b.row_key"
        ).to_arrow_table()
    return joined.cast(PLANNED_OUTCOME_SCHEMA)


def row_error_counts(con: duckdb.DuckDBPyConnection, sync_name: str) -> tuple[int, int]:
    """(rows in error, of which permanent) of the sync."""
    total, permanent = con.execute(
        f"select count(*), count(*) filter (where permanent) from {S}.row_errors where sync_name = ?", [sync_name]
    ).fetchone()
    return int(total), int(permanent)


def has_row_errors(con: duckdb.DuckDBPyConnection, sync_name: str) -> bool:
    return bool(con.execute(f"select 1 from {S}.row_errors where sync_name = ? limit 1", [sync_name]).fetchall())
