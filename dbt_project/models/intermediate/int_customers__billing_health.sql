-- Billing signals per customer: the latest payment attempt, failed attempts on still-open invoices, and
-- the expiry date of the card last used.
with payments as (
    select * from {{ ref('stg_billing__payments') }}
    where attempted_at < {{ days_after_as_of(1) }}
),

invoices as (
    select * from {{ ref('stg_billing__invoices') }}
),

latest_payment as (
    select
        customer_id,
        payment_status as last_payment_status,
        failure_code as last_failure_code,
        attempted_at as last_payment_attempt_at,
        card_brand,
        card_last4,
        card_expires_on,
        row_number() over (partition by customer_id order by attempted_at desc, payment_id desc) as recency_rank
    from payments
),

open_failures as (
    select
        payments.customer_id,
        count(*) as failed_attempts_open,
        max(payments.attempted_at) as last_failed_payment_at
    from payments
    inner join invoices
        on payments.invoice_id = invoices.invoice_id
    where payments.payment_status = 'failed' and invoices.invoice_status = 'open'
    group by payments.customer_id
),

final as (
    select
        latest_payment.customer_id,
        latest_payment.last_payment_status,
        latest_payment.last_failure_code,
        latest_payment.last_payment_attempt_at,
        latest_payment.card_brand,
        latest_payment.card_last4,
        latest_payment.card_expires_on,
        coalesce(open_failures.failed_attempts_open, 0) as failed_attempts_open,
        open_failures.last_failed_payment_at
    from latest_payment
    left join open_failures on latest_payment.customer_id = open_failures.customer_id
    where latest_payment.recency_rank = 1
)

select * from final
