-- Customers whose login frequency dropped: regular users in the previous 30 days who now log in far less.
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
        activity.last_login_at,
        activity.logins_30d,
        activity.logins_prev_30d,
        activity.usage_trend
    from customers
    inner join activity on activity.customer_id = customers.customer_id
    where customers.can_email
        and not customers.in_global_control_group
        and activity.logins_prev_30d >= {{ var('inactive_min_prev_logins_30d') }}
        and activity.logins_30d <= activity.logins_prev_30d * {{ var('inactive_max_usage_trend') }}
)

select * from final
