{#-
    Occurrences the send_once syncs handed to a destination, one row per occurrence key (the body of
    int_messages__handed_over): `sent` when a sync's destination acknowledged it (in the ledger, or among the
    acknowledgements a run has not folded into it yet), else `pending`. `occurrence_keys`, a query of one column,
    keeps only those keys before the per-key pick: the ledger holds every message ever sent, and a model that looks
    up a few thousand keys should not rank 20M rows to find them (DuckDB does not push a join through the window).
-#}
{% macro tidings_handed_over(occurrence_keys=none) -%}
    {%- set wanted = "" if occurrence_keys is none else "where occurrence_key in (" ~ occurrence_keys ~ ")" -%}
    with ledger as (
        select sync_name, occurrence_key, status, sent_at, run_id
        from {{ ref('stg_tidings__message_ledger') }}
        {{ wanted }}
    ),

    acknowledged_not_folded as (
        select sync_name, occurrence_key, 'sent' as status, sent_at, run_id
        from {{ ref('stg_tidings__message_acks') }}
        {{ wanted }}
    ),

    entries_of_record as (
        select * from ledger
        union all
        select * from acknowledged_not_folded
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
    )

    select
        occurrence_key,
        sync_name,
        status,
        handed_over_at
    from entries
    where entry_rank = 1
{%- endmacro %}
