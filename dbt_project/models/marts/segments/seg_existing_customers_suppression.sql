-- Everyone who already buys or subscribes: excluded from acquisition ad campaigns.
with customers as (
    select * from {{ ref('dim_customers') }}
),

final as (
    select
        customer_id,
        'ads' as channel,
        email,
        phone_e164,
        first_name,
        last_name,
        postal_code,
        country_code
    from customers
    where can_ads
        and (
            lifetime_orders > 0
            or subscription_status in ('trialing', 'active', 'past_due')
        )
)

select * from final
