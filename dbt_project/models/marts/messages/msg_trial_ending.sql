-- Trial ending: every trialist whose trial ends within `trial_ending_window_days`, with their usage so far.
-- One occurrence per customer and trial end date.
with customers as (
    select * from {{ ref('dim_customers') }}
),

activity as (
    select * from {{ ref('customer_activity') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'trial_ending'
),

trials as (
    select
        customers.customer_id,
        customers.first_name,
        customers.plan_name,
        cast(customers.trial_ends_at as date) as trial_end_date,
        {{ dbt.datediff(as_of_date(), 'cast(customers.trial_ends_at as date)', 'day') }} as trial_days_left,
        coalesce(activity.logins_30d, 0) as logins_30d,
        coalesce(activity.feature_uses_30d, 0) as feature_uses_30d
    from customers
    left join activity on activity.customer_id = customers.customer_id
    where customers.subscription_status = 'trialing'
        and cast(customers.trial_ends_at as date) >= {{ as_of_date() }}
        and cast(customers.trial_ends_at as date)
            <= {{ dbt.dateadd('day', var('trial_ending_window_days'), as_of_date()) }}
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'trials.customer_id', "'|trial_ending|'", dbt.cast('trials.trial_end_date', dbt.type_string())
        ])) }} as occurrence_key,
        trials.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        trials.first_name,
        trials.plan_name,
        trials.trial_end_date,
        trials.trial_days_left,
        trials.logins_30d,
        trials.feature_uses_30d,
        {{ json_payload([
            'first_name', 'plan_name', 'trial_end_date', 'trial_days_left', 'logins_30d', 'feature_uses_30d'
        ]) }} as payload
    from trials
    cross join catalog
)

select * from final
