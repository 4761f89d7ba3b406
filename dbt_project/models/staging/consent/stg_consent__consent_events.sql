with source as (
    select * from {{ source('consent', 'consent_events') }}
),

renamed as (
    select
        consent_event_id,
        customer_id,
        lower(channel) as channel,
        lower(action) as consent_action,
        source as consent_source,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as occurred_at,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
