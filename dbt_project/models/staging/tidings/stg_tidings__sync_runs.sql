{{ config(materialized='ephemeral') }}
-- The run history of every sync, or no rows while no sync has run against this warehouse (see
-- stg_tidings__message_ledger for why this is ephemeral).
{{ tidings_state_table('sync_runs', [
    ('run_id', dbt.type_string()),
    ('sync_name', dbt.type_string()),
    ('status', dbt.type_string()),
    ('dry_run', dbt.type_boolean()),
    ('started_at', dbt.type_timestamp()),
]) }}
