"""The `tidings` command line, in-process for speed plus one run of the installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from syncs.cli import main


def cli(env, *args: str) -> int:
    common = [
        "--warehouse",
        str(env.warehouse),
        "--project-dir",
        str(env.dbt_project_dir),
        "--destinations",
        str(env.destinations_file),
        "--profile",
        "sandbox",
    ]
    return main([*common, *args])


def test_syncs_validate_plan_run_runs(sync_env, capsys):
    assert cli(sync_env, "syncs") == 0
    listing = capsys.readouterr().out
    assert "audience_mirror" in listing and "welcome_send" in listing and "send_once" in listing

    assert cli(sync_env, "validate") == 0
    assert "are valid" in capsys.readouterr().out

    assert cli(sync_env, "plan", "audience_mirror", "--json") == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["planned"] == {"add": 100, "change": 0, "remove": 0, "unchanged": 0}
    assert plan["preview"][0]["fields"]["email"] == "u***@e***.com"

    assert cli(sync_env, "run", "audience_mirror", "--dry-run") == 0
    assert "preview (masked)" in capsys.readouterr().out
    assert cli(sync_env, "run", "audience_mirror", "--json") == 0
    assert json.loads(capsys.readouterr().out)["sent"] == 100

    assert cli(sync_env, "runs", "audience_mirror") == 0
    history = capsys.readouterr().out.splitlines()
    assert len(history) == 3 and "success" in history[1] and "dry_run" in history[2]


def test_errors_retry_and_exit_codes(sync_env, capsys):
    sync_env.sql("update analytics.audience set email = 'nope' where customer_id = 'c00004'")
    assert cli(sync_env, "run", "audience_mirror") == 1  # partial
    capsys.readouterr()
    assert cli(sync_env, "errors", "audience_mirror") == 0
    errors = capsys.readouterr().out
    assert "c00004" in errors and "invalid_email" in errors and "nope" not in errors

    sync_env.sql("update analytics.audience set email = 'fixed@example.com' where customer_id = 'c00004'")
    assert cli(sync_env, "retry", "audience_mirror", "--json") == 0
    assert json.loads(capsys.readouterr().out)["sent"] == 1

    sync_env.sql("delete from analytics.audience")
    assert cli(sync_env, "run", "audience_mirror") == 3  # blocked
    assert cli(sync_env, "run", "no_such_sync") == 2
    assert "unknown sync 'no_such_sync'" in capsys.readouterr().err


def test_config_errors_are_reported_without_a_traceback(sync_env):
    broken = sync_env.dbt_project_dir / "models" / "_audiences.yml"
    broken.write_text(broken.read_text().replace("destination: hooks\n", "destination: nowhere\n", 1))
    command = [
        str(Path(sys.executable).parent / "tidings"),
        "--project-dir",
        str(sync_env.dbt_project_dir),
        "--destinations",
        str(sync_env.destinations_file),
        "validate",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=60)
    assert completed.returncode == 2
    assert "unknown destination 'nowhere'" in completed.stderr and "Fix:" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_generate_takes_its_options_and_the_global_warehouse(tmp_path, capsys):
    warehouse = tmp_path / "sample.duckdb"
    assert main(["--warehouse", str(warehouse), "generate", "--customers", "25", "--seed", "3"]) == 0
    assert f"wrote {warehouse}" in capsys.readouterr().out
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.crm_customers").fetchone()[0] == 25
