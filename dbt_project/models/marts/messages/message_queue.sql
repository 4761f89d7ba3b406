-- The deliveries to make now: message_decisions with decision = 'send', with the contact details of the chosen
-- channel and the personalization payload. What the send_once syncs read.
with decisions as (
    select * from {{ ref('message_decisions') }}
    where decision = 'send'
),

customers as (
    select * from {{ ref('dim_customers') }}
),

final as (
    select
        decisions.occurrence_key,
        decisions.message_occurrence_key,
        decisions.customer_id,
        decisions.message_name,
        decisions.message_kind,
        decisions.channel,
        decisions.priority,
        decisions.urgent,
        customers.email,
        customers.phone_e164,
        customers.first_name,
        customers.last_name,
        customers.address_line1,
        customers.address_line2,
        customers.city,
        customers.state,
        customers.postal_code,
        customers.country_code,
        decisions.payload,
        decisions.decision_at as queued_at
    from decisions
    inner join customers on customers.customer_id = decisions.customer_id
)

select * from final
