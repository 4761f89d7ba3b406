-- Onboarding / first value: each new sign-up gets the latest step of `onboarding_steps` that is due, once per
-- step. Steps marked only_if_not_activated are skipped for customers who already used a feature.
with customers as (
    select * from {{ ref('dim_customers') }}
),

activity as (
    select * from {{ ref('customer_activity') }}
),

steps as (
    select * from {{ ref('onboarding_steps') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'onboarding'
),

new_customers as (
    select
        customers.customer_id,
        customers.first_name,
        {{ dbt.datediff('customers.signup_date', as_of_date(), 'day') }} as days_since_signup,
        coalesce(activity.feature_uses_30d, 0) > 0 as is_activated
    from customers
    left join activity on activity.customer_id = customers.customer_id
    where customers.signup_date <= {{ as_of_date() }}
),

due_steps as (
    select
        new_customers.*,
        steps.step_number,
        steps.step_name,
        steps.call_to_action,
        row_number() over (
            partition by new_customers.customer_id order by steps.days_after_signup desc
        ) as recency_rank
    from new_customers
    inner join steps
        on steps.days_after_signup <= new_customers.days_since_signup
        and (not steps.only_if_not_activated or not new_customers.is_activated)
    where new_customers.days_since_signup
        <= (select max(days_after_signup) from steps) + {{ var('onboarding_step_grace_days') }}
),

final as (
    select
        {{ dbt.hash(dbt.concat(['due_steps.customer_id', "'|onboarding|'", 'due_steps.step_name'])) }}
            as occurrence_key,
        due_steps.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        due_steps.first_name,
        due_steps.step_number,
        due_steps.step_name,
        due_steps.call_to_action,
        due_steps.days_since_signup,
        {{ json_payload(['first_name', 'step_name', 'call_to_action', 'days_since_signup']) }} as payload
    from due_steps
    cross join catalog
    where due_steps.recency_rank = 1
)

select * from final
