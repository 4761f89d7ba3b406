-- Conversion rate per message sequence and month of sending. An attributable interaction is a click on the
-- message; it converts when the same customer completes an order within `conversion_window_days` after the click
-- and before the as-of date (a click in the window's last days may still convert in a later build).
--   conversion_rate = conversions / interactions   (null without interactions)
with events as (
    select * from {{ ref('stg_esp__message_events') }}
    where occurred_at < {{ as_of_date() }}
),

sends as (
    select message_id, customer_id, message_name, min(occurred_at) as sent_at
    from events
    where event_type = 'sent'
    group by 1, 2, 3
),

clicks as (
    select message_id, min(occurred_at) as clicked_at
    from events
    where event_type = 'clicked'
    group by message_id
),

orders as (
    select customer_id, ordered_at
    from {{ ref('fct_orders') }}
    where status = 'completed'
        and ordered_at < {{ as_of_timestamp() }}
),

interactions as (
    select
        sends.message_id,
        sends.message_name,
        cast({{ dbt.date_trunc('month', 'sends.sent_at') }} as date) as period_start,
        max(case when orders.ordered_at is not null then 1 else 0 end) as converted
    from sends
    inner join clicks on clicks.message_id = sends.message_id
    left join orders
        on orders.customer_id = sends.customer_id
        and orders.ordered_at >= clicks.clicked_at
        and orders.ordered_at < {{ dbt.dateadd('day', var('conversion_window_days'), 'clicks.clicked_at') }}
    group by 1, 2, 3
),

messages_sent as (
    select
        message_name,
        cast({{ dbt.date_trunc('month', 'sent_at') }} as date) as period_start,
        count(*) as sent_messages
    from sends
    group by 1, 2
),

final as (
    select
        'month' as period_grain,
        messages_sent.period_start,
        messages_sent.message_name,
        messages_sent.sent_messages,
        count(interactions.message_id) as interactions,
        count(case when interactions.converted = 1 then 1 end) as conversions,
        cast(
            count(case when interactions.converted = 1 then 1 end) * 1.0 / nullif(count(interactions.message_id), 0)
            as decimal(18, 4)
        ) as conversion_rate
    from messages_sent
    left join interactions
        on interactions.message_name = messages_sent.message_name
        and interactions.period_start = messages_sent.period_start
    group by 1, 2, 3, 4
)

select * from final
