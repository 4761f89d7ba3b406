-- Recent sign-ups (within `activation_window_days`) who have not used a single feature yet.
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
        customers.signup_date,
        {{ dbt.datediff('customers.signup_date', as_of_date(), 'day') }} as days_since_signup,
        coalesce(activity.logins_30d, 0) as logins_30d
    from customers
    left join activity on activity.customer_id = customers.customer_id
    where customers.can_email
        and not customers.in_global_control_group
        and customers.signup_date > {{ dbt.dateadd('day', -var('activation_window_days'), as_of_date()) }}
        and customers.signup_date <= {{ as_of_date() }}
        and coalesce(activity.feature_uses_30d, 0) = 0
)

select * from final
