-- Historic customer lifetime value, one row per customer:
--   clv = orders_per_year * average_order_value * expected_lifetime_years
-- orders_per_year annualizes lifetime orders over the years since the first order (floored at
-- `clv_min_observed_years` so a brand-new buyer is not extrapolated from a few days); expected_lifetime_years is
-- the var `clv_expected_lifetime_years`. Customers without orders have a CLV of 0.
with customers as (
    select * from {{ ref('dim_customers') }}
),

observed as (
    select
        customer_id,
        lifetime_orders,
        lifetime_revenue,
        greatest(
            {{ dbt.datediff('cast(first_order_at as date)', as_of_date(), 'day') }} / 365.25,
            {{ var('clv_min_observed_years') }}
        ) as observed_years
    from customers
),

final as (
    select
        customer_id,
        lifetime_orders,
        lifetime_revenue,
        cast(case when lifetime_orders > 0 then observed_years end as decimal(18, 4)) as observed_years,
        cast(case when lifetime_orders > 0 then lifetime_orders / observed_years else 0 end as decimal(18, 4))
            as orders_per_year,
        cast(case when lifetime_orders > 0 then lifetime_revenue / lifetime_orders else 0 end as decimal(18, 2))
            as average_order_value,
        {{ var('clv_expected_lifetime_years') }} as expected_lifetime_years,
        cast(
            case
                when lifetime_orders > 0
                    then (lifetime_orders / observed_years)
                    * (lifetime_revenue / lifetime_orders)
                    * {{ var('clv_expected_lifetime_years') }}
                else 0
            end as decimal(18, 2)
        ) as clv
    from observed
)

select * from final
