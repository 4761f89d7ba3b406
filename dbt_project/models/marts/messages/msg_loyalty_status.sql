-- Loyalty / reward status: each buyer's tier and next milestone (customer_loyalty_tiers), once per month and tier.
{%- set status_month = dbt.date_trunc('month', as_of_date()) %}
with customers as (
    select * from {{ ref('dim_customers') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'loyalty_status'
),

statuses as (
    select
        loyalty.customer_id,
        customers.first_name,
        cast({{ status_month }} as date) as status_month,
        loyalty.loyalty_tier,
        loyalty.loyalty_perk,
        loyalty.next_tier,
        loyalty.orders_to_next_tier,
        loyalty.revenue_to_next_tier
    from {{ ref('customer_loyalty_tiers') }} as loyalty
    inner join customers on customers.customer_id = loyalty.customer_id
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'statuses.customer_id', "'|loyalty_status|'", 'statuses.loyalty_tier', "'|'",
            dbt.cast('statuses.status_month', dbt.type_string())
        ])) }} as occurrence_key,
        statuses.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        statuses.first_name,
        statuses.status_month,
        statuses.loyalty_tier,
        statuses.loyalty_perk,
        statuses.next_tier,
        statuses.orders_to_next_tier,
        statuses.revenue_to_next_tier,
        {{ json_payload([
            'first_name', 'loyalty_tier', 'loyalty_perk', 'next_tier', 'orders_to_next_tier', 'revenue_to_next_tier'
        ]) }} as payload
    from statuses
    cross join catalog
)

select * from final
