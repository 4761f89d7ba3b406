with source as (
    select * from {{ source('esp', 'message_events') }}
),

renamed as (
    select
        event_id,
        message_id,
        external_id as customer_id,
        {{ normalize_email('recipient') }} as recipient_email_normalized,
        message_name,
        campaign_name,
        event_type,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
