{{ config(materialized='ephemeral') }}
-- Occurrences the send_once syncs handed to a destination, one row per occurrence key: `sent` when a sync's
-- destination acknowledged it (in the ledger, or among the acknowledgements a run has not folded into it yet),
-- else `pending` (written ahead by a run that may have delivered it before it died; the next run re-sends it
-- under the same idempotency key). handed_over_at is the acknowledgement's instant, or, while pending, the start
-- of the run that wrote it ahead. Ephemeral like the ledger it reads, so every build of the models reading it
-- sees the ledger as it is then.
with ledger as (
    select * from {{ ref('stg_tidings__message_ledger') }}
),

acknowledged_not_folded as (
    select
        sync_name,
        occurrence_key,
        'sent' as status,
        sent_at,
        run_id
    from {{ ref('stg_tidings__message_acks') }}
),

entries_of_record as (
    select sync_name, occurrence_key, status, sent_at, run_id from ledger
    union all
    select sync_name, occurrence_key, status, sent_at, run_id from acknowledged_not_folded
),

runs as (
    select * from {{ ref('stg_tidings__sync_runs') }}
),

entries as (
    select
        recorded.occurrence_key,
        recorded.sync_name,
        recorded.status,
        coalesce(recorded.sent_at, runs.started_at) as handed_over_at,
        row_number() over (
            partition by recorded.occurrence_key
            order by
                case when recorded.status = 'sent' then 0 else 1 end,
                coalesce(recorded.sent_at, runs.started_at),
                recorded.sync_name
        ) as entry_rank
    from entries_of_record as recorded
    left join runs on runs.run_id = recorded.run_id
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
