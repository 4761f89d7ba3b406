"""`dagster dev` serves the code location, and headless Chromium renders the sync assets in the UI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration.processes import start_group, stop_group
from syncs.engine import load_project

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READY_TIMEOUT_SECONDS = 90
ASSET_KEYS_QUERY = "{ assetNodes { assetKey { path } } }"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="headless Chromium not installed (Debian: apt-get install -y chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def graphql(base_url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{base_url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def served_asset_paths(base_url: str) -> set[str]:
    nodes = graphql(base_url, ASSET_KEYS_QUERY).get("data", {}).get("assetNodes") or []
    return {"/".join(node["assetKey"]["path"]) for node in nodes}


@pytest.fixture
def dagster_ui(tmp_path: Path) -> Iterator[str]:
    """`dagster dev` on a free port, in its own process group, stopped with everything it started."""
    port = free_port()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    command = [str(Path(sys.executable).with_name("dagster")), "dev", "-m", "orchestration.definitions"]
    with (tmp_path / "dagster.log").open("wb") as log:
        server = start_group([*command, "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=log)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_group(server)


def wait_for_sync_assets(base_url: str, expected: set[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if expected <= served_asset_paths(base_url):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise AssertionError(f"dagster dev did not serve the sync assets within {READY_TIMEOUT_SECONDS} s")


def render(url: str, profile_dir: Path) -> str:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile_dir}",
        "--window-size=1400,4000",  # the catalog renders only rows in view: make every row visible
        "--virtual-time-budget=15000",
        "--dump-dom",
    ]
    return subprocess.run([CHROMIUM, *flags, url], capture_output=True, text=True, timeout=120, check=True).stdout


def test_ui_lists_every_sync_asset(dagster_ui: str, tmp_path: Path):
    names = sorted(load_project().syncs)
    wait_for_sync_assets(dagster_ui, {f"syncs/{name}" for name in names})
    graphql(dagster_ui, "mutation { setNuxSeen }")  # the first-visit dialog would cover the page

    dom = render(f"{dagster_ui}/assets/syncs", tmp_path / "chromium-profile")

    missing = [name for name in names if name not in dom]
    assert not missing, f"sync assets not rendered in the asset catalog: {missing}"
