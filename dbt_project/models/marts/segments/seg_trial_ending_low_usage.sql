-- Trialing customers whose trial ends within `trial_ending_window_days` and who barely use the product.
with customers as (
    select * from {{ ref('dim_customers') }}
),

activity as (
    select * from {{ ref('customer_activity') }}
),

final as (
    select
        customers.customer_id,
        'email' as channel,
        customers.email,
        customers.first_name,
        customers.last_name,
        customers.plan_name,
        customers.trial_ends_at,
        {{ dbt.datediff(as_of_date(), 'cast(customers.trial_ends_at as date)', 'day') }} as trial_days_left,
        coalesce(activity.logins_30d, 0) as logins_30d,
        coalesce(activity.feature_uses_30d, 0) as feature_uses_30d
    from customers
    left join activity on activity.customer_id = customers.customer_id
    where customers.can_email
        and not customers.in_global_control_group
        and customers.subscription_status = 'trialing'
        and cast(customers.trial_ends_at as date) >= {{ as_of_date() }}
        and cast(customers.trial_ends_at as date)
            <= {{ dbt.dateadd('day', var('trial_ending_window_days'), as_of_date()) }}
        and coalesce(activity.logins_30d, 0) <= {{ var('low_usage_max_logins_30d') }}
)

select * from final
