with source as (
    select * from {{ source('consent', 'suppressions') }}
),

renamed as (
    select
        suppression_id,
        customer_id,
        {{ normalize_email('email') }} as email_normalized,
        case reason
            when 'unsubscribe' then 'unsubscribed'
            when 'hard_bounce' then 'hard_bounced'
            when 'spam_complaint' then 'complained'
            when 'do_not_mail' then 'do_not_mail'
            when 'erasure_request' then 'erased'
        end as suppression_reason,
        source as suppression_source,
        cast(created_at as {{ dbt.type_timestamp() }}) as suppressed_at,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
