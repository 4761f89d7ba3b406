-- Policy / terms change notice (transactional, plain language from seed `policy_changes`): every customer who
-- signed up before the change takes effect, from its announcement until its effective date. Once per policy.
with customers as (
    select * from {{ ref('dim_customers') }}
),

policies as (
    select * from {{ ref('policy_changes') }}
    where announced_on <= {{ as_of_date() }}
        and effective_on >= {{ as_of_date() }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'policy_change'
),

notices as (
    select
        customers.customer_id,
        customers.first_name,
        policies.policy_id,
        policies.policy_name,
        policies.effective_on,
        policies.plain_language_summary
    from customers
    cross join policies
    where customers.signup_date < policies.effective_on
),

final as (
    select
        {{ dbt.hash(dbt.concat(['notices.customer_id', "'|policy_change|'", 'notices.policy_id'])) }}
            as occurrence_key,
        notices.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        notices.first_name,
        notices.policy_id,
        notices.policy_name,
        notices.effective_on,
        notices.plain_language_summary,
        {{ json_payload(['first_name', 'policy_name', 'effective_on', 'plain_language_summary']) }} as payload
    from notices
    cross join catalog
)

select * from final
