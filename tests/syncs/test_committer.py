"""The state committer: settled batches reach state in few transactions, in order, and a failed commit stops the
run loudly instead of being lost on a background thread."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from syncs import state
from syncs.committer import CommitScope, StateCommitter
from syncs.config import ConfigError


def _outcomes(start: int, rows: int, *, ok: bool = True) -> pa.Table:
    keys = [f"c{i:05d}" for i in range(start, start + rows)]
    return pa.table(
        {
            "row_key": keys,
            "ok": [ok] * rows,
            "code": [None if ok else "invalid_email"] * rows,
            "message": [None if ok else "the receiver rejected the row (invalid_email)"] * rows,
            "permanent": [not ok] * rows,
            "destination_ref": [f"ref-{key}" for key in keys],
            "cost": [None] * rows,
            "action": ["add"] * rows,
            "row_hash": [f"hash-{key}" for key in keys],
            "row_fields": ['{"score":1}'] * rows,
        },
        schema=state.PLANNED_OUTCOME_SCHEMA,
    )


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    connection = state.connect(warehouse)
    state.ensure_schema(connection)
    yield connection
    connection.close()


def _committer(con: duckdb.DuckDBPyConnection, **kwargs: float) -> StateCommitter:
    """A committer for sync `s`; the commit interval comes from the environment unless given."""
    scope = CommitScope("s", "run-1", send_once=False, keep_fields=True, plan_table="unused")
    return StateCommitter(con, scope, errors_on_record=False, **kwargs)


def test_batches_settled_within_an_interval_share_one_transaction(con):
    committer = _committer(con, interval_seconds=0.5)
    for number in range(1, 11):
        committer.submit(number, _outcomes((number - 1) * 50, 50))
    committer.close()

    assert committer.transactions == 1
    assert con.execute("select count(*), count(distinct row_key) from tidings.sync_state").fetchone() == (500, 500)


def test_a_slow_destination_gets_a_transaction_per_batch(con):
    committer = _committer(con, interval_seconds=0.01)
    for number in range(1, 4):
        committer.submit(number, _outcomes((number - 1) * 10, 10))
        committer.flush()
        assert con.execute("select count(*) from tidings.sync_state").fetchone() == (number * 10,)
        time.sleep(0.02)
    committer.close()

    assert committer.transactions == 3


def test_failures_and_successes_of_one_group_both_land(con):
    committer = _committer(con, interval_seconds=0.5)
    committer.submit(1, _outcomes(0, 5))
    committer.submit(2, _outcomes(5, 3, ok=False))
    committer.close()

    assert con.execute("select count(*) from tidings.sync_state").fetchone() == (5,)
    errors = con.execute("select code, permanent, count(*) from tidings.row_errors group by all").fetchall()
    assert errors == [("invalid_email", True, 3)]


def test_a_failed_commit_is_raised_to_the_sender(con):
    committer = _committer(con, interval_seconds=0.01)
    con.execute("drop table tidings.sync_state")
    committer.submit(1, _outcomes(0, 5))

    with pytest.raises(RuntimeError, match="committing sync state failed") as raised:
        committer.flush()
    assert isinstance(raised.value.__cause__, duckdb.Error)
    with pytest.raises(RuntimeError):
        committer.submit(2, _outcomes(5, 5))
    with pytest.raises(RuntimeError):
        committer.close()


def test_a_zero_interval_commits_each_batch_as_soon_as_it_can(con, monkeypatch):
    monkeypatch.setenv("TIDINGS_COMMIT_INTERVAL_SECONDS", "0")
    committer = _committer(con)
    for number in range(1, 4):
        committer.submit(number, _outcomes((number - 1) * 10, 10))
        committer.flush()
    committer.close()

    assert committer.transactions == 3


@pytest.mark.parametrize("value", ["soon", "-1", "3600"])
def test_a_bad_commit_interval_names_the_variable_and_the_fix(con, monkeypatch, value):
    monkeypatch.setenv("TIDINGS_COMMIT_INTERVAL_SECONDS", value)
    with pytest.raises(ConfigError, match="TIDINGS_COMMIT_INTERVAL_SECONDS") as raised:
        _committer(con)
    assert "from 0 to 60" in str(raised.value)
