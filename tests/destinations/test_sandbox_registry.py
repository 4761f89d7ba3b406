"""The sandbox registry and the sandbox profile agree: every app is served, every secret it names is known."""

from __future__ import annotations

from typing import Any

import yaml

from syncs.destinations.base import registered_types
from syncs.sandbox.apps import SANDBOX_CREDENTIALS, all_apps
from syncs.settings import destinations_file


def test_apps_have_distinct_names_and_prefixes() -> None:
    apps = all_apps()
    assert len({a.name for a in apps}) == len({a.prefix for a in apps}) == len(apps)


def test_sandbox_profile_declares_every_type_and_only_known_secrets() -> None:
    profile: dict[str, dict[str, Any]] = yaml.safe_load(destinations_file().read_text())["profiles"]["sandbox"]
    assert {spec["type"] for spec in profile.values()} == set(registered_types())
    named = {value for spec in profile.values() for key, value in spec.items() if key.endswith("_env")}
    assert named <= set(SANDBOX_CREDENTIALS)


def test_sandbox_urls_point_at_served_prefixes() -> None:
    prefixes = {app.prefix for app in all_apps()}
    profile = yaml.safe_load(destinations_file().read_text())["profiles"]["sandbox"]
    for spec in profile.values():
        url = spec.get("base_url")
        if url:
            path = url.split("}", 1)[1]
            assert any(path == p or path.startswith(p + "/") for p in prefixes), path
