"""Structured log lines for the sync engine: `event=... run_id=... sync=... added=3`.

Only scalar counters and identifiers are logged, never row fields: `log_event` refuses containers, so a
payload cannot slip into a log line by accident. `TIDINGS_LOG_FORMAT=json` switches to one JSON object
per line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

_SCALARS = (str, int, float, bool, type(None))
LOGGER_NAME = "tidings"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def format_event(event: str, fields: dict[str, Any], *, as_json: bool) -> str:
    for key, value in fields.items():
        if not isinstance(value, _SCALARS):
            raise TypeError(f"log field {key!r} must be a scalar, got {type(value).__name__}")
    if as_json:
        return json.dumps({"event": event, **fields}, separators=(",", ":"))
    parts = [f"event={event}"] + [f"{key}={_quote(value)}" for key, value in fields.items()]
    return " ".join(parts)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, format_event(event, fields, as_json=_json_format()))


def configure_cli_logging(verbose: bool = False) -> None:
    """Log engine events to stderr for the CLI (Dagster and tests bring their own handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _json_format() -> bool:
    return os.environ.get("TIDINGS_LOG_FORMAT", "").lower() == "json"


def _quote(value: Any) -> str:
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' ="')) else text
