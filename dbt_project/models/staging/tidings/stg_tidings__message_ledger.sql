{{ config(materialized='ephemeral') }}
-- The message ledger of the send_once syncs, or no rows while no sync has run against this warehouse.
-- Ephemeral so the check for the table runs each time a model reading it is built, not once per view.
{{ tidings_state_table('message_ledger', [
    ('sync_name', dbt.type_string()),
    ('occurrence_key', dbt.type_string()),
    ('status', dbt.type_string()),
    ('sent_at', dbt.type_timestamp()),
    ('run_id', dbt.type_string()),
]) }}
