-- Upsell / expansion readiness (customer_upsell_signals), once per customer and month, with the signals that fired.
{%- set signal_month = dbt.date_trunc('month', as_of_date()) %}
with customers as (
    select * from {{ ref('dim_customers') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'upsell_expansion'
),

ready as (
    select
        signals.customer_id,
        customers.first_name,
        cast({{ signal_month }} as date) as signal_month,
        signals.plan_name,
        signals.next_plan_name,
        signals.feature_uses_30d,
        signals.monthly_feature_use_limit,
        signals.distinct_features_30d,
        signals.is_near_plan_limit,
        signals.is_team_growing,
        signals.is_feature_saturated
    from {{ ref('customer_upsell_signals') }} as signals
    inner join customers on customers.customer_id = signals.customer_id
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'ready.customer_id', "'|upsell_expansion|'", dbt.cast('ready.signal_month', dbt.type_string())
        ])) }} as occurrence_key,
        ready.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        ready.first_name,
        ready.signal_month,
        ready.plan_name,
        ready.next_plan_name,
        ready.feature_uses_30d,
        ready.monthly_feature_use_limit,
        ready.distinct_features_30d,
        ready.is_near_plan_limit,
        ready.is_team_growing,
        ready.is_feature_saturated,
        {{ json_payload([
            'first_name', 'plan_name', 'next_plan_name', 'feature_uses_30d', 'monthly_feature_use_limit',
            'distinct_features_30d', 'is_near_plan_limit', 'is_team_growing', 'is_feature_saturated'
        ]) }} as payload
    from ready
    cross join catalog
)

select * from final
