-- Expansion signals per active subscriber whose plan has a next tier (seed `plan_limits`): usage near the plan's
-- monthly limit (`upsell_plan_limit_share`), a growing team (logins up by `upsell_team_growth_ratio` month over
-- month), feature saturation (`upsell_feature_saturation_share` of the plan's features used). Only customers with
-- at least one signal. Shared by seg_upsell_ready and msg_upsell_expansion.
with customers as (
    select * from {{ ref('dim_customers') }}
),

activity as (
    select * from {{ ref('customer_activity') }}
),

plan_limits as (
    select * from {{ ref('plan_limits') }}
),

signals as (
    select
        customers.customer_id,
        customers.plan_name,
        plan_limits.next_plan_name,
        activity.feature_uses_30d,
        plan_limits.monthly_feature_use_limit,
        activity.distinct_features_30d,
        plan_limits.included_features,
        activity.logins_30d,
        activity.logins_prev_30d,
        activity.feature_uses_30d
            >= plan_limits.monthly_feature_use_limit * {{ var('upsell_plan_limit_share') }} as is_near_plan_limit,
        coalesce(activity.usage_trend >= {{ var('upsell_team_growth_ratio') }}, false) as is_team_growing,
        activity.distinct_features_30d
            >= plan_limits.included_features * {{ var('upsell_feature_saturation_share') }} as is_feature_saturated
    from customers
    inner join activity on activity.customer_id = customers.customer_id
    inner join plan_limits on plan_limits.plan_name = customers.plan_name
    where customers.subscription_status = 'active'
        and plan_limits.next_plan_name is not null
),

final as (
    select * from signals
    where is_near_plan_limit or is_team_growing or is_feature_saturated
)

select * from final
