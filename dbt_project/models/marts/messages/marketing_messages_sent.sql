-- Marketing messages already sent, one row per message: what frequency caps count. Two sources:
--   tidings  deliveries of marketing sequences that a send_once sync handed over (the message ledger: `sent`, or
--            `pending`, which may have been delivered), with customer and channel from message_delivery_log;
--   esp      the ESP's `sent` events of messages Tidings did not hand over (campaigns sent from the ESP itself).
--            An ESP send to the same customer of the same sequence, from an hour before to a day after a Tidings
--            delivery, is that delivery reported back and is not counted twice. ESP sends named after a
--            transactional sequence of message_catalog do not count; every other ESP send is marketing.
with handed_over as (
    select * from {{ ref('int_messages__handed_over') }}
),

delivery_log as (
    select * from {{ ref('message_delivery_log') }}
),

esp_events as (
    select * from {{ ref('stg_esp__message_events') }}
),

transactional as (
    select message_name from {{ ref('message_catalog') }}
    where message_kind = 'transactional'
),

tidings_sends as (
    select
        handed_over.occurrence_key as message_id,
        delivery_log.customer_id,
        delivery_log.message_name,
        delivery_log.channel,
        handed_over.handed_over_at as sent_at,
        'tidings' as sent_by
    from handed_over
    inner join delivery_log on delivery_log.occurrence_key = handed_over.occurrence_key
    where delivery_log.message_kind = 'marketing'
        and handed_over.handed_over_at is not null
),

esp_sends as (
    select
        esp_events.message_id,
        esp_events.customer_id,
        esp_events.message_name,
        'email' as channel,
        min(esp_events.occurred_at) as sent_at
    from esp_events
    left join transactional on transactional.message_name = esp_events.message_name
    where esp_events.event_type = 'sent'
        and esp_events.customer_id is not null
        and transactional.message_name is null
    group by 1, 2, 3, 4
),

esp_only_sends as (
    select
        esp_sends.*,
        'esp' as sent_by
    from esp_sends
    left join tidings_sends as reported
        on reported.customer_id = esp_sends.customer_id
        and reported.message_name = esp_sends.message_name
        and reported.channel = esp_sends.channel
        and esp_sends.sent_at >= {{ dbt.dateadd('hour', -1, 'reported.sent_at') }}
        and esp_sends.sent_at < {{ dbt.dateadd('day', 1, 'reported.sent_at') }}
    where reported.message_id is null
),

final as (
    select * from tidings_sends
    union all
    select * from esp_only_sends
)

select * from final
