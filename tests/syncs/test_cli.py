"""The `tidings` command line, in-process for speed plus one run of the installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from syncs.cli import main
from tests.warehouse_lock import held_open_elsewhere


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
    assert cli(sync_env, "run", "audience_mirror", "--dry-run") == 3  # a dry run as a CI check sees the block
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


BROKEN_YAML = """
models:
  - name: broken
    config:
      meta:
        tidings:
          syncs:
            - name: broken_tags
              destination: hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: broken}
              mapping: {email: email, tags: tags}
            - name: broken_filter
              destination: hooks
              mode: upsert
              primary_key: customer_id
              where: "missing_column > 1"
              target: {topic: broken}
              mapping: {email: email}
  - name: unbuilt
    config:
      meta:
        tidings:
          syncs:
            - name: broken_model
              destination: hooks
              mode: upsert
              primary_key: customer_id
              target: {topic: broken}
              mapping: {email: email}
"""


def test_validate_models_checks_every_sync_against_the_warehouse(sync_env, capsys):
    """`validate --models` finds, in one go and without planning anything, what each run would refuse."""
    assert cli(sync_env, "validate", "--models") == 0
    assert "match the built models" in capsys.readouterr().out

    (sync_env.dbt_project_dir / "models" / "_broken.yml").write_text(BROKEN_YAML)
    sync_env.sql("create table analytics.broken as select 'c1' as customer_id, 'a@example.com' as email, ['x'] as tags")

    assert cli(sync_env, "validate", "--models") == 2
    errors = capsys.readouterr().err
    assert "3 problem(s)" in errors and "_broken.yml" in errors
    assert "sync broken_tags: field 'mapping.tags': column 'tags' is VARCHAR[]" in errors
    assert "sync broken_filter: field 'where'" in errors and "missing_column" in errors
    assert "model unbuilt, sync broken_model: field 'model': analytics.unbuilt is not in the warehouse" in errors
    # read-only: nothing was planned or run, not even the state schema created
    assert sync_env.sql("select count(*) from information_schema.schemata where schema_name = 'tidings'") == [(0,)]


def test_project_dir_moves_the_destinations_and_warehouse_defaults(tmp_path, monkeypatch, capsys):
    """--project-dir does what TIDINGS_DBT_PROJECT_DIR does: the destinations file and warehouse default inside it."""
    monkeypatch.delenv("TIDINGS_DESTINATIONS_FILE", raising=False)
    monkeypatch.delenv("TIDINGS_WAREHOUSE", raising=False)
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    assert main(["--project-dir", str(project), "validate"]) == 2
    assert f"{project.resolve() / 'destinations.yml'}" in capsys.readouterr().err
    assert main(["--project-dir", str(project), "generate", "--customers", "5"]) == 0
    assert (project / "warehouse" / "warehouse.duckdb").exists()


def test_generate_anchors_on_tidings_as_of_date(tmp_path, monkeypatch):
    """dbt's as_of_date() reads TIDINGS_AS_OF_DATE; the generator must name the same "today"."""
    monkeypatch.setenv("TIDINGS_AS_OF_DATE", "2026-06-01")
    warehouse = tmp_path / "sample.duckdb"
    assert main(["--warehouse", str(warehouse), "generate", "--customers", "25"]) == 0
    with duckdb.connect(str(warehouse), read_only=True) as con:
        [(latest,)] = con.execute("select max(_loaded_at) from raw.crm_customers").fetchall()
    assert latest.date().isoformat() <= "2026-06-01"
    monkeypatch.setenv("TIDINGS_AS_OF_DATE", "June 1st")
    with pytest.raises(ValueError, match="TIDINGS_AS_OF_DATE='June 1st' is not a date"):
        main(["--warehouse", str(warehouse), "generate", "--customers", "25"])


def test_resend_all_delivers_every_member_again_and_refuses_send_once(sync_env, capsys):
    """`--resend-all` re-sends every current member of a mirror, under new idempotency keys (a receiver that
    dedupes by key applies them again), and still removes who left; a send_once sync refuses it, sending nothing."""
    assert cli(sync_env, "run", "audience_mirror") == 0
    sync_env.sql("delete from analytics.audience where customer_id = 'c00099'")
    sync_env.sql("update analytics.audience set score = score + 1 where customer_id = 'c00001'")
    delivered_before = sync_env.webhook().stats["delivered"]
    capsys.readouterr()

    assert cli(sync_env, "run", "audience_mirror", "--resend-all", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["planned"]["change"], result["planned"]["unchanged"], result["sent"], result["removed"]) == (
        99,
        0,
        99,
        1,
    )
    assert (
        sync_env.webhook().stats["delivered"] - delivered_before == 100
    )  # 99 upserts and the removal, none a duplicate
    assert cli(sync_env, "run", "audience_mirror", "--json") == 0
    assert json.loads(capsys.readouterr().out)["sent"] == 0  # state holds what was re-sent

    requests_before = sync_env.webhook().stats["requests"]
    assert cli(sync_env, "run", "welcome_send", "--resend-all") == 2
    assert "resending applies to mirror and upsert syncs" in capsys.readouterr().err
    assert sync_env.webhook().stats["requests"] == requests_before


def test_a_warehouse_another_process_has_open_is_a_clear_error_not_a_traceback(sync_env, capsys):
    """DuckDB lets one process at a time write the file: a `tidings` command then says who holds it, exit 4."""
    with held_open_elsewhere(sync_env.warehouse) as holder:
        commands = (["run", "audience_mirror"], ["runs"], ["validate", "--models"], ["generate", "--customers", "10"])
        codes = [cli(sync_env, *command) for command in commands]

    assert codes == [4, 4, 4, 4]
    err = capsys.readouterr().err
    assert f"error: the warehouse {sync_env.warehouse} is open in another process (PID {holder})" in err
    assert "Traceback" not in err
    assert cli(sync_env, "run", "audience_mirror") == 0  # once it is closed
