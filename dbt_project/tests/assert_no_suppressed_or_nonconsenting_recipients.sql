-- Invariant 1 (DESIGN.md): no globally suppressed or non-consenting customer appears in an audience row destined
-- for a channel (seg_*.channel) or in message_queue, and no email goes to an address that unsubscribed, bounced
-- or complained, whichever customer the suppression was recorded against (read from the suppressions
-- themselves, not from dim_customers). Returns the offending rows; any row fails the test.
-- Every seg_* model must be listed below: compilation stops when one is missing, so a new audience cannot skip it.
-- In Dagster the test is a blocking check on message_queue (a test reading several models needs its asset named).
{{ config(meta={'dagster': {'ref': {'name': 'message_queue'}}}) }}
{%- set segments = [
    'seg_trial_ending_low_usage', 'seg_new_signups_not_activated', 'seg_inactive_users', 'seg_pricing_page_visitors',
    'seg_content_topic_readers', 'seg_abandoned_cart_24h', 'seg_renewal_due', 'seg_upsell_ready', 'seg_loyalty_tiers',
    'seg_advocates', 'seg_new_product_fit', 'seg_lapsed_high_value_direct_mail', 'seg_top_clv_lookalike',
    'seg_existing_customers_suppression'
] %}
{{- require_every_segment_listed(
    segments,
    "assert_no_suppressed_or_nonconsenting_recipients does not check ",
    ": add it to `segments` in tests/assert_no_suppressed_or_nonconsenting_recipients.sql") }}

with recipients as (
    {%- for segment in segments %}
    select '{{ segment }}' as source_model, customer_id, channel from {{ ref(segment) }}
    union all
    {%- endfor %}
    select
        'message_queue' as source_model,
        customer_id,
        case channel when 'direct_mail' then 'mail' else channel end as channel
    from {{ ref('message_queue') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

violations as (
    select
        recipients.source_model,
        recipients.customer_id,
        recipients.channel,
        case
            when customers.customer_id is null then 'unknown customer'
            when customers.is_globally_suppressed then 'globally suppressed'
            else 'no consent or no valid identifier for the channel'
        end as violation
    from recipients
    left join customers on customers.customer_id = recipients.customer_id
    where customers.customer_id is null
        or customers.is_globally_suppressed
        or not coalesce(
            case recipients.channel
                when 'email' then customers.can_email
                when 'sms' then customers.can_sms
                when 'mail' then customers.can_mail
                when 'ads' then customers.can_ads
            end,
            false
        )
),

suppressed_addresses as (
    select distinct coalesce(suppressions.email_normalized, suppressed_customer.email_normalized) as email_normalized
    from {{ ref('stg_consent__suppressions') }} as suppressions
    left join {{ ref('stg_crm__customers') }} as suppressed_customer
        on suppressions.customer_id = suppressed_customer.customer_id
    where suppressions.suppression_reason in ('unsubscribed', 'hard_bounced', 'complained')
        and suppressions.suppressed_at < {{ days_after_as_of(1) }}
),

emailed_at_a_suppressed_address as (
    select recipients.source_model, recipients.customer_id, recipients.channel, 'email address suppressed' as violation
    from recipients
    inner join {{ ref('stg_crm__customers') }} as crm on crm.customer_id = recipients.customer_id
    inner join suppressed_addresses on suppressed_addresses.email_normalized = crm.email_normalized
    where recipients.channel = 'email'
        and not exists (
            select 1 from violations
            where violations.source_model = recipients.source_model
                and violations.customer_id = recipients.customer_id
                and violations.channel = 'email'
        )
)

select * from violations
union all
select * from emailed_at_a_suppressed_address
