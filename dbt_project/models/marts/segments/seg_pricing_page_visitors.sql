-- Visited the pricing page in the last `pricing_view_window_days` days without converting since: ad retargeting.
with customers as (
    select * from {{ ref('dim_customers') }}
),

activity as (
    select * from {{ ref('customer_activity') }}
),

final as (
    select
        customers.customer_id,
        'ads' as channel,
        customers.email,
        customers.phone_e164,
        customers.first_name,
        customers.last_name,
        customers.postal_code,
        customers.country_code,
        activity.pricing_views_15d,
        activity.last_pricing_view_at
    from customers
    inner join activity on activity.customer_id = customers.customer_id
    where customers.can_ads
        and not customers.in_global_control_group
        and activity.last_pricing_view_at
            >= {{ window_start(var('pricing_view_window_days')) }}
        and (
            activity.last_checkout_completed_at is null
            or activity.last_checkout_completed_at < activity.last_pricing_view_at
        )
        and coalesce(customers.subscription_status, 'none') not in ('active', 'past_due')
)

select * from final
