with source as (
    select * from {{ source('billing', 'subscriptions') }}
),

renamed as (
    select
        subscription_id,
        customer_id,
        lower(plan_name) as plan_name,
        billing_interval,
        -- the billing system's 'incomplete_expired' is a trial that ended without a paid conversion
        case status when 'incomplete_expired' then 'expired' else status end as subscription_status,
        cast(trial_start_at as {{ dbt.type_timestamp() }}) as trial_started_at,
        cast(trial_end_at as {{ dbt.type_timestamp() }}) as trial_ends_at,
        cast(started_at as {{ dbt.type_timestamp() }}) as started_at,
        cast(current_period_start as {{ dbt.type_timestamp() }}) as current_period_start,
        cast(current_period_end as {{ dbt.type_timestamp() }}) as current_period_end,
        coalesce(cancel_at_period_end, false) as cancel_at_period_end,
        cast(canceled_at as {{ dbt.type_timestamp() }}) as canceled_at,
        cast(ended_at as {{ dbt.type_timestamp() }}) as ended_at,
        cast(monthly_feature_limit as integer) as monthly_feature_limit,
        cast(price as {{ dbt.type_numeric() }}) as price,
        upper(currency) as currency,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
