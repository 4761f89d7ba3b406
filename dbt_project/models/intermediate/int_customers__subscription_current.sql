-- The subscription that describes a customer now: a live one (trialing, active, past_due) wins over ended
-- ones; among equals, the most recently started.
with subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by customer_id
            order by
                case when subscription_status in ('trialing', 'active', 'past_due') then 0 else 1 end,
                coalesce(started_at, trial_started_at) desc,
                subscription_id desc
        ) as preference_rank
    from subscriptions
)

select
    customer_id,
    subscription_id,
    plan_name,
    billing_interval,
    subscription_status,
    trial_started_at,
    trial_ends_at,
    started_at,
    current_period_start,
    current_period_end,
    cancel_at_period_end,
    canceled_at,
    ended_at,
    monthly_feature_limit,
    price
from ranked
where preference_rank = 1
