"""The sync engine's public API: load the project, plan a sync (a dry preview), run a sync.

A run takes the sync's lock, plans in the warehouse, applies the guards, then delivers (or, for a dry
run, stops after the plan). Its history row is written when it starts and completed when it ends, and it
never holds raw PII: previews are masked and error messages come from connectors that must not echo rows.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from syncs import config, guards, state, sync_places
from syncs.column_types import check_mapped_column_types
from syncs.config import ConfigError, ConfigProblem, DestinationSpec, Project, SyncSpec
from syncs.destinations.base import Mode, Operation, RunInfo
from syncs.later_checks import MEMBER_MODES, EarlierWork, check_earlier_deliveries, in_flight, unchecked
from syncs.logs import get_logger, log_event
from syncs.planner import Plan, PlanCounts, build_plan, check_model, drop_orphan_plans, drop_plan
from syncs.runner import Delivery, Runner
from syncs.settings import dbt_project_dir as default_dbt_project_dir
from syncs.settings import destinations_file as default_destinations_file
from syncs.settings import warehouse_path
from syncs.sync_names import STATE_TABLES, LeftoverState, NameInUse, carry_over, forget, leftovers

__all__ = [
    "ConfigError",
    "DestinationSpec",
    "Plan",
    "PlanCounts",
    "Project",
    "SyncResult",
    "SyncSpec",
    "load_project",
    "plan_sync",
    "retry_sync",
    "run_sync",
]

log = get_logger("engine")


REMOVE_ALL_WARNING = (
    "every member was planned for removal: once such a run ends `success`, delete the sync's declaration (then "
    "`tidings forget` it); until then its runs are blocked from sending members back, unless run with --add-back"
)
REMOVE_ALL_UNCONFIRMED = (
    "{runs} run(s) of this sync have work the destination has not confirmed yet (Google processes a job within hours "
    "and may fail it): run `--remove-all` again later, which checks it and sends failed removals again, until no "
    "run is left unconfirmed"
)


class RunRefused(Exception):
    """A run asked for something its sync's mode does not allow; nothing was started."""


@dataclass
class SyncResult:
    run_id: str
    sync_name: str
    mode: str
    status: str  # success | partial | failed | blocked | dry_run | locked
    planned: PlanCounts = field(default_factory=PlanCounts)
    sent: int = 0
    failed: int = 0
    removed: int = 0
    skipped: int = 0
    duration_seconds: float = 0.0  # the whole run: lock, plan, guards, delivery, run history
    rows_per_second: float = 0.0
    delivery_seconds: float = 0.0  # sending and committing state, after the plan
    guard_decisions: list[str] = field(default_factory=list)
    # For the operator: earlier work the destination failed (syncs.later_checks), Destination.run_warnings.
    warnings: list[str] = field(default_factory=list)
    error_summary: dict[str, int] = field(default_factory=dict)
    # The sync's rows in error once the run ended, this run's and earlier runs' (`tidings errors`): a run that sent
    # nothing new, or a retry that ended `success`, may still leave rows nobody delivered.
    rows_in_error: int = 0
    rows_in_error_permanent: int = 0  # of those, the ones no ordinary run sends again until their row changes
    preview: list[dict[str, Any]] = field(default_factory=list)
    export_paths: list[str] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_project(
    dbt_project_dir: Path | None = None, destinations_file: Path | None = None, profile: str | None = None
) -> Project:
    """Read and validate every sync declaration and destination; raises ConfigError listing every problem."""
    return config.load_project(
        dbt_project_dir or default_dbt_project_dir(), destinations_file or default_destinations_file(), profile
    )


def plan_sync(name: str, *, project: Project | None = None, warehouse: Path | None = None) -> Plan:
    """Counts and a masked preview of what `run_sync` would do now, computed by the same planner. Sends nothing."""
    project = project or load_project()
    sync = project.sync(name)
    con = _open(warehouse)
    run_id = new_run_id()
    try:
        carried = _carry_over_unless_running(con, project, sync, run_id)
        check_mapped_column_types(con, sync, project.destination_class_of(sync))
        plan = build_plan(con, sync, run_id, **project.identity_rules(sync))
        plan.warnings = [*carried, *plan.warnings]
        try:
            plan.guard_decisions = guards.evaluate(sync, plan, emptied_by=_emptied_by(con, sync)).decisions
            if move := sync_places.moved(con, sync):  # the counts are against the place its state holds
                plan.guard_decisions = [f"blocked: {move.blocked()}", *plan.guard_decisions]
        finally:
            drop_plan(con, plan)
        return plan
    finally:
        con.close()


def _emptied_by(con: duckdb.DuckDBPyConnection, sync: SyncSpec) -> str | None:
    return state.emptied_by(con, sync.name) if sync.mode in guards.EMPTIED_MODES else None


def _carry_over_unless_running(
    con: duckdb.DuckDBPyConnection, project: Project, sync: SyncSpec, run_id: str
) -> list[str]:
    """A preview counts the state of the sync's earlier names as its first run would, by carrying it over now; a
    run in progress (holding a lock) carries it over itself."""
    if not sync.renamed_from:
        return []
    if not state.acquire_lock(con, sync.name, run_id):
        return [f"not counted: the state of {', '.join(sync.renamed_from)}, which a run in progress carries over"]
    try:
        return _carry_over(con, project, sync, run_id)
    except NameInUse as error:
        return [f"not counted: {error}"]
    finally:
        state.release_lock(con, sync.name, run_id)


def _carry_over(con: duckdb.DuckDBPyConnection, project: Project, sync: SyncSpec, run_id: str) -> list[str]:
    retiring = project.mapped_identity_fields(sync) if sync.mode is Mode.MIRROR else []
    return carry_over(con, sync, run_id, retiring=retiring)


def check_against_models(project: Project, warehouse: Path | None = None) -> int:
    """Check every sync against the built models without planning or sending (`tidings validate --models`): the
    model and its columns are there, mapped columns' types are ones the destination can send, the `where` runs.
    Opens the warehouse read-only; raises one ConfigError listing every problem, else returns the syncs checked."""
    path = warehouse or warehouse_path()
    if not path.exists():
        raise FileNotFoundError(f"warehouse {path} does not exist; run `tidings generate` and `dbt build`")
    problems: list[ConfigProblem] = []
    with _read_only(path) as con:
        for sync in project.syncs.values():
            try:
                check_model(con, sync)
                check_mapped_column_types(con, sync, project.destination_class_of(sync))
            except ConfigError as error:
                problems += error.problems
    if problems:
        raise ConfigError(problems)
    return len(project.syncs)


def leftover_state(project: Project, *, con: duckdb.DuckDBPyConnection) -> list[LeftoverState]:
    """State under names no declared sync has (`syncs.sync_names`), read on the caller's connection."""
    return leftovers(con, project.syncs)


def state_findings(
    project: Project, warehouse: Path | None = None
) -> tuple[list[LeftoverState], list[sync_places.Moved]]:
    """What `tidings validate` and the Dagster sensor warn of, from one read-only open of the warehouse: state under
    names no declared sync has (`leftover_state`), and declared syncs whose runs are blocked because they point at
    another place than their members' (`syncs.sync_places`). Neither when the warehouse does not exist yet."""
    path = warehouse or warehouse_path()
    if not path.exists():
        return [], []
    with _read_only(path) as read_only:
        tables = read_only.execute("select table_name from information_schema.tables where table_schema = ?", [state.S])
        present = {name for (name,) in tables.fetchall()}
        # A warehouse no run of this version has opened lacks its newer tables: its first run adds them.
        found = leftovers(read_only, project.syncs) if present.issuperset(STATE_TABLES) else []
        recorded = sync_places.PLACE_TABLE in present
        moves = (sync_places.moved(read_only, sync) for sync in project.syncs.values()) if recorded else ()
        return found, [move for move in moves if move is not None]


def forget_state(con: duckdb.DuckDBPyConnection, name: str) -> dict[str, int]:
    """Delete what a removed sync's name holds of its members and unsettled work (`syncs.sync_names.forget`); raises
    NameInUse while a run holds its lock."""
    return forget(con, name, new_run_id())


def run_sync(
    name: str,
    *,
    project: Project | None = None,
    warehouse: Path | None = None,
    dry_run: bool = False,
    allow_large_removal: bool = False,
    only_rows_in_error: bool = False,
    resend_all: bool = False,
    remove_all: bool = False,
    add_back: bool = False,
    retarget: bool = False,
) -> SyncResult:
    """Plan, guard and deliver one sync. Row failures are recorded, not raised; a run that cannot start
    (configuration, missing model, missing secret) is recorded as failed and its error re-raised.
    `resend_all` re-sends every current member of a mirror or upsert sync, changed or not (a destination that lost
    its data, a changed normalization); removals go as usual. `remove_all` removes every member of a mirror sync
    from its destination, whatever the model holds (before deleting the sync); later runs of it send no member
    until one is asked to with `add_back`. `retarget`: a mirror or upsert sync pointed at another destination or
    target starts afresh there (`syncs.sync_places`)."""
    project = project or load_project()
    sync = project.sync(name)
    if resend_all and sync.mode not in (Mode.MIRROR, Mode.UPSERT):
        raise RunRefused(
            f"sync {name!r} is {sync.mode.value}: resending applies to mirror and upsert syncs (a send_once sync "
            "never sends a delivered message again; an export writes every row each run)"
        )
    if remove_all and (sync.mode is not Mode.MIRROR or resend_all or only_rows_in_error):
        raise RunRefused(
            f"removing every member applies to a mirror sync's plain run (sync {name!r} is {sync.mode.value}; an "
            "upsert sync never removes, and a resend or a retry cannot be combined with it)"
        )
    if add_back and (sync.mode not in guards.EMPTIED_MODES or remove_all):
        raise RunRefused(
            f"adding members back applies to a mirror or upsert sync emptied by --remove-all (sync {name!r} is "
            f"{sync.mode.value}), and not in the run that empties it"
        )
    if retarget and (sync.mode not in sync_places.PLACE_MODES or remove_all or only_rows_in_error):
        raise RunRefused(
            f"retargeting applies to a mirror or upsert sync's plain run (sync {name!r} is {sync.mode.value}; a "
            "remove-all or a retry cannot be combined with it)"
        )
    run_id = new_run_id()
    result = SyncResult(run_id=run_id, sync_name=name, mode=sync.mode.value, status="failed")
    con = _open(warehouse)
    started = time.monotonic()
    try:
        if not state.acquire_lock(con, name, run_id):
            result.status, result.message = "locked", "another run of this sync holds its lock"
            state.record_run_start(con, run_id, name, sync.mode.value, dry_run)
            _finish(con, result, started)
            return result
        try:
            state.record_run_start(con, run_id, name, sync.mode.value, dry_run)
            log_event(log, "run.started", run_id=run_id, sync=name, mode=sync.mode.value, dry_run=dry_run)
            _plan_and_deliver(
                con,
                project,
                sync,
                result,
                dry_run=dry_run,
                allow_large_removal=allow_large_removal,
                only_rows_in_error=only_rows_in_error,
                resend_all=resend_all,
                remove_all=remove_all,
                add_back=add_back,
                retarget=retarget,
            )
        except Exception as error:
            result.status, result.message = "failed", _safe_message(error)
            raise
        finally:
            _finish(con, result, started)
            state.release_lock(con, name, run_id)
        return result
    finally:
        con.close()


def retry_sync(name: str, **kwargs: Any) -> SyncResult:
    """Re-send only the rows of `name` currently in error (permanent ones included: an explicit retry)."""
    return run_sync(name, only_rows_in_error=True, **kwargs)


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"


def _plan_and_deliver(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    sync: SyncSpec,
    result: SyncResult,
    *,
    dry_run: bool,
    allow_large_removal: bool,
    only_rows_in_error: bool,
    resend_all: bool,
    remove_all: bool,
    add_back: bool,
    retarget: bool,
) -> None:
    drop_orphan_plans(con, sync.name)
    try:
        result.warnings = _carry_over(con, project, sync, result.run_id)
    except NameInUse as error:
        result.status, result.message = "locked", str(error)
        return
    if not _settle_place(
        con,
        project,
        sync,
        result,
        dry_run=dry_run,
        retarget=retarget,
        allow_large_removal=allow_large_removal,
        add_back=add_back,
    ):
        return
    destination_class = project.destination_class_of(sync)
    if not remove_all:  # which reads no model
        check_mapped_column_types(con, sync, destination_class)
    earlier = EarlierWork()
    if destination_class.confirms_later and sync.mode in MEMBER_MODES and not dry_run:
        if only_rows_in_error:
            earlier = unchecked(con, sync)
        else:
            earlier = check_earlier_deliveries(con, project, sync, result.run_id)
        result.warnings = [*result.warnings, *earlier.warnings]
    plan = build_plan(
        con,
        sync,
        result.run_id,
        only_rows_in_error=only_rows_in_error,
        resend_all=resend_all,
        remove_all=remove_all,
        **project.identity_rules(sync),
    )
    result.warnings = [*result.warnings, *plan.warnings]
    if remove_all:
        result.warnings = [*result.warnings, REMOVE_ALL_WARNING]
    try:
        verdict = guards.evaluate(
            sync,
            plan,
            allow_large_removal=allow_large_removal,
            remove_all=remove_all,
            emptied_by=_emptied_by(con, sync),
            add_back=add_back,
        )
        result.planned, result.skipped, result.preview = plan.counts, plan.skipped_total, plan.preview
        result.guard_decisions = verdict.decisions
        if not verdict.blocked:  # a blocked run's are written as it ends, and must not count if it dies first
            state.record_guard_decisions(con, result.run_id, verdict.decisions)
        log_event(log, "run.planned", run_id=result.run_id, sync=sync.name, **_counts(plan), blocked=verdict.blocked)
        if dry_run:
            result.status, result.message = "dry_run", "planned only; nothing was sent"
            return
        found = plan.skipped.get("duplicate_key", 0) > 0
        state.record_duplicate_keys(con, sync.name, result.run_id, plan.table, found=found)
        if verdict.blocked:
            blocked = "; ".join(d for d in verdict.decisions if "blocked" in d)
            result.status, result.message = "blocked", _with_warnings(blocked, result.warnings)
            return
        destination = project.destination_for(sync)
        # The rows of each of the runner's passes (`Runner._passes`): a mirror's `remove` counts its retirements
        # too, and not the removals released as shared identities (never sent).
        counts = plan.counts
        by_op = {
            Mode.MIRROR: {Operation.REMOVE: counts.remove, Operation.UPSERT: counts.add + counts.change},
            Mode.UPSERT: {Operation.UPSERT: counts.add + counts.change},
            Mode.SEND_ONCE: {Operation.SEND: counts.add},
            Mode.EXPORT: {Operation.UPSERT: counts.add + counts.change + counts.unchanged},
        }[sync.mode]
        unsettled = (
            state.unsettled_runs(con, sync.name, result.run_id, plan.table) if sync.mode is Mode.SEND_ONCE else ()
        )
        added_in_flight, removed_in_flight = in_flight(
            con,
            sync.name,
            earlier.in_flight,
            plan.table,
            identity=project.mapped_identity_fields(sync),
        )
        run = RunInfo(
            result.run_id,
            sync.name,
            sync.mode,
            estimated_rows=sum(by_op.values()),
            estimated_rows_by_op=by_op,
            unsettled_runs=unsettled,
            mapped_fields=tuple(name for name, _ in plan.declared_fields),
            added_in_flight=added_in_flight,
            removed_in_flight=removed_in_flight,
        )
        concurrency = project.destinations[sync.destination].settings.concurrency
        delivering = time.monotonic()
        delivery = Runner(con, plan, destination, run, concurrency).deliver()
        result.delivery_seconds = round(time.monotonic() - delivering, 3)
        warnings = [*destination.run_warnings()]
        if remove_all and (unconfirmed := len(state.unconfirmed_deliveries(con, sync.name))):
            warnings.append(REMOVE_ALL_UNCONFIRMED.format(runs=unconfirmed))
        _apply(result, delivery, warnings)
    finally:
        drop_plan(con, plan)
        state.checkpoint(con)


def _settle_place(
    con: duckdb.DuckDBPyConnection,
    project: Project,
    sync: SyncSpec,
    result: SyncResult,
    *,
    dry_run: bool,
    retarget: bool,
    allow_large_removal: bool,
    add_back: bool,
) -> bool:
    """Whether the run goes on at the place the sync points at (`syncs.sync_places`): blocked while its state holds
    members sent to another, unless asked to start afresh there. A run asked to is planned and guarded as from an
    empty state (a dry run stops there); its state goes only once those guards pass, and the run goes on from it."""
    move = sync_places.moved(con, sync)
    if move is None:
        if not dry_run:
            sync_places.record(con, sync)
        return True
    if not retarget:
        result.guard_decisions = [f"blocked: {move.blocked()}"]
        result.status = "dry_run" if dry_run else "blocked"
    else:
        fresh = sync_places.fresh_start(sync)
        drop_orphan_plans(con, fresh.name)
        plan = build_plan(con, fresh, result.run_id, **project.identity_rules(sync))
        try:
            plan.sync_name = sync.name
            emptied_by = _emptied_by(con, sync)
            verdict = guards.evaluate(
                sync, plan, allow_large_removal=allow_large_removal, emptied_by=emptied_by, add_back=add_back
            )
        finally:
            drop_plan(con, plan)
        result.planned, result.skipped, result.preview = plan.counts, plan.skipped_total, plan.preview
        result.guard_decisions = [f"passed: {move.retargeting()}", *verdict.decisions]
        if not dry_run and not verdict.blocked:
            sync_places.retarget(con, sync)
            result.warnings = [*result.warnings, move.retargeted()]
            log_event(log, "run.retargeted", run_id=result.run_id, sync=sync.name, members_dropped=move.members)
            return True
        result.status = "dry_run" if dry_run else "blocked"
    blocked = "; ".join(d for d in result.guard_decisions if d.startswith("blocked"))
    result.message = "planned only; nothing was sent" if dry_run else _with_warnings(blocked, result.warnings)
    return False


def _apply(result: SyncResult, delivery: Delivery, warnings: list[str]) -> None:
    result.sent, result.removed, result.failed = delivery.sent, delivery.removed, delivery.failed
    result.error_summary = dict(delivery.error_summary)
    result.export_paths = delivery.export_paths
    delivered = delivery.sent + delivery.removed
    if delivery.failed == 0:
        result.status = "success"
    else:
        result.status = "partial" if delivered else "failed"
    result.warnings = [*result.warnings, *warnings]
    result.message = _with_warnings(f"{delivered} rows delivered, {delivery.failed} failed", result.warnings)


def _with_warnings(message: str, warnings: list[str]) -> str:
    return message + "; warning: " + "; ".join(warnings) if warnings else message


def _finish(con: duckdb.DuckDBPyConnection, result: SyncResult, started: float) -> None:
    result.duration_seconds = round(time.monotonic() - started, 3)
    moved = result.sent + result.removed + result.failed
    result.rows_per_second = round(moved / result.duration_seconds, 1) if result.duration_seconds > 0 else 0.0
    result.rows_in_error, result.rows_in_error_permanent = state.row_error_counts(con, result.sync_name)
    state.record_run_end(
        con,
        result.run_id,
        {
            "status": result.status,
            "planned_add": result.planned.add,
            "planned_change": result.planned.change,
            "planned_remove": result.planned.remove,
            "planned_unchanged": result.planned.unchanged,
            "sent": result.sent,
            "failed": result.failed,
            "removed": result.removed,
            "skipped": result.skipped,
            "duration_seconds": result.duration_seconds,
            "guard_decisions": result.guard_decisions,
            "error_summary": result.error_summary,
            "message": result.message,
        },
    )
    log_event(
        log,
        "run.finished",
        run_id=result.run_id,
        sync=result.sync_name,
        status=result.status,
        sent=result.sent,
        removed=result.removed,
        failed=result.failed,
        skipped=result.skipped,
        duration_seconds=result.duration_seconds,
    )


def _counts(plan: Plan) -> dict[str, int]:
    return {f"planned_{k}": v for k, v in asdict(plan.counts).items()}


def _read_only(path: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse for checks that change nothing, with DuckDB's external access off (user SQL runs on it).
    Raises `state.WarehouseBusy` while another process writes it."""
    with state.busy_as_error(path):
        return duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})


def _open(warehouse: Path | None) -> duckdb.DuckDBPyConnection:
    con = state.connect(warehouse or warehouse_path())
    state.ensure_schema(con)
    return con


def _safe_message(error: Exception) -> str:
    """Our own errors are written to be safe to store; anything else is summarized by its type only
    (a database or library message may quote row values)."""
    from syncs.destinations._support import MissingSecretError

    if isinstance(error, ConfigError | MissingSecretError | FileNotFoundError):
        return str(error)
    return f"{type(error).__name__} (see the process logs)"
