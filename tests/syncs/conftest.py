"""A small, self-contained sync project per test: a DuckDB warehouse holding one audience table, a
dbt-style model YAML declaring syncs on it, and a destinations.yml pointing at the session sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from syncs.engine import Project, SyncResult, load_project, run_sync
from syncs.sandbox.apps import use_sandbox_credentials

DESTINATIONS = """
profiles:
  sandbox:
    hooks:
      type: webhook
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/webhook/events"
      secret_env: TIDINGS_WEBHOOK_SECRET
      batch_size: 25
      max_retries: 6
    hooks_parallel:
      type: webhook
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/webhook/events"
      secret_env: TIDINGS_WEBHOOK_SECRET
      batch_size: 10
      concurrency: 3
    hooks_fragile:
      type: webhook
      base_url: "${TIDINGS_SANDBOX_URL:-http://127.0.0.1:8765}/webhook/events"
      secret_env: TIDINGS_WEBHOOK_SECRET
      batch_size: 50
      max_retries: 0
    files:
      type: file_export
      directory: "EXPORTS_DIR"
"""

MODEL_YAML = """
models:
  - name: audience
    config:
      contract: {enforced: true}
      meta:
        owner: lifecycle@example.com
        tidings:
          syncs:
            - name: audience_mirror
              destination: hooks
              mode: mirror
              primary_key: customer_id
              target: {topic: audience}
              mapping: {email: email, first_name: first_name, score: score}
              guards: {max_removal_share: 0.5}
            - name: audience_upsert
              destination: hooks_parallel
              mode: upsert
              primary_key: customer_id
              target: {topic: contacts}
              mapping: {email: email, score: score}
              where: "score >= 10"
            - name: audience_fragile
              destination: hooks_fragile
              mode: upsert
              primary_key: customer_id
              target: {topic: fragile}
              mapping: {email: email}
            - name: audience_export
              destination: files
              mode: export
              primary_key: customer_id
              target: {name: audience, format: csv}
              mapping: {customer_id: customer_id, score: score}
    columns:
      - name: customer_id
      - name: email
      - name: first_name
      - name: score
  - name: messages
    config:
      meta:
        tidings:
          syncs:
            - name: welcome_send
              destination: hooks
              mode: send_once
              primary_key: occurrence_key
              target: {topic: welcome}
              mapping: {email: email, template: template}
    columns:
      - name: occurrence_key
      - name: customer_id
      - name: email
      - name: template
"""


@dataclass
class SyncEnv:
    root: Path
    warehouse: Path
    dbt_project_dir: Path
    destinations_file: Path
    sandbox: Any

    def project(self) -> Project:
        return load_project(self.dbt_project_dir, self.destinations_file, profile="sandbox")

    def run(self, name: str, **kwargs: Any) -> SyncResult:
        return run_sync(name, project=self.project(), warehouse=self.warehouse, **kwargs)

    def run_in_subprocess(
        self, name: str, *, extra_args: tuple[str, ...] = (), **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`tidings run <name> [extra_args]` in a child process (for the runner's crash hooks, which exit the
        process)."""
        command = self._run_command(name, extra_args)
        return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)

    def start_in_subprocess(self, name: str) -> subprocess.Popen[str]:
        """`tidings run <name>` started in a child process, for a test to kill it at a moment of its choosing; its
        stderr goes to `child_stderr`."""
        with self.child_stderr.open("w") as stderr:
            return subprocess.Popen(self._run_command(name, ()), stdout=subprocess.DEVNULL, stderr=stderr, text=True)

    @property
    def child_stderr(self) -> Path:
        return self.root / "child.stderr"

    def _run_command(self, name: str, extra_args: tuple[str, ...]) -> list[str]:
        return [
            sys.executable,
            "-m",
            "syncs.cli",
            "--warehouse",
            str(self.warehouse),
            "--project-dir",
            str(self.dbt_project_dir),
            "--destinations",
            str(self.destinations_file),
            "run",
            name,
            *extra_args,
        ]

    def sql(self, statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.warehouse)) as con:
            return con.execute(statement, params or []).fetchall()

    def fill_audience(self, rows: int, *, score: str = "i % 50", start: int = 0) -> None:
        """(Re)create analytics.audience with `rows` customers c00000.. and a computed score."""
        self.sql(
            f"""create or replace table analytics.audience as
            select printf('c%05d', i) as customer_id, printf('user%05d@example.com', i) as email,
                   'Name' || i as first_name, ({score})::integer as score
            from range({start}, {start} + {rows}) t(i)"""
        )

    def fill_messages(self, rows: int) -> None:
        self.sql(
            f"""create or replace table analytics.messages as
            select 'welcome:' || printf('c%05d', i) as occurrence_key, printf('c%05d', i) as customer_id,
                   printf('user%05d@example.com', i) as email, 'welcome_v1' as template
            from range({rows}) t(i)"""
        )

    def webhook(self) -> Any:
        return self.sandbox.app("webhook")

    def faults(self, **settings: Any) -> None:
        self.webhook().faults.update(**settings)


@pytest.fixture
def sync_env(tmp_path: Path, clean_sandbox: Any) -> SyncEnv:
    use_sandbox_credentials()
    project_dir = tmp_path / "dbt_project"
    (project_dir / "models").mkdir(parents=True)
    (project_dir / "models" / "_audiences.yml").write_text(textwrap.dedent(MODEL_YAML))
    destinations = project_dir / "destinations.yml"
    destinations.write_text(DESTINATIONS.replace("EXPORTS_DIR", str(tmp_path / "exports")))
    env = SyncEnv(tmp_path, tmp_path / "warehouse.duckdb", project_dir, destinations, clean_sandbox)
    env.sql("create schema analytics")
    env.fill_audience(100)
    env.fill_messages(40)
    return env


@pytest.fixture
def write_project(tmp_path: Path) -> Callable[[str, str], tuple[Path, Path]]:
    """Write a model YAML and a destinations.yml of your own (for configuration error tests)."""

    def write(model_yaml: str, destinations_yaml: str = DESTINATIONS) -> tuple[Path, Path]:
        project_dir = tmp_path / "cfg_project"
        (project_dir / "models").mkdir(parents=True, exist_ok=True)
        (project_dir / "models" / "_models.yml").write_text(textwrap.dedent(model_yaml))
        destinations = project_dir / "destinations.yml"
        destinations.write_text(textwrap.dedent(destinations_yaml).replace("EXPORTS_DIR", str(tmp_path / "x")))
        return project_dir, destinations

    return write
