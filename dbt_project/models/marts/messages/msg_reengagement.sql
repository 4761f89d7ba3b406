-- Non-usage re-engagement: customers who logged in during the last 90 days but not in the last
-- `reengagement_after_days`. One occurrence per inactivity episode (keyed by the date of the last login).
with activity as (
    select * from {{ ref('customer_activity') }}
),

customers as (
    select * from {{ ref('dim_customers') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'reengagement'
),

lapsed as (
    select
        activity.customer_id,
        customers.first_name,
        customers.plan_name,
        cast(activity.last_login_at as date) as last_login_date,
        {{ dbt.datediff('cast(activity.last_login_at as date)', as_of_date(), 'day') }} as days_since_last_login,
        activity.logins_90d
    from activity
    inner join customers on customers.customer_id = activity.customer_id
    where activity.logins_90d > 0
        and activity.last_login_at < {{ dbt.dateadd('day', -var('reengagement_after_days'), as_of_date()) }}
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'lapsed.customer_id', "'|reengagement|'", dbt.cast('lapsed.last_login_date', dbt.type_string())
        ])) }} as occurrence_key,
        lapsed.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        lapsed.first_name,
        lapsed.plan_name,
        lapsed.last_login_date,
        lapsed.days_since_last_login,
        {{ json_payload(['first_name', 'plan_name', 'last_login_date', 'days_since_last_login']) }} as payload
    from lapsed
    cross join catalog
)

select * from final
