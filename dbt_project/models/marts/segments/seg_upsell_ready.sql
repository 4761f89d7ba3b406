-- Active subscribers ready for an upgrade (customer_upsell_signals), for the email expansion programme.
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
        signals.plan_name,
        signals.next_plan_name,
        signals.feature_uses_30d,
        signals.monthly_feature_use_limit,
        signals.distinct_features_30d,
        signals.is_near_plan_limit,
        signals.is_team_growing,
        signals.is_feature_saturated
    from {{ ref('customer_upsell_signals') }} as signals
    inner join customers on customers.customer_id = signals.customer_id
    where customers.can_email
        and not customers.in_global_control_group
)

select * from final
