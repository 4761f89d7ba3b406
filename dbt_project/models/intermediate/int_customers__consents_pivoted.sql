-- One row per customer with current consent per channel: the latest consent event (as of the as-of date)
-- for the channel is an opt-in. No event means no consent.
with consent_events as (
    select * from {{ ref('stg_consent__consent_events') }}
    where occurred_at < {{ days_after_as_of(1) }}
),

latest_per_channel as (
    select
        customer_id,
        channel,
        consent_action,
        occurred_at,
        row_number() over (
            partition by customer_id, channel order by occurred_at desc, consent_event_id desc
        ) as recency_rank
    from consent_events
),

pivoted as (
    select
        customer_id,
        {% for channel in ['email', 'sms', 'direct_mail', 'ads'] -%}
        coalesce(max(case when channel = '{{ channel }}' then consent_action = 'opt_in' end), false)
            as consent_{{ channel }},
        max(case when channel = '{{ channel }}' then occurred_at end) as consent_{{ channel }}_changed_at
        {%- if not loop.last %},{% endif %}
        {% endfor %}
    from latest_per_channel
    where recency_rank = 1
    group by customer_id
)

select * from pivoted
