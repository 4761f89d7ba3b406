{{ config(materialized='ephemeral') }}
-- Acknowledgements of send_once runs not yet folded into the message ledger (a run still delivering, or one that
-- died), or no rows while no sync has run (see stg_tidings__message_ledger for why this is ephemeral).
{{ tidings_state_table('message_acks', [
    ('sync_name', dbt.type_string()),
    ('occurrence_key', dbt.type_string()),
    ('sent_at', dbt.type_timestamp()),
    ('run_id', dbt.type_string()),
]) }}
