"""Fixtures for connector contract tests: sandbox credentials in the environment, and small helpers."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from syncs.sandbox.apps import use_sandbox_credentials

use_sandbox_credentials()


@pytest.fixture
def control(clean_sandbox: Any) -> Any:
    """`control(app, **faults)` steers one sandbox app's fault injection through its control endpoint."""

    def set_faults(app: str, **faults: float | int | bool) -> None:
        response = requests.post(f"{clean_sandbox.url}/_control/{app}/faults", json=faults, timeout=5)
        response.raise_for_status()

    return set_faults
