-- The lifecycle rules: each customer's stage on two tracks as of the as-of date, evaluated in the order of
-- seed lifecycle_stages (first matching rule wins), with thresholds from dbt vars. entered_on_estimate is
-- the best date the data gives for when the stage began (used for a customer's first recorded stage).
with signals as (
    select * from {{ ref('int_customers__lifecycle_signals') }}
),

measured as (
    select
        *,
        {{ dbt.datediff('last_activity_at', as_of_timestamp(), 'day') }} as days_since_activity,
        lifetime_orders >= {{ var('loyal_min_orders') }}
            or (subscription_status = 'active' and tenure_days >= {{ var('loyal_min_tenure_days') }}) as is_loyal
    from signals
),

staged as (
    select
        *,
        case
            when signup_at is null and lifetime_orders = 0 then 'prospect'
            when tenure_days < {{ var('onboarding_days') }}
                and feature_uses_30d < {{ var('activation_min_feature_uses') }} then 'onboarding'
            when subscription_status in ('canceled', 'expired')
                and coalesce(days_since_activity >= {{ var('at_risk_inactive_days') }}, true) then 'churned'
            when coalesce(days_since_activity >= {{ var('lapsed_after_days') }}, true) then 'lapsed'
            when days_since_activity >= {{ var('at_risk_inactive_days') }}
                or (logins_prev_30d >= {{ var('engaged_min_logins_30d') }}
                    and usage_trend <= {{ var('at_risk_usage_trend') }})
                or cancel_at_period_end then 'at_risk'
            when is_loyal and referrals >= {{ var('advocate_min_referrals') }} then 'advocate'
            when is_loyal then 'loyal'
            when logins_30d >= {{ var('engaged_min_logins_30d') }} then 'engaged'
            else 'active'
        end as lifecycle_stage,
        case
            when subscription_status = 'past_due'
                or (subscription_status = 'active' and failed_attempts_open > 0) then 'payment_failed'
            when subscription_status = 'trialing' then 'trial'
            when subscription_status = 'active' and billing_interval = 'year'
                and current_period_end < {{ days_after_as_of(var('renewal_due_days')) }} then 'renewal_due'
            when subscription_status = 'active' then 'paying'
            when subscription_status in ('canceled', 'expired') then 'expired'
        end as subscription_stage
    from measured
),

estimated as (
    select
        customer_id,
        lifecycle_stage,
        subscription_stage,
        days_since_activity,
        case lifecycle_stage
            when 'prospect' then cast(created_at as date)
            when 'onboarding' then cast(signup_at as date)
            when 'churned' then cast(coalesce(
                canceled_at, ended_at,
                {{ dbt.dateadd('day', var('at_risk_inactive_days'), 'last_activity_at') }}) as date)
            when 'lapsed' then cast({{ dbt.dateadd('day', var('lapsed_after_days'),
                                                   'coalesce(last_activity_at, signup_at, created_at)') }} as date)
            when 'at_risk' then cast(case when days_since_activity >= {{ var('at_risk_inactive_days') }}
                then {{ dbt.dateadd('day', var('at_risk_inactive_days'), 'last_activity_at') }} end as date)
        end as lifecycle_entered_on_estimate,
        case subscription_stage
            when 'trial' then cast(trial_started_at as date)
            when 'paying' then cast(started_at as date)
            when 'renewal_due' then cast({{ dbt.dateadd('day', -1 * var('renewal_due_days'), 'current_period_end') }}
                                         as date)
            when 'payment_failed' then cast(last_failed_payment_at as date)
            when 'expired' then cast(coalesce(canceled_at, ended_at) as date)
        end as subscription_entered_on_estimate
    from staged
),

final as (
    -- an estimate is never later than the as-of date; unknown means "first seen today"
    select
        customer_id,
        lifecycle_stage,
        subscription_stage,
        days_since_activity,
        case when lifecycle_entered_on_estimate is null or lifecycle_entered_on_estimate > {{ as_of_date() }}
             then {{ as_of_date() }} else lifecycle_entered_on_estimate end as lifecycle_entered_on_estimate,
        case when subscription_stage is null then null
             when subscription_entered_on_estimate is null or subscription_entered_on_estimate > {{ as_of_date() }}
             then {{ as_of_date() }} else subscription_entered_on_estimate end as subscription_entered_on_estimate
    from estimated
)

select * from final
