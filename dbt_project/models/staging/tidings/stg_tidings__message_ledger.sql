{{ config(materialized='ephemeral') }}
-- The message ledger of the send_once syncs, or no rows while no sync has run against this warehouse.
-- Ephemeral so the check for the table runs each time a model reading it is built, not once per view.
{%- set ledger = load_relation(source('tidings', 'message_ledger')) if execute else none %}
{%- if ledger is not none %}
with source as (
    select * from {{ source('tidings', 'message_ledger') }}
),

renamed as (
    select
        sync_name,
        occurrence_key,
        status,
        cast(sent_at as {{ dbt.type_timestamp() }}) as sent_at,
        run_id
    from source
)

select * from renamed
{%- else %}
select
    cast(null as {{ dbt.type_string() }}) as sync_name,
    cast(null as {{ dbt.type_string() }}) as occurrence_key,
    cast(null as {{ dbt.type_string() }}) as status,
    cast(null as {{ dbt.type_timestamp() }}) as sent_at,
    cast(null as {{ dbt.type_string() }}) as run_id
where 1 = 0
{%- endif %}
