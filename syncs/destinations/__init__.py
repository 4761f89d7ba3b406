"""Destination connectors. Each module registers one destination type with `syncs.destinations.base.register`."""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Import every connector module so each registers itself."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
