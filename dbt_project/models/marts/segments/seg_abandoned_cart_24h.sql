-- Added to cart in the `abandoned_cart_window_hours` before the as-of instant (midnight starting the as-of day,
-- when the data ends) and did not check out afterwards.
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
        activity.last_add_to_cart_at
    from customers
    inner join activity on activity.customer_id = customers.customer_id
    where customers.can_email
        and not customers.in_global_control_group
        and activity.last_add_to_cart_at
            >= {{ dbt.dateadd('hour', -var('abandoned_cart_window_hours'), as_of_date()) }}
        and activity.last_add_to_cart_at < {{ as_of_date() }}
        and (
            activity.last_checkout_completed_at is null
            or activity.last_checkout_completed_at < activity.last_add_to_cart_at
        )
)

select * from final
