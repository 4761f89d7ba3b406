"""Subscriptions (trials, plans, renewals, cancellations), invoices and payment attempts with card details.

Modelled on a Stripe-like billing export: statuses trialing / active / past_due / canceled / incomplete_expired,
trial end and current period end dates, monthly or annual intervals, and payment attempts that fail with a
decline code. Card expiry dates put some cards inside the next two months.
"""

from __future__ import annotations

PLANS_SQL = """
create or replace temp table sd_plans as
select * from (values
    ('starter', 29.00, 290.00, 40),
    ('growth', 99.00, 990.00, 150),
    ('scale', 299.00, 2990.00, null)
) as p(plan_name, monthly_price, annual_price, monthly_feature_limit)
"""

SUBSCRIPTIONS_SQL = """
create or replace table raw.billing_subscriptions as
with subscribers as (
    select p.*,
        case when persona = 'heavy_user' then 'starter'
             else pick(['starter', 'starter', 'growth', 'growth', 'scale'], id, 'plan') end as plan_name,
        case when persona in ('trial_low_usage', 'trial_engaged') then 'month'
             when persona = 'payment_failed' then 'month'
             when rnd(id, 'interval') < 0.35 then 'year' else 'month' end as billing_interval,
        case persona
            when 'trial_low_usage' then 'trialing'
            when 'trial_engaged' then 'trialing'
            when 'payment_failed' then 'past_due'
            when 'churned' then case when rnd(id, 'churn_kind') < 0.6 then 'canceled' else 'incomplete_expired' end
            else 'active' end as status
    from sd_people p
    where persona in ('trial_low_usage', 'trial_engaged', 'engaged', 'usage_drop', 'heavy_user', 'payment_failed',
                      'churned')
       or (persona = 'repeat_buyer' and rnd(id, 'subscribes') < 0.5)
       or (persona = 'casual' and rnd(id, 'subscribes') < 0.4)
),
dated as (
    select *,
        days_before(signup_days_ago) as trial_start,
        days_before(signup_days_ago - 14) as trial_end,
        -- active periods: the next renewal falls uniformly inside the current interval
        case when status = 'past_due' then rint(id, 'renewal_in', 10, 22)
             when billing_interval = 'year' then rint(id, 'renewal_in', 1, 365)
             else rint(id, 'renewal_in', 1, 30) end as renews_in_days,
        rint(id, 'churned_ago', 90, greatest(signup_days_ago - 15, 91)) as churned_days_ago
    from subscribers
)
select
    'sub_' || lpad(id::varchar, 7, '0') as subscription_id,
    customer_id,
    plan_name,
    billing_interval,
    status,
    trial_start as trial_start_at,
    trial_end as trial_end_at,
    case when status in ('trialing', 'incomplete_expired') then null else trial_end end as started_at,
    case when status = 'trialing' then trial_start
         when status = 'incomplete_expired' then trial_start
         when status = 'canceled' then days_before(churned_days_ago + 30)
         else days_before(case when billing_interval = 'year' then 365 else 30 end - renews_in_days) end
        as current_period_start,
    case when status = 'trialing' then trial_end
         when status = 'incomplete_expired' then trial_end
         when status = 'canceled' then days_before(churned_days_ago)
         else sd_now() + to_days(renews_in_days::int) + to_seconds(floor(rnd(id, 'renew_time') * 86400)::bigint) end
        as current_period_end,
    status = 'active' and rnd(id, 'cancel_at_end') < 0.05 as cancel_at_period_end,
    case when status = 'canceled' then days_before(churned_days_ago + rnd(id, 'cancel_lead') * 20) end as canceled_at,
    case when status = 'incomplete_expired' then trial_end end as ended_at,
    pl.monthly_feature_limit,
    (case when billing_interval = 'year' then pl.annual_price else pl.monthly_price end)::decimal(18, 2) as price,
    'USD' as currency,
    sd_now() as _loaded_at
from dated join sd_plans pl using (plan_name)
"""

# One invoice per elapsed billing period (at most the last 6 monthly ones, or the last annual one).
INVOICES_SQL = """
create or replace table raw.billing_invoices as
with billable as (
    select s.*, hash(s.subscription_id) as k,
        case when billing_interval = 'year' then 1
             else least(6, greatest(1, floor(date_diff('day', started_at,
                                                      least(current_period_end, sd_now())) / 30)::bigint))
        end as n_invoices
    from raw.billing_subscriptions s
    where started_at is not null and started_at < sd_now()
),
periods as (
    select *, unnest(range(n_invoices)) as back from billable
)
select
    subscription_id || '_inv_' || lpad(back::varchar, 2, '0') as invoice_id,
    subscription_id,
    customer_id,
    price as amount_due,
    currency,
    current_period_start - to_days((back * case when billing_interval = 'year' then 365 else 30 end)::int) as issued_at,
    case when back = 0 and status = 'past_due' then 'open'
         when back = 0 and status = 'canceled' and rnd(k, 'final_unpaid') < 0.3 then 'uncollectible'
         else 'paid' end as status,
    sd_now() as _loaded_at
from periods
"""

PAYMENTS_SQL = """
create or replace table raw.billing_payments as
with cards as (
    select customer_id, hash(customer_id) as k,
        pick(['visa', 'mastercard', 'amex', 'discover'], hash(customer_id), 'brand') as card_brand,
        lpad(rint(hash(customer_id), 'last4', 0, 9999)::varchar, 4, '0') as card_last4,
        -- 8% of cards expire this month or next; the rest up to four years out
        case when rnd(hash(customer_id), 'expiring') < 0.08 then rint(hash(customer_id), 'exp_in', 0, 1)
             else rint(hash(customer_id), 'exp_in', 2, 48) end as expires_in_months
    from (select distinct customer_id from raw.billing_invoices)
),
attempts as (
    select i.*, c.card_brand, c.card_last4, c.expires_in_months,
        case when i.status = 'paid' then case when rnd(hash(i.invoice_id), 'retry') < 0.04 then 2 else 1 end
             else rint(hash(i.invoice_id), 'failed_attempts', 1, 3) end as n_attempts
    from raw.billing_invoices i join cards c using (customer_id)
),
exploded as (
    select *, unnest(range(n_attempts)) as attempt from attempts
)
select
    invoice_id || '_pay_' || (attempt + 1)::varchar as payment_id,
    invoice_id,
    customer_id,
    amount_due as amount,
    currency,
    -- retries come every three days; none is later than the generation instant
    least(issued_at + to_days((attempt * 3)::int)
              + to_seconds(3600 + floor(rnd2(hash(invoice_id), attempt, 'pay_time') * 7200)::bigint),
          sd_now() - to_seconds(60 * (n_attempts - attempt))) as attempted_at,
    case when status = 'paid' and attempt = n_attempts - 1 then 'succeeded' else 'failed' end as status,
    case when status = 'paid' and attempt = n_attempts - 1 then null
         else pick2(['card_declined', 'insufficient_funds', 'expired_card', 'processing_error'],
                    hash(invoice_id), attempt, 'failure') end as failure_code,
    card_brand,
    card_last4,
    month(sd_as_of() + to_months(expires_in_months::int))::integer as card_exp_month,
    year(sd_as_of() + to_months(expires_in_months::int))::integer as card_exp_year,
    sd_now() as _loaded_at
from exploded
"""

STATEMENTS = (PLANS_SQL, SUBSCRIPTIONS_SQL, INVOICES_SQL, PAYMENTS_SQL)
