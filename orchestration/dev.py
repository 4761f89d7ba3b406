"""`make dev`: the Dagster UI on http://127.0.0.1:3000 with the destination sandboxes running beside it.

Parses the dbt manifest if it is missing, writes `$DAGSTER_HOME/dagster.yaml` (the `duckdb` pool limited to one
step at a time) if there is none, starts the sandboxes in a child process and `dagster dev` in another, and
stops both when either exits or on Ctrl-C / SIGTERM. Ports: `TIDINGS_DAGSTER_PORT` (3000), and the sandbox
ports of the default profile, `TIDINGS_SANDBOX_URL` (8765) and `TIDINGS_SANDBOX_SFTP_PORT` (8722).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from orchestration.processes import start_group, stop_group
from orchestration.project import ensure_manifest
from syncs.sandbox.apps import use_sandbox_credentials
from syncs.sandbox.run import serve
from syncs.settings import REPO_ROOT

INSTANCE_CONFIG = """\
# Written by `make dev`. DuckDB allows one writing process: one step of the duckdb pool at a time.
concurrency:
  pools:
    default_limit: 1
"""
SANDBOX_STOP_SECONDS = 10


def main() -> int:
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / ".dagster_home")))
    write_instance_config(dagster_home)
    ensure_manifest()
    sandbox_url = os.environ.setdefault("TIDINGS_SANDBOX_URL", "http://127.0.0.1:8765")
    sftp_port = int(os.environ.setdefault("TIDINGS_SANDBOX_SFTP_PORT", "8722"))
    use_sandbox_credentials()
    sandboxes = multiprocessing.Process(
        target=serve, kwargs={"port": urlsplit(sandbox_url).port or 8765, "sftp_port": sftp_port}, name="sandboxes"
    )
    sandboxes.start()
    port = os.environ.get("TIDINGS_DAGSTER_PORT", "3000")
    dagster_bin = Path(sys.executable).with_name("dagster")
    webserver = start_group(
        [str(dagster_bin), "dev", "-m", "orchestration.definitions", "-h", "127.0.0.1", "-p", port], cwd=REPO_ROOT
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        return webserver.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_group(webserver)
        sandboxes.terminate()
        sandboxes.join(SANDBOX_STOP_SECONDS)


def write_instance_config(dagster_home: Path) -> None:
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_CONFIG)


if __name__ == "__main__":
    raise SystemExit(main())
