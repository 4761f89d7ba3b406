-- Loyalty tier of every buyer (seed `loyalty_tiers`: the highest tier whose order and revenue minimums they meet)
-- and the next milestone with what is left to reach it. Shared by seg_loyalty_tiers and msg_loyalty_status.
with customers as (
    select * from {{ ref('dim_customers') }}
),

tiers as (
    select * from {{ ref('loyalty_tiers') }}
),

reached as (
    select
        customers.customer_id,
        customers.lifetime_orders,
        customers.lifetime_revenue,
        tiers.tier_name,
        tiers.tier_rank,
        tiers.perk,
        row_number() over (partition by customers.customer_id order by tiers.tier_rank desc) as rank_from_top
    from customers
    inner join tiers
        on customers.lifetime_orders >= tiers.min_lifetime_orders
        and customers.lifetime_revenue >= tiers.min_lifetime_revenue
),

final as (
    select
        reached.customer_id,
        reached.tier_name as loyalty_tier,
        reached.tier_rank as loyalty_tier_rank,
        reached.perk as loyalty_perk,
        reached.lifetime_orders,
        reached.lifetime_revenue,
        next_tier.tier_name as next_tier,
        greatest(next_tier.min_lifetime_orders - reached.lifetime_orders, 0) as orders_to_next_tier,
        cast(greatest(next_tier.min_lifetime_revenue - reached.lifetime_revenue, 0) as decimal(18, 2))
            as revenue_to_next_tier
    from reached
    left join tiers as next_tier on next_tier.tier_rank = reached.tier_rank + 1
    where reached.rank_from_top = 1
)

select * from final
