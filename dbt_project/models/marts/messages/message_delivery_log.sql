{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='fail'
    )
}}
-- Every message delivery ever considered (a due occurrence on one of its candidate channels): whose message it
-- was, which sequence and channel. Each build appends the deliveries not logged yet; rows are never rewritten
-- (full_refresh is disabled). The message ledger knows only delivery keys, so this log is how frequency caps
-- count a delivery Tidings made after its occurrence stopped being due (a cart checked out, an onboarding step
-- passed, a new week).
with candidates as (
    select * from {{ ref('message_candidates') }}
),

channel_options as (
    {{ message_channel_options('candidates') }}
),

deliveries as (
    select
        channel_options.delivery_key as occurrence_key,
        channel_options.occurrence_key as message_occurrence_key,
        channel_options.customer_id,
        channel_options.message_name,
        channel_options.message_kind,
        channel_options.channel,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S") }}' as {{ dbt.type_timestamp() }}) as logged_at
    from channel_options
),

final as (
    select deliveries.*
    from deliveries
    {%- if is_incremental() %}
    left join {{ this }} as logged on logged.occurrence_key = deliveries.occurrence_key
    where logged.occurrence_key is null
    {%- endif %}
)

select * from final
