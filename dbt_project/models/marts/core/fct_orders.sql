-- One row per shop order. is_first_order marks each customer's earliest order, whatever its status.
with orders as (
    select * from {{ ref('stg_shop__orders') }}
),

sequenced as (
    select
        *,
        row_number() over (partition by customer_id order by ordered_at, order_id) = 1 as is_first_order
    from orders
),

final as (
    select
        order_id,
        customer_id,
        ordered_at,
        cast(ordered_at as date) as order_date,
        status,
        cast(order_total as decimal(18, 2)) as order_total,
        item_count,
        is_first_order
    from sequenced
)

select * from final
