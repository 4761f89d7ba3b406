-- Repeat buyers (at least `advocate_min_orders` completed orders) with no refund or cancellation in the last
-- year: the customers to ask for a review or a referral.
with customers as (
    select * from {{ ref('dim_customers') }}
),

recent_order_problems as (
    select
        customer_id,
        count(*) as problem_orders
    from {{ ref('fct_orders') }}
    where status in ('refunded', 'cancelled')
        and order_date > {{ dbt.dateadd('day', -365, as_of_date()) }}
    group by customer_id
),

final as (
    select
        customers.customer_id,
        'email' as channel,
        customers.email,
        customers.first_name,
        customers.last_name,
        customers.lifetime_orders,
        customers.lifetime_revenue,
        customers.last_order_at
    from customers
    left join recent_order_problems on recent_order_problems.customer_id = customers.customer_id
    where customers.can_email
        and not customers.in_global_control_group
        and customers.lifetime_orders >= {{ var('advocate_min_orders') }}
        and recent_order_problems.customer_id is null
)

select * from final
