{{ config(materialized='ephemeral') }}
-- Occurrences the send_once syncs handed to a destination, one row per occurrence key: `sent` when a sync's
-- destination acknowledged it, else `pending` (written ahead by a run that may have delivered it before it died;
-- the next run re-sends it under the same idempotency key). handed_over_at is the acknowledgement's instant, or,
-- while pending, the start of the run that wrote it ahead. Ephemeral like the ledger it reads, so every build of
-- the models reading it sees the ledger as it is then.
with ledger as (
    select * from {{ ref('stg_tidings__message_ledger') }}
),

runs as (
    select * from {{ ref('stg_tidings__sync_runs') }}
),

entries as (
    select
        ledger.occurrence_key,
        ledger.sync_name,
        ledger.status,
        coalesce(ledger.sent_at, runs.started_at) as handed_over_at,
        row_number() over (
            partition by ledger.occurrence_key
            order by
                case when ledger.status = 'sent' then 0 else 1 end,
                coalesce(ledger.sent_at, runs.started_at),
                ledger.sync_name
        ) as entry_rank
    from ledger
    left join runs on runs.run_id = ledger.run_id
),

final as (
    select
        occurrence_key,
        sync_name,
        status,
        handed_over_at
    from entries
    where entry_rank = 1
)

select * from final
