"""`tidings`: list, validate, plan, run and inspect syncs; generate sample data; serve the sandboxes.

Exit codes: 0 done (or dry run), 1 rows failed or the run failed, 2 invalid configuration or usage,
3 blocked by a guard, 4 another run holds the sync's lock, or another process has the warehouse open.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from syncs import engine, state
from syncs.config import ConfigError
from syncs.logs import configure_cli_logging
from syncs.sample_data.__main__ import add_arguments as add_generator_arguments
from syncs.settings import destinations_file, warehouse_path
from syncs.sync_names import NameInUse

EXIT_CODES = {"success": 0, "dry_run": 0, "partial": 1, "failed": 1, "blocked": 3, "locked": 4}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.project_dir:  # as TIDINGS_DBT_PROJECT_DIR does, it moves the destinations and warehouse defaults too
        args.destinations = args.destinations or destinations_file(args.project_dir)
        args.warehouse = args.warehouse or warehouse_path(args.project_dir)
    configure_cli_logging(verbose=args.verbose)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    except (KeyError, FileNotFoundError, engine.RunRefused) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    except state.WarehouseBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CODES["locked"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidings", description="Warehouse-native reverse ETL for lifecycle marketing."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--warehouse", type=Path, help="DuckDB file (default: TIDINGS_WAREHOUSE)")
    parser.add_argument("--project-dir", type=Path, help="dbt project (default: TIDINGS_DBT_PROJECT_DIR)")
    parser.add_argument("--destinations", type=Path, help="destinations file (default: TIDINGS_DESTINATIONS_FILE)")
    parser.add_argument("--profile", help="destinations profile (default: TIDINGS_PROFILE or sandbox)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    command("syncs", _list_syncs, "list the declared syncs")
    validate = command("validate", _validate, "load and validate every sync and destination")
    validate.add_argument(
        "--models",
        action="store_true",
        help="also check each sync against the built models in the warehouse (read-only): model and columns "
        "present, column types the destination can send, the where clause runs",
    )
    plan = command("plan", _plan, "show what a run would do now (counts and a masked preview); sends nothing")
    plan.add_argument("name")
    plan.add_argument("--json", action="store_true")
    run = command("run", _run, "run a sync")
    run.add_argument("name")
    run.add_argument("--dry-run", action="store_true", help="plan, apply the guards, preview; send nothing")
    run.add_argument("--allow-large-removal", action="store_true", help="override the removal-share guard")
    run.add_argument(
        "--resend-all",
        action="store_true",
        help="mirror/upsert: re-send every current member, changed or not (the destination lost data, a changed "
        "normalization); removals as usual",
    )
    run.add_argument(
        "--remove-all",
        action="store_true",
        help="mirror: remove every member from the destination, whatever the model holds (before deleting the "
        "sync); later runs send no member back until one is run with --add-back",
    )
    run.add_argument(
        "--add-back",
        action="store_true",
        help="mirror (or upsert) sync emptied by --remove-all: send the model's members again (later runs then "
        "sync as usual)",
    )
    run.add_argument(
        "--retarget",
        action="store_true",
        help="mirror/upsert sync pointed at another destination or target: drop the state of the members sent to "
        "the old one (they stay there) and send every member to the new one",
    )
    run.add_argument("--json", action="store_true")
    retry = command("retry", _retry, "re-send only the rows currently in error")
    retry.add_argument("name")
    retry.add_argument("--json", action="store_true")
    runs = command("runs", _runs, "run history")
    runs.add_argument("name", nargs="?")
    runs.add_argument("--limit", type=int, default=20)
    forget = command(
        "forget",
        _forget,
        "delete the state a removed sync left (members, unsettled work, row errors; its message and run history "
        "stay); shows what it holds unless --yes",
    )
    forget.add_argument("name")
    forget.add_argument("--yes", action="store_true", help="delete it")
    errors = command("errors", _errors, "rows in error for a sync")
    errors.add_argument("name")
    errors.add_argument("--limit", type=int, default=100)
    generate = command("generate", _generate, "generate sample source data into the warehouse's raw schema")
    add_generator_arguments(generate)
    sandbox = command("sandbox", _sandbox, "local destination sandboxes")
    sandbox.add_argument("action", choices=["serve"])
    sandbox.add_argument("--port", type=int, default=8765)
    sandbox.add_argument("--sftp-port", type=int, default=8722)
    return parser


def _project(args: argparse.Namespace) -> engine.Project:
    return engine.load_project(args.project_dir, args.destinations, args.profile)


def _list_syncs(args: argparse.Namespace) -> int:
    syncs = _project(args).syncs.values()
    rows = [[s.name, s.model, s.destination, s.mode.value, s.schedule or "-"] for s in syncs]
    _table(["sync", "model", "destination", "mode", "schedule"], rows)
    return 0


def _validate(args: argparse.Namespace) -> int:
    project = _project(args)
    print(
        f"ok: {len(project.syncs)} sync(s) and {len(project.destinations)} destination(s) "
        f"in profile {project.profile!r} are valid"
    )
    if args.models:
        checked = engine.check_against_models(project, args.warehouse)
        print(f"ok: {checked} sync(s) match the built models in {args.warehouse or warehouse_path()}")
    _print_state_warnings(project, args.warehouse or warehouse_path())
    return 0


def _print_state_warnings(project: engine.Project, warehouse: Path) -> None:
    """Warn of state under names no declared sync has (a sync renamed without `renamed_from`, or removed), and of
    syncs pointed at another destination or target than their members'."""
    try:
        found, moved = engine.state_findings(project, warehouse)
    except state.WarehouseBusy:  # another process has it open for writing, and DuckDB then lets no other in
        print(f"note: sync state not checked: another process has {warehouse} open")
        return
    for leftover in found:
        print(f"{'note' if leftover.carried_over_by else 'warning'}: {leftover.advice()}")
    for move in moved:
        print(f"warning: runs are blocked: {move.blocked()}")


def _forget(args: argparse.Namespace) -> int:
    project = _project(args)
    if args.name in project.syncs:
        raise engine.RunRefused(
            f"sync {args.name!r} is declared in {project.syncs[args.name].source_file}: remove its declaration first"
        )
    with _state(args) as con:
        found = {leftover.sync_name: leftover for leftover in engine.leftover_state(project, con=con)}
        leftover = found.get(args.name)
        if leftover is None:
            print(f"no state under {args.name!r}; nothing to forget")
            return 0
        if leftover.carried_over_by:
            raise engine.RunRefused(
                f"{args.name!r} is listed in `renamed_from` of sync {leftover.carried_over_by}, whose next run carries "
                "its state over: remove it there first"
            )
        if not args.yes:
            print(f"state of {leftover.describe()}")
            if leftover.unsettled:
                print(
                    "unsettled: sends whose outcome the state does not know yet (written ahead, or work the "
                    "destination has not confirmed); forgetting them gives up sending, removing or checking them again"
                )
            print(
                "nothing deleted: run again with --yes to delete its members, unsettled work and row errors (the "
                "destination keeps what it holds; message and run history stay)"
            )
            return 0
        try:
            deleted = engine.forget_state(con, args.name)
        except NameInUse as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_CODES["locked"]
    forgotten = ", ".join(f"{count} {what}" for what, count in deleted.items())
    print(f"forgot {args.name}: {forgotten}; its message history and run history stay")
    return 0


def _plan(args: argparse.Namespace) -> int:
    plan = engine.plan_sync(args.name, project=_project(args), warehouse=args.warehouse)
    summary = {
        "sync": plan.sync_name,
        "mode": plan.mode.value,
        "planned": vars(plan.counts),
        "skipped": plan.skipped,
        "guard_decisions": plan.guard_decisions,
        "warnings": plan.warnings,
        "preview": plan.preview,
    }
    _print_summary(summary, as_json=args.json)
    return 0


def _run(args: argparse.Namespace) -> int:
    result = engine.run_sync(
        args.name,
        project=_project(args),
        warehouse=args.warehouse,
        dry_run=args.dry_run,
        allow_large_removal=args.allow_large_removal,
        resend_all=args.resend_all,
        remove_all=args.remove_all,
        add_back=args.add_back,
        retarget=args.retarget,
    )
    return _report(result, args.json)


def _retry(args: argparse.Namespace) -> int:
    return _report(engine.retry_sync(args.name, project=_project(args), warehouse=args.warehouse), args.json)


def _report(result: engine.SyncResult, as_json: bool) -> int:
    summary = result.to_dict()
    if not as_json and result.status != "dry_run":
        summary.pop("preview")
    _print_summary(summary, as_json=as_json)
    if result.status == "dry_run" and any("blocked" in decision for decision in result.guard_decisions):
        return EXIT_CODES["blocked"]  # the real run would be blocked: a dry run used as a check must say so
    return EXIT_CODES[result.status]


def _runs(args: argparse.Namespace) -> int:
    with _state(args) as con:
        runs = state.list_runs(con, args.name, args.limit)
    columns = [
        "started_at",
        "sync_name",
        "status",
        "dry_run",
        "planned_add",
        "planned_change",
        "planned_remove",
        "sent",
        "removed",
        "failed",
        "skipped",
        "duration_seconds",
    ]
    _table(columns, [[run[c] for c in columns] for run in runs])
    return 0


def _errors(args: argparse.Namespace) -> int:
    with _state(args) as con:
        errors = state.list_row_errors(con, args.name, args.limit)
    columns = ["row_key", "code", "permanent", "attempts", "last_seen_at", "message"]
    _table(columns, [[error[c] for c in columns] for error in errors])
    return 0


def _generate(args: argparse.Namespace) -> int:
    from syncs.sample_data.__main__ import run

    run(args)
    return 0


def _sandbox(args: argparse.Namespace) -> int:
    from syncs.sandbox.run import serve

    serve(port=args.port, sftp_port=args.sftp_port)
    return 0


@contextmanager
def _state(args: argparse.Namespace) -> Iterator[duckdb.DuckDBPyConnection]:
    con = state.connect(args.warehouse or warehouse_path())
    try:
        state.ensure_schema(con)
        yield con
    finally:
        con.close()


def _print_summary(summary: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    for key, value in summary.items():
        if key == "preview":
            print("preview (masked):")
            for row in value:
                print(f"  {row['action']:<9} {row['key']}  {json.dumps(row['fields'], default=str)}")
        elif isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print(f"  - {item}")
        else:
            print(f"{key}: {json.dumps(value, default=str) if isinstance(value, dict) else value}")


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    cells = [columns, *[["-" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(none)")


if __name__ == "__main__":
    sys.exit(main())
