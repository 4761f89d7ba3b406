-- Everything the lifecycle rules look at, one row per customer, so the rules themselves
-- (int_customers__lifecycle_evaluated) read a single input and can be unit-tested on it.
with customers as (
    select * from {{ ref('dim_customers') }}
),

crm as (
    select customer_id, created_at from {{ ref('stg_crm__customers') }}
),

activity as (
    select * from {{ ref('customer_activity') }}
),

subscriptions as (
    select * from {{ ref('int_customers__subscription_current') }}
),

billing as (
    select * from {{ ref('int_customers__billing_health') }}
),

referrals as (
    select * from {{ ref('int_customers__referrals_counted') }}
),

final as (
    select
        customers.customer_id,
        crm.created_at,
        customers.signup_at,
        customers.tenure_days,
        customers.lifetime_orders,
        customers.last_order_at,
        activity.last_login_at,
        case
            when activity.last_login_at is null then customers.last_order_at
            when customers.last_order_at is null then activity.last_login_at
            when activity.last_login_at > customers.last_order_at then activity.last_login_at
            else customers.last_order_at
        end as last_activity_at,
        activity.logins_30d,
        activity.logins_prev_30d,
        activity.usage_trend,
        activity.feature_uses_30d,
        coalesce(referrals.referrals, 0) as referrals,
        subscriptions.subscription_status,
        subscriptions.billing_interval,
        subscriptions.trial_started_at,
        subscriptions.started_at,
        subscriptions.current_period_end,
        coalesce(subscriptions.cancel_at_period_end, false) as cancel_at_period_end,
        subscriptions.canceled_at,
        subscriptions.ended_at,
        coalesce(billing.failed_attempts_open, 0) as failed_attempts_open,
        billing.last_failed_payment_at
    from customers
    inner join crm on customers.customer_id = crm.customer_id
    inner join activity on customers.customer_id = activity.customer_id
    left join subscriptions on customers.customer_id = subscriptions.customer_id
    left join billing on customers.customer_id = billing.customer_id
    left join referrals on customers.customer_id = referrals.customer_id
)

select * from final
