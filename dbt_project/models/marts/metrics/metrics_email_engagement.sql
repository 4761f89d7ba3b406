-- Email engagement per day, week and month of sending (ESP message events), with opens counted as impressions:
--   engagement_rate     = engaged_emails (opened or clicked) / delivered_emails
--   click_rate          = clicked_emails / delivered_emails
--   email_cost          = sent_emails * `email_cost_per_send`
--   cost_per_impression = email_cost / impressions (open events)
{%- set grains = ['day', 'week', 'month'] %}
with events as (
    select * from {{ ref('stg_esp__message_events') }}
    where occurred_at < {{ as_of_date() }}
),

emails as (
    select
        message_id,
        min(case when event_type = 'sent' then occurred_at end) as sent_at,
        max(case when event_type = 'delivered' then 1 else 0 end) as is_delivered,
        max(case when event_type in ('opened', 'clicked') then 1 else 0 end) as is_engaged,
        max(case when event_type = 'clicked' then 1 else 0 end) as is_clicked,
        count(case when event_type = 'opened' then 1 end) as opens
    from events
    group by message_id
),

by_period as (
    {%- for grain in grains %}
    select
        '{{ grain }}' as period_grain,
        cast({{ dbt.date_trunc(grain, 'sent_at') }} as date) as period_start,
        count(*) as sent_emails,
        count(case when is_delivered = 1 then 1 end) as delivered_emails,
        count(case when is_engaged = 1 then 1 end) as engaged_emails,
        count(case when is_clicked = 1 then 1 end) as clicked_emails,
        cast(sum(opens) as bigint) as impressions
    from emails
    where sent_at is not null
    group by 1, 2
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select
        period_grain,
        period_start,
        sent_emails,
        delivered_emails,
        engaged_emails,
        clicked_emails,
        impressions,
        cast(engaged_emails * 1.0 / nullif(delivered_emails, 0) as decimal(18, 4)) as engagement_rate,
        cast(clicked_emails * 1.0 / nullif(delivered_emails, 0) as decimal(18, 4)) as click_rate,
        cast(sent_emails * {{ var('email_cost_per_send') }} as decimal(18, 4)) as email_cost,
        cast(sent_emails * {{ var('email_cost_per_send') }} / nullif(impressions, 0) as decimal(18, 6))
            as cost_per_impression
    from by_period
)

select * from final
