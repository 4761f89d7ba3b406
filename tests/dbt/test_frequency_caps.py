"""Frequency caps hold across runs, on every channel, on the real pipeline: the sample warehouse's message queue is
delivered by its own send_once syncs to the sandboxes, a marketer then reverses the marketing priorities mid-day
(so the messages outranked earlier now win), and the queue is decided again at the current instant and delivered
again. What the first run delivered today must hold each customer's daily slot per channel: caps count Tidings'
own deliveries from the message ledger, not only the ESP's send events (which never cover SMS and arrive late),
including acknowledgements a run has not folded into the ledger yet (half of them, in this test).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from syncs.engine import load_project, run_sync
from syncs.sandbox.apps import use_sandbox_credentials
from tests.dbt.test_marts import query
from tests.session import dbt

DAILY_CAP = 1  # dbt_project.yml: message_daily_cap_per_channel

# Marketing deliveries per customer, channel and the customer's local day: what the destinations got (ledger,
# acknowledged) plus what the queue holds for that day and the ledger has not got yet.
OVER_CAP = f"""
with delivered as (
    select log.customer_id, log.channel, ledger.occurrence_key,
        cast(timezone(zones.contact_timezone, timezone('UTC', ledger.sent_at)) as date) as local_day
    from (
        select occurrence_key, sent_at from tidings.message_ledger where status = 'sent'
        union all
        select occurrence_key, sent_at from tidings.message_acks
    ) as ledger
    join analytics.message_delivery_log as log using (occurrence_key)
    join (select distinct customer_id, contact_timezone from analytics.message_decisions) as zones
        using (customer_id)
    where log.message_kind = 'marketing'
),
queued as (
    select queue.customer_id, queue.channel, queue.occurrence_key, decisions.local_decision_date as local_day
    from analytics.message_queue as queue
    join analytics.message_decisions as decisions using (occurrence_key)
    where queue.message_kind = 'marketing'
        and queue.occurrence_key not in (select occurrence_key from delivered)
)
select customer_id, channel, local_day, count(*) as messages
from (select * from delivered union all select * from queued)
group by all
having count(*) > {DAILY_CAP}
"""


def deliver_message_queue(warehouse: Path) -> None:
    project = load_project()
    names = [name for name, sync in project.syncs.items() if sync.model == "message_queue"]
    assert len(names) >= 4, names
    for name in names:
        result = run_sync(name, project=project, warehouse=warehouse)
        assert result.status in ("success", "partial"), (name, result.status, result.message)


def unfold_half_of_the_acknowledgements(con: duckdb.DuckDBPyConnection) -> None:
    """As if the runs had died after committing half of their acknowledgements and before folding them into the
    ledger: those occurrences are `pending` in the ledger and acknowledged in tidings.message_acks."""
    con.execute(
        "create temp table unfolded as select * from tidings.message_ledger "
        "where status = 'sent' and hash(occurrence_key) % 2 = 0"
    )
    assert con.execute("select count(*) from unfolded").fetchone()[0] > 0
    con.execute(
        "insert into tidings.message_acks select sync_name, occurrence_key, destination_ref, cost, sent_at, run_id "
        "from unfolded"
    )
    con.execute(
        "update tidings.message_ledger set status = 'pending', destination_ref = null, cost = null, sent_at = null "
        "where occurrence_key in (select occurrence_key from unfolded)"
    )


def test_caps_count_what_earlier_runs_delivered_on_every_channel(warehouse_copy: Path, clean_sandbox, tmp_path):
    use_sandbox_credentials()
    deliver_message_queue(warehouse_copy)
    first_run = set(query(warehouse_copy, "select occurrence_key from tidings.message_ledger where status = 'sent'"))
    channels = {c for (c,) in query(warehouse_copy, "select distinct channel from analytics.message_queue")}
    assert first_run and {"email", "sms"} <= channels

    with duckdb.connect(str(warehouse_copy)) as con:
        con.execute("update analytics.message_catalog set priority = 1000 - priority where message_kind = 'marketing'")
        unfold_half_of_the_acknowledgements(con)
    decision_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    result = dbt(
        "run", "--select", "message_delivery_log", "marketing_messages_sent", "message_decisions", "message_queue",
        warehouse=warehouse_copy, target_path=tmp_path / "target",
        vars={"message_decision_at": decision_at},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]

    decided_again = dict(
        query(
            warehouse_copy,
            f"select occurrence_key, decision from analytics.message_decisions "
            f"where occurrence_key in ({', '.join(repr(k) for (k,) in first_run)})",
        )
    )
    assert decided_again and set(decided_again.values()) == {"already_sent"}
    # The reversed priorities put messages outranked in the first run on top; those customers' slots are taken.
    [(capped_by_own_delivery,)] = query(
        warehouse_copy,
        """
        select count(*) from analytics.message_decisions as decisions
        where decisions.decision = 'capped' and decisions.message_kind = 'marketing'
            and exists (
                select 1 from tidings.message_ledger as ledger
                join analytics.message_delivery_log as log using (occurrence_key)
                where log.customer_id = decisions.customer_id and log.channel = decisions.channel
                    and log.message_kind = 'marketing'
            )
        """,
    )
    assert capped_by_own_delivery > 0
    assert query(warehouse_copy, OVER_CAP) == []

    deliver_message_queue(warehouse_copy)
    assert query(warehouse_copy, OVER_CAP) == []
    assert query(warehouse_copy, "select count(*) from tidings.message_acks") == [(0,)]  # folded by the runs
    sent = {
        k for (k,) in query(warehouse_copy, "select occurrence_key from tidings.message_ledger where status = 'sent'")
    }
    assert {key for (key,) in first_run} <= sent
