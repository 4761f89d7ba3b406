-- DESIGN.md: the global control group (dim_customers.in_global_control_group) gets no marketing, so that its
-- behaviour measures what marketing adds. No marketing audience and no marketing message in message_queue may hold
-- one of its customers; transactional messages still reach them. Lists and seeds that message nobody keep everyone:
-- an exclusion list must exclude them too, and a lookalike seed finds other people.
-- Every seg_* model must be in one of the two lists: compilation stops when one is missing.
{{ config(meta={'dagster': {'ref': {'name': 'message_queue'}}}) }}
{%- set marketing_audiences = [
    'seg_trial_ending_low_usage', 'seg_new_signups_not_activated', 'seg_inactive_users', 'seg_pricing_page_visitors',
    'seg_content_topic_readers', 'seg_abandoned_cart_24h', 'seg_renewal_due', 'seg_upsell_ready', 'seg_loyalty_tiers',
    'seg_advocates', 'seg_new_product_fit', 'seg_lapsed_high_value_direct_mail'
] %}
{%- set lists_kept_whole = ['seg_top_clv_lookalike', 'seg_existing_customers_suppression'] %}
{{- require_every_segment_listed(
    marketing_audiences + lists_kept_whole,
    "assert_global_control_group_gets_no_marketing does not know ",
    ": add it to `marketing_audiences` (and filter on `not in_global_control_group`) or, if it messages"
    ~ " nobody, to `lists_kept_whole` in tests/assert_global_control_group_gets_no_marketing.sql") }}

with recipients as (
    {%- for segment in marketing_audiences %}
    select '{{ segment }}' as source_model, customer_id from {{ ref(segment) }}
    union all
    {%- endfor %}
    select 'message_queue' as source_model, customer_id from {{ ref('message_queue') }}
    where message_kind = 'marketing'
)

select recipients.source_model, recipients.customer_id
from recipients
inner join {{ ref('dim_customers') }} as customers on customers.customer_id = recipients.customer_id
where customers.in_global_control_group
