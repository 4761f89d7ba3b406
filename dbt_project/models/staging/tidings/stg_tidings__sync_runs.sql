{{ config(materialized='ephemeral') }}
-- The run history of every sync, or no rows while no sync has run against this warehouse (see
-- stg_tidings__message_ledger for why this is ephemeral).
{%- set runs = load_relation(source('tidings', 'sync_runs')) if execute else none %}
{%- if runs is not none %}
with source as (
    select * from {{ source('tidings', 'sync_runs') }}
),

renamed as (
    select
        run_id,
        sync_name,
        status,
        dry_run,
        cast(started_at as {{ dbt.type_timestamp() }}) as started_at
    from source
)

select * from renamed
{%- else %}
select
    cast(null as {{ dbt.type_string() }}) as run_id,
    cast(null as {{ dbt.type_string() }}) as sync_name,
    cast(null as {{ dbt.type_string() }}) as status,
    cast(null as {{ dbt.type_boolean() }}) as dry_run,
    cast(null as {{ dbt.type_timestamp() }}) as started_at
where 1 = 0
{%- endif %}
