-- Core commerce KPIs per day, week and month (period_grain), from the earliest activity (at most
-- `metrics_history_days` back) up to the day before the as-of date, from facts before the as-of date only (the
-- period holding that day is partial, as it would have been on the day):
--   new_customers          customers whose sign-up date falls in the period
--   ad_spend               paid acquisition spend in the period
--   cac                    ad_spend / new_customers
--   orders, revenue        completed orders and their total
--   aov                    revenue / orders
--   purchasing_customers   distinct customers with a completed order
--   transaction_frequency  orders / purchasing_customers
-- Ratios are null when their denominator is 0.
{%- set grains = ['day', 'week', 'month'] %}
with days as (
    select
        cast({{ dbt.dateadd('day', '-generated_number', as_of_date()) }} as date) as date_day
    from ({{ dbt.generate_series(var('metrics_history_days')) }}) as series
),

orders as (
    select customer_id, order_date, order_total
    from {{ ref('fct_orders') }}
    where status = 'completed'
        and order_date < {{ as_of_date() }}
),

signups as (
    select customer_id, signup_date
    from {{ ref('dim_customers') }}
    where signup_date < {{ as_of_date() }}
),

spend as (
    select spend_date, spend
    from {{ ref('stg_ads__ad_spend') }}
    where spend_date < {{ as_of_date() }}
),

first_activity as (
    select min(activity_date) as first_date
    from (
        select min(order_date) as activity_date from orders
        union all
        select min(signup_date) from signups
        union all
        select min(spend_date) from spend
    ) as starts
),

periods as (
    {%- for grain in grains %}
    select distinct
        '{{ grain }}' as period_grain,
        cast({{ dbt.date_trunc(grain, 'days.date_day') }} as date) as period_start
    from days
    cross join first_activity
    where days.date_day >= first_activity.first_date
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

order_totals as (
    {%- for grain in grains %}
    select
        '{{ grain }}' as period_grain,
        cast({{ dbt.date_trunc(grain, 'order_date') }} as date) as period_start,
        count(*) as orders,
        sum(order_total) as revenue,
        count(distinct customer_id) as purchasing_customers
    from orders
    group by 1, 2
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

signup_totals as (
    {%- for grain in grains %}
    select
        '{{ grain }}' as period_grain,
        cast({{ dbt.date_trunc(grain, 'signup_date') }} as date) as period_start,
        count(*) as new_customers
    from signups
    group by 1, 2
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

spend_totals as (
    {%- for grain in grains %}
    select
        '{{ grain }}' as period_grain,
        cast({{ dbt.date_trunc(grain, 'spend_date') }} as date) as period_start,
        sum(spend) as ad_spend
    from spend
    group by 1, 2
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select
        periods.period_grain,
        periods.period_start,
        coalesce(signup_totals.new_customers, 0) as new_customers,
        cast(coalesce(spend_totals.ad_spend, 0) as decimal(18, 2)) as ad_spend,
        cast(spend_totals.ad_spend / nullif(signup_totals.new_customers, 0) as decimal(18, 2)) as cac,
        coalesce(order_totals.orders, 0) as orders,
        cast(coalesce(order_totals.revenue, 0) as decimal(18, 2)) as revenue,
        cast(order_totals.revenue / nullif(order_totals.orders, 0) as decimal(18, 2)) as aov,
        coalesce(order_totals.purchasing_customers, 0) as purchasing_customers,
        cast(order_totals.orders * 1.0 / nullif(order_totals.purchasing_customers, 0) as decimal(18, 4))
            as transaction_frequency
    from periods
    left join order_totals
        on order_totals.period_grain = periods.period_grain
        and order_totals.period_start = periods.period_start
    left join signup_totals
        on signup_totals.period_grain = periods.period_grain
        and signup_totals.period_start = periods.period_start
    left join spend_totals
        on spend_totals.period_grain = periods.period_grain
        and spend_totals.period_start = periods.period_start
)

select * from final
