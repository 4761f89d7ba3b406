-- Monthly usage and value summary for subscribers, with the real figures of the last complete calendar month
-- (logins, feature uses, distinct features, most used feature). One occurrence per customer and month.
{%- set month_start = dbt.dateadd('month', -1, dbt.date_trunc('month', as_of_date())) %}
{%- set month_end = dbt.date_trunc('month', as_of_date()) %}
with customers as (
    select * from {{ ref('dim_customers') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'usage_summary'
),

month_events as (
    select * from {{ ref('fct_events') }}
    where event_date >= {{ month_start }}
        and event_date < {{ month_end }}
        and event_type in ('login', 'feature_use')
),

feature_ranking as (
    select
        customer_id,
        feature_name,
        row_number() over (partition by customer_id order by count(*) desc, feature_name) as feature_rank
    from month_events
    where event_type = 'feature_use'
        and feature_name is not null
    group by customer_id, feature_name
),

usage as (
    select
        customer_id,
        count(case when event_type = 'login' then 1 end) as logins,
        count(case when event_type = 'feature_use' then 1 end) as feature_uses,
        count(distinct case when event_type = 'feature_use' then feature_name end) as distinct_features,
        count(distinct event_date) as active_days
    from month_events
    group by customer_id
),

summaries as (
    select
        customers.customer_id,
        customers.first_name,
        customers.plan_name,
        cast({{ month_start }} as date) as summary_month,
        usage.logins,
        usage.feature_uses,
        usage.distinct_features,
        usage.active_days,
        feature_ranking.feature_name as top_feature
    from customers
    inner join usage on usage.customer_id = customers.customer_id
    left join feature_ranking
        on feature_ranking.customer_id = customers.customer_id
        and feature_ranking.feature_rank = 1
    where customers.subscription_status in ('trialing', 'active', 'past_due')
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'summaries.customer_id', "'|usage_summary|'", dbt.cast('summaries.summary_month', dbt.type_string())
        ])) }} as occurrence_key,
        summaries.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        summaries.first_name,
        summaries.plan_name,
        summaries.summary_month,
        summaries.logins,
        summaries.feature_uses,
        summaries.distinct_features,
        summaries.active_days,
        summaries.top_feature,
        {{ json_payload([
            'first_name', 'plan_name', 'summary_month', 'logins', 'feature_uses', 'distinct_features',
            'active_days', 'top_feature'
        ]) }} as payload
    from summaries
    cross join catalog
)

select * from final
