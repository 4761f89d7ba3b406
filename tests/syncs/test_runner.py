"""The runner settles whatever shape of answer a connector gives: whole-batch acknowledgements, per-row outcomes
in any order, and rows it leaves unanswered."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

import pytest

from syncs import state
from syncs.destinations.base import (
    AcknowledgedRows,
    Destination,
    DestinationSettings,
    Mode,
    Operation,
    OutboundBatch,
    OutboundRow,
    RowOutcome,
    RunInfo,
    SyncTarget,
)
from syncs.planner import build_plan, drop_plan
from syncs.runner import Delivery, Runner

Answer = Callable[[Operation, OutboundBatch], Sequence[RowOutcome]]


class ScriptedDestination(Destination):
    """Answers each batch with what the test scripts; records the batches it was handed."""

    type_name = "scripted"
    channel = "webhook"
    modes = frozenset(Mode)
    max_batch_size = 10

    def __init__(self, answer: Answer) -> None:
        super().__init__("scripted", DestinationSettings(base_url="http://127.0.0.1:1"), SyncTarget())
        self.answer = answer
        self.batches: list[OutboundBatch] = []

    def write(self, op: Operation, rows: Sequence[OutboundRow]) -> Sequence[RowOutcome]:
        assert isinstance(rows, OutboundBatch)
        self.batches.append(rows)
        return self.answer(op, rows)


@pytest.fixture
def deliver(sync_env):
    def run(answer: Answer, identity_fields: frozenset[str] = frozenset()) -> tuple[Delivery, ScriptedDestination]:
        sync = sync_env.project().sync("audience_mirror")
        destination = ScriptedDestination(answer)
        con = state.connect(sync_env.warehouse)
        try:
            state.ensure_schema(con)
            plan = build_plan(con, sync, "run-1", identity_fields=identity_fields)
            run = RunInfo("run-1", sync.name, sync.mode)
            delivery = Runner(con, plan, destination, run, concurrency=2).deliver()
            drop_plan(con, plan)
        finally:
            con.close()
        return delivery, destination

    return run


def test_a_whole_batch_acknowledgement_settles_without_row_objects(sync_env, deliver):
    delivery, destination = deliver(lambda op, rows: AcknowledgedRows(rows.keys, [f"ref-{k}" for k in rows.keys]))

    assert (delivery.sent, delivery.failed) == (100, 0)
    assert all(batch._rows is None for batch in destination.batches)
    assert sync_env.sql("select count(*), count(distinct destination_ref) from tidings.sync_state") == [(100, 100)]
    assert sync_env.sql("select count(*) from tidings.pending_members") == [(0,)]


def test_outcomes_in_any_order_settle_against_their_own_rows(sync_env, deliver):
    def reversed_with_a_failure(op: Operation, rows: OutboundBatch) -> list[RowOutcome]:
        outcomes = [
            RowOutcome.failure(row.key, "invalid_email", "rejected", permanent=True)
            if row.key == "c00007"
            else RowOutcome.success(row.key, destination_ref=f"ref-{row.key}")
            for row in rows
        ]
        return outcomes[::-1]

    delivery, _ = deliver(reversed_with_a_failure)

    assert (delivery.sent, delivery.failed) == (99, 1)
    refs = sync_env.sql("select count(*) from tidings.sync_state where destination_ref = 'ref-' || row_key")
    assert refs == [(99,)]
    assert sync_env.sql("select row_key, code from tidings.row_errors") == [("c00007", "invalid_email")]
    # The destination may hold the rejected member after all: its write-ahead entry stays until it is resolved.
    assert sync_env.sql("select row_key from tidings.pending_members") == [("c00007",)]


def test_rows_a_connector_never_answers_become_retryable_errors(sync_env, deliver):
    delivery, _ = deliver(lambda op, rows: [RowOutcome.success(key) for key in rows.keys[:5]])

    assert (delivery.sent, delivery.failed) == (50, 50)
    errors = sync_env.sql("select code, permanent, count(*) from tidings.row_errors group by all")
    assert errors == [("no_acknowledgement", False, 50)]
    assert sync_env.sql("select count(*) from tidings.pending_members") == [(50,)]

    retried = sync_env.run("audience_mirror")  # the real sandbox this time: every row acknowledged
    assert (retried.planned.add, retried.sent) == (50, 50)
    assert sync_env.sql("select count(*) from tidings.pending_members") == [(0,)]


def test_each_pass_is_acknowledged_before_the_next_starts(sync_env, deliver):
    """Removals and retirements of previous identities, then upserts, never overlapping, although two batches
    may be in flight."""
    sync_env.run("audience_mirror")
    sync_env.sql("update analytics.audience set email = 'new' || email where customer_id < 'c00030'")
    sync_env.sql("delete from analytics.audience where customer_id >= 'c00090'")
    calls: list[tuple[Operation, float, float]] = []

    def slow_acknowledgement(op: Operation, rows: OutboundBatch) -> AcknowledgedRows:
        started = time.monotonic()
        time.sleep(0.02)
        calls.append((op, started, time.monotonic()))
        return AcknowledgedRows(rows.keys)

    delivery, destination = deliver(slow_acknowledgement, identity_fields=frozenset({"email"}))

    assert (delivery.sent, delivery.removed) == (30, 40)  # 30 changed; 30 retired and 10 removed
    first_pass = sorted(itertools.chain(*(batch.keys for batch in destination.batches[:4])))
    assert first_pass[30:] == [f"c{i:05d}" for i in range(90, 100)]
    assert all(key.startswith(f"c{i:05d}#retired:") for i, key in enumerate(first_pass[:30]))
    ops = [op for op, _, _ in calls]
    assert ops == [Operation.REMOVE] * 4 + [Operation.UPSERT] * 3
    removals, upserts = calls[:4], calls[4:]
    assert max(ended for _, _, ended in removals) <= min(started for _, started, _ in upserts)
