-- Billing and payment alerts (transactional, urgent: SMS where consented plus email with the details):
--   failed_payment  an open invoice whose latest payment attempt failed in the last `billing_alert_lookback_days`;
--                   once per invoice
--   card_expiring   a customer with a live subscription whose card on file (from the latest payment attempt)
--                   expires within `card_expiring_within_days`; once per card and expiry
with customers as (
    select * from {{ ref('dim_customers') }}
),

payments as (
    select * from {{ ref('stg_billing__payments') }}
),

invoices as (
    select * from {{ ref('stg_billing__invoices') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'billing_alert'
),

latest_invoice_attempts as (
    select
        payments.*,
        row_number() over (partition by payments.invoice_id order by payments.attempted_at desc) as attempt_recency
    from payments
),

failed_payments as (
    select
        invoices.customer_id,
        'failed_payment' as alert_type,
        invoices.invoice_id as alert_subject,
        cast(invoices.amount_due as decimal(18, 2)) as amount_due,
        attempts.failure_code,
        attempts.card_brand,
        attempts.card_last4,
        attempts.card_exp_month,
        attempts.card_exp_year,
        attempts.attempted_at as alert_at
    from invoices
    inner join latest_invoice_attempts as attempts
        on attempts.invoice_id = invoices.invoice_id
        and attempts.attempt_recency = 1
    where invoices.invoice_status = 'open'
        and attempts.payment_status = 'failed'
        and attempts.attempted_at >= {{ dbt.dateadd('day', -var('billing_alert_lookback_days'), as_of_date()) }}
),

cards_on_file as (
    select
        payments.*,
        row_number() over (partition by payments.customer_id order by payments.attempted_at desc) as card_recency
    from payments
),

expiring_cards as (
    select
        cards.customer_id,
        'card_expiring' as alert_type,
        {{ dbt.concat([
            'cards.card_last4', "'|'", dbt.cast('cards.card_exp_year', dbt.type_string()), "'-'",
            dbt.cast('cards.card_exp_month', dbt.type_string())
        ]) }} as alert_subject,
        cast(null as decimal(18, 2)) as amount_due,
        cast(null as {{ dbt.type_string() }}) as failure_code,
        cards.card_brand,
        cards.card_last4,
        cards.card_exp_month,
        cards.card_exp_year,
        cast({{ as_of_date() }} as timestamp) as alert_at
    from cards_on_file as cards
    inner join customers on customers.customer_id = cards.customer_id
    where cards.card_recency = 1
        and customers.subscription_status in ('trialing', 'active', 'past_due')
        and cards.card_expires_on >= {{ as_of_date() }}
        and cards.card_expires_on <= {{ dbt.dateadd('day', var('card_expiring_within_days'), as_of_date()) }}
),

alerts as (
    select * from failed_payments
    union all
    select * from expiring_cards
),

personalized as (
    select
        alerts.*,
        customers.first_name,
        customers.plan_name
    from alerts
    inner join customers on customers.customer_id = alerts.customer_id
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'personalized.customer_id', "'|billing_alert|'", 'personalized.alert_type', "'|'",
            'personalized.alert_subject'
        ])) }} as occurrence_key,
        personalized.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        personalized.alert_type,
        personalized.first_name,
        personalized.plan_name,
        personalized.amount_due,
        personalized.failure_code,
        personalized.card_brand,
        personalized.card_last4,
        personalized.card_exp_month,
        personalized.card_exp_year,
        personalized.alert_at,
        {{ json_payload([
            'alert_type', 'first_name', 'plan_name', 'amount_due', 'failure_code', 'card_brand', 'card_last4',
            'card_exp_month', 'card_exp_year'
        ]) }} as payload
    from personalized
    cross join catalog
)

select * from final
