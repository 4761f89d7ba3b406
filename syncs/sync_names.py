"""State kept under a sync's name when the name goes away: carried over to the sync's new name (`renamed_from` in
its declaration), or found and forgotten once the sync is removed (`tidings forget`).

A sync's state is keyed by its name, so without this a renamed mirror would start empty: it adds every current
member again (harmless) but never removes the members who left between the old name's last run and the new
name's first, opt-outs included, and a renamed send_once sync would send every message of its model again.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from syncs import state
from syncs.config import SyncSpec
from syncs.logs import get_logger, log_event
from syncs.planner import drop_orphan_plans

S = state.S
log = get_logger("sync_names")

# Tables whose rows say what the destination holds or what a run still owes it; one row per key, the name's own
# row kept when both names have one (it is the newer).
KEYED_TABLES = ("sync_state", "row_errors")
# Logs and per-run records, moved whole.
LOGGED_TABLES = ("pending_members", "message_ledger", "message_acks", "unconfirmed_deliveries", "unconfirmed_removals")
# Run history is carried over with the rest, and kept when a sync is forgotten: it holds no row data.
HISTORY_TABLE = "sync_runs"
STATE_TABLES = (*KEYED_TABLES, *LOGGED_TABLES, HISTORY_TABLE)


class NameInUse(Exception):
    """A run of the sync under that name holds its lock: its state cannot move or go now."""


@dataclass(frozen=True)
class LeftoverState:
    """What a name no declared sync has holds (counts only: the rows carry customer data)."""

    sync_name: str
    members: int  # sync_state rows: members the destination holds (mirror, upsert) or rows last exported
    messages: int  # message_ledger rows: occurrences a send_once sync sent or wrote ahead
    in_doubt: int  # write-ahead entries and unconfirmed work: sends whose outcome the state does not know yet
    errors: int  # rows in error
    last_mode: str | None
    last_run_at: str | None
    carried_over_by: str | None  # the declared sync whose `renamed_from` lists it: its next run takes the state

    def describe(self) -> str:
        held = (
            f"{self.members} member(s), {self.messages} message(s), {self.in_doubt} unsettled send(s), "
            f"{self.errors} row error(s)"
        )
        last = f"last run {self.last_run_at} ({self.last_mode})" if self.last_run_at else "no run on record"
        return f"{self.sync_name}: {held}; {last}"


def has_state(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return any(
        con.execute(f"select 1 from {S}.{table} where sync_name = ? limit 1", [name]).fetchall()
        for table in (*KEYED_TABLES, *LOGGED_TABLES)
    )


def carry_over(con: duckdb.DuckDBPyConnection, sync: SyncSpec, run_id: str) -> list[str]:
    """Move the state of the sync's earlier names to its name, under each earlier name's lock (the caller holds the
    sync's own). One transaction per name. Returns a line per name carried over, for the run's warnings."""
    carried: list[str] = []
    for earlier in sync.renamed_from:
        if not has_state(con, earlier):
            continue
        if not state.acquire_lock(con, earlier, run_id):
            raise NameInUse(
                f"a run of {earlier!r}, the earlier name of sync {sync.name!r}, holds that name's lock: its state is "
                "carried over once that run ends"
            )
        try:
            held = _counts(con, earlier)
            drop_orphan_plans(con, earlier)
            with state.transaction(con):
                _move(con, earlier, sync.name)
        finally:
            state.release_lock(con, earlier, run_id)
        log_event(log, "state.carried_over", sync=sync.name, earlier_name=earlier, **held)
        carried.append(
            f"carried over the state of {earlier!r}, this sync's earlier name ({held['members']} member(s), "
            f"{held['messages']} message(s)): they are this sync's now"
        )
    return carried


def _move(con: duckdb.DuckDBPyConnection, earlier: str, name: str) -> None:
    for table in KEYED_TABLES:
        con.execute(
            f"insert into {S}.{table} select * replace ($name as sync_name) from {S}.{table} "
            f"where sync_name = $earlier and row_key not in (select row_key from {S}.{table} where sync_name = $name)",
            {"name": name, "earlier": earlier},
        )
        con.execute(f"delete from {S}.{table} where sync_name = ?", [earlier])
    for table in (*LOGGED_TABLES, HISTORY_TABLE):
        con.execute(f"update {S}.{table} set sync_name = ? where sync_name = ?", [name, earlier])


def leftovers(con: duckdb.DuckDBPyConnection, declared: dict[str, SyncSpec]) -> list[LeftoverState]:
    """State under names no declared sync has, by name."""
    names = " union ".join(f"select sync_name from {S}.{table}" for table in (*KEYED_TABLES, *LOGGED_TABLES))
    found = sorted(name for (name,) in con.execute(names).fetchall() if name not in declared)
    carriers = {earlier: spec.name for spec in declared.values() for earlier in spec.renamed_from}
    return [
        LeftoverState(name, **_counts(con, name), **_last_run(con, name), carried_over_by=carriers.get(name))
        for name in found
    ]


def _counts(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, int]:
    def rows(table: str) -> int:
        return int(con.execute(f"select count(*) from {S}.{table} where sync_name = ?", [name]).fetchone()[0])

    return {
        "members": rows("sync_state"),
        "messages": rows("message_ledger"),
        "in_doubt": rows("pending_members") + rows("message_acks") + rows("unconfirmed_deliveries"),
        "errors": rows("row_errors"),
    }


def _last_run(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, str | None]:
    last = con.execute(
        f"select mode, started_at from {S}.{HISTORY_TABLE} where sync_name = ? order by started_at desc limit 1",
        [name],
    ).fetchone()
    return (
        {"last_mode": last[0], "last_run_at": f"{last[1]:%Y-%m-%d %H:%M}"}
        if last
        else {"last_mode": None, "last_run_at": None}
    )


def forget(con: duckdb.DuckDBPyConnection, name: str, run_id: str) -> dict[str, int]:
    """Delete every row a name holds but its run history, under the name's lock; returns the counts deleted."""
    if not state.acquire_lock(con, name, run_id):
        raise NameInUse(f"a run of {name!r} holds its lock: try again once it ends")
    try:
        held = _counts(con, name)
        drop_orphan_plans(con, name)
        with state.transaction(con):
            for table in (*KEYED_TABLES, *LOGGED_TABLES):
                con.execute(f"delete from {S}.{table} where sync_name = ?", [name])
    finally:
        state.release_lock(con, name, run_id)
    log_event(log, "state.forgotten", sync=name, **held)
    return held
