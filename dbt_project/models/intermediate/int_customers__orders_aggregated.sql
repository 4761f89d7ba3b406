-- Lifetime order facts per customer, counting completed orders only (refunds and cancellations excluded).
with orders as (
    select * from {{ ref('stg_shop__orders') }}
    where status = 'completed' and ordered_at < {{ days_after_as_of(1) }}
),

aggregated as (
    select
        customer_id,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at,
        count(*) as lifetime_orders,
        sum(order_total) as lifetime_revenue
    from orders
    group by customer_id
)

select * from aggregated
