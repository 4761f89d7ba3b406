"""The sync engine's warehouse connection: memory limit and how long it defers checkpoints."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from syncs import state


@pytest.mark.parametrize(
    ("memory_limit", "threshold"),
    [
        ("512MB", "122.0 MiB"),  # the default limit: a quarter of it (488 MiB)
        ("64MB", "16.0 MiB"),  # never below DuckDB's own default
        ("8GB", "1.0 GiB"),  # never above 1 GiB
    ],
)
def test_checkpoints_are_deferred_up_to_a_quarter_of_the_memory_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_limit: str, threshold: str
) -> None:
    """Data written since the last checkpoint stays in memory: with checkpoints deferred to 1 GB of log, a
    send_once run of 3M occurrences ran out of the default 512MB limit."""
    monkeypatch.setenv("TIDINGS_DUCKDB_MEMORY_LIMIT", memory_limit)
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    con = state.connect(warehouse)
    try:
        assert con.execute("select current_setting('checkpoint_threshold')").fetchall() == [(threshold,)]
    finally:
        con.close()
