-- Suppressions matched to customers by id or, for rows the ESP keyed only by address, by normalized email,
-- then rolled up to one row per suppressed customer. suppression_reason keeps the strongest reason:
-- erased > complained > hard_bounced > unsubscribed. do_not_mail only blocks direct mail.
-- An unsubscribe, hard bounce or complaint is about an email address, also when it is recorded against a
-- customer: other customers with that address (a shared household address, an address that changed hands) are
-- not emailed at it either (is_email_address_suppressed), though their other channels stay open.
with suppressions as (
    select * from {{ ref('stg_consent__suppressions') }}
    where suppressed_at < {{ days_after_as_of(1) }}
),

customers as (
    select customer_id, email_normalized from {{ ref('stg_crm__customers') }}
),

-- Two equi-joins rather than one join on `id = id or (id is null and email = email)`: an OR condition
-- defeats hash joins (a nested loop over suppressions x customers). The branches are disjoint (the second only
-- takes suppressions without a customer_id), so the union matches exactly the rows the OR join matched.
matched_by_id as (
    select customers.customer_id, suppressions.suppression_reason, suppressions.suppressed_at
    from suppressions
    inner join customers on suppressions.customer_id = customers.customer_id
),

matched_by_email as (
    select customers.customer_id, suppressions.suppression_reason, suppressions.suppressed_at
    from suppressions
    inner join customers on suppressions.email_normalized = customers.email_normalized
    where suppressions.customer_id is null
),

-- The address a customer-keyed address-level suppression names: the row's own, else the customer's.
suppressed_addresses as (
    select distinct coalesce(suppressions.email_normalized, customers.email_normalized) as email_normalized
    from suppressions
    inner join customers on suppressions.customer_id = customers.customer_id
    where suppressions.suppression_reason in ('unsubscribed', 'hard_bounced', 'complained')
),

sharing_a_suppressed_address as (
    select customers.customer_id
    from suppressed_addresses
    inner join customers on suppressed_addresses.email_normalized = customers.email_normalized
),

matched as (
    select *, false as by_address_only from matched_by_id
    union all
    select *, false as by_address_only from matched_by_email
    union all
    select customer_id, null as suppression_reason, null as suppressed_at, true as by_address_only
    from sharing_a_suppressed_address
),

rolled_up as (
    select
        customer_id,
        max(case when suppression_reason = 'erased' then 1 else 0 end) = 1 as is_erased,
        max(case when suppression_reason = 'complained' then 1 else 0 end) = 1 as has_complained,
        max(case when suppression_reason = 'hard_bounced' then 1 else 0 end) = 1 as is_hard_bounced,
        max(case when suppression_reason = 'unsubscribed' then 1 else 0 end) = 1 as is_unsubscribed,
        max(case when suppression_reason = 'do_not_mail' then 1 else 0 end) = 1 as is_do_not_mail,
        {{ dbt.bool_or('by_address_only') }} as is_email_address_suppressed,
        min(suppressed_at) as first_suppressed_at
    from matched
    group by customer_id
),

final as (
    select
        *,
        case
            when is_erased then 'erased'
            when has_complained then 'complained'
            when is_hard_bounced then 'hard_bounced'
            when is_unsubscribed then 'unsubscribed'
        end as suppression_reason
    from rolled_up
)

select * from final
