-- Buyers with their loyalty tier and next milestone (customer_loyalty_tiers), for the email loyalty programme.
with customers as (
    select * from {{ ref('dim_customers') }}
),

final as (
    select
        customers.customer_id,
        'email' as channel,
        customers.email,
        customers.first_name,
        customers.last_name,
        loyalty.loyalty_tier,
        loyalty.lifetime_orders,
        loyalty.lifetime_revenue,
        loyalty.next_tier,
        loyalty.orders_to_next_tier,
        loyalty.revenue_to_next_tier
    from {{ ref('customer_loyalty_tiers') }} as loyalty
    inner join customers on customers.customer_id = loyalty.customer_id
    where customers.can_email
        and not customers.in_global_control_group
)

select * from final
