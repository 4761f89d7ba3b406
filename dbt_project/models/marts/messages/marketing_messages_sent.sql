-- Marketing messages the ESP already sent, one row per message: what frequency caps count. A message whose name
-- is a transactional sequence in message_catalog does not count; every other ESP send is marketing.
with esp_events as (
    select * from {{ ref('stg_esp__message_events') }}
),

transactional as (
    select message_name from {{ ref('message_catalog') }}
    where message_kind = 'transactional'
),

final as (
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
)

select * from final
