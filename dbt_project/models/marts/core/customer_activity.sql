-- Product activity per customer relative to the as-of date; every CRM contact has a row (zeros when idle).
-- An N-day window is the N days ending with the as-of day, [as_of + 1 - N days, as_of + 1 day): the as-of day counts,
-- the future never does, and `logins_prev_30d` is the 30 days before `logins_30d`'s, so `usage_trend` compares equals.
with customers as (
    select customer_id from {{ ref('stg_crm__customers') }}
),

events as (
    select * from {{ ref('fct_events') }}
    where occurred_at < {{ days_after_as_of(1) }}
),

aggregated as (
    select
        customer_id,
        max(occurred_at) as last_seen_at,
        max(case when event_type = 'login' then occurred_at end) as last_login_at,
        {% for days in [7, 30, 90] -%}
        sum(case when event_type = 'login' and occurred_at >= {{ window_start(days) }} then 1 else 0 end)
            as logins_{{ days }}d,
        {% endfor -%}
        sum(case when event_type = 'login' and occurred_at >= {{ window_start(60) }}
                  and occurred_at < {{ window_start(30) }} then 1 else 0 end) as logins_prev_30d,
        sum(case when event_type = 'feature_use' and occurred_at >= {{ window_start(7) }} then 1 else 0 end)
            as feature_uses_7d,
        sum(case when event_type = 'feature_use' and occurred_at >= {{ window_start(30) }} then 1 else 0 end)
            as feature_uses_30d,
        count(distinct case when event_type = 'feature_use' and occurred_at >= {{ window_start(30) }}
                            then feature_name end) as distinct_features_30d,
        sum(case when page_category = 'pricing' and occurred_at >= {{ window_start(15) }} then 1 else 0 end)
            as pricing_views_15d,
        max(case when page_category = 'pricing' then occurred_at end) as last_pricing_view_at,
        max(case when event_type = 'add_to_cart' then occurred_at end) as last_add_to_cart_at,
        max(case when event_type = 'checkout_completed' then occurred_at end) as last_checkout_completed_at
    from events
    group by customer_id
),

final as (
    select
        customers.customer_id,
        aggregated.last_seen_at,
        aggregated.last_login_at,
        cast(coalesce(aggregated.logins_7d, 0) as integer) as logins_7d,
        cast(coalesce(aggregated.logins_30d, 0) as integer) as logins_30d,
        cast(coalesce(aggregated.logins_90d, 0) as integer) as logins_90d,
        cast(coalesce(aggregated.logins_prev_30d, 0) as integer) as logins_prev_30d,
        cast(coalesce(aggregated.feature_uses_7d, 0) as integer) as feature_uses_7d,
        cast(coalesce(aggregated.feature_uses_30d, 0) as integer) as feature_uses_30d,
        cast(coalesce(aggregated.distinct_features_30d, 0) as integer) as distinct_features_30d,
        cast(aggregated.logins_30d as {{ dbt.type_float() }}) / nullif(aggregated.logins_prev_30d, 0) as usage_trend,
        cast(coalesce(aggregated.pricing_views_15d, 0) as integer) as pricing_views_15d,
        aggregated.last_pricing_view_at,
        aggregated.last_add_to_cart_at,
        aggregated.last_checkout_completed_at
    from customers
    left join aggregated on customers.customer_id = aggregated.customer_id
)

select * from final
