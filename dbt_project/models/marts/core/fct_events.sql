{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}
-- One row per product/web event, classified by page. Incremental on arrival (received_at, the collector's clock;
-- occurred_at when it is missing): each run re-reads the last `events_lookback_days` of arrivals before the
-- newest loaded one. Not on occurred_at: an event that arrives days after it happened (an app offline for a
-- week) would fall behind the window for good, and one stamped in the future by a client's clock would move
-- the window past every real event to come. A table built before received_at existed is read by occurred_at once.
{%- set arrival = 'coalesce(received_at, occurred_at)' %}
with events as (
    select * from {{ ref('stg_product__events') }}
    {% if is_incremental() %}
    {%- set built_columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list %}
    {%- set loaded = arrival if 'received_at' in built_columns else 'occurred_at' %}
    where {{ arrival }} > (
        select {{ dbt.dateadd('day', -1 * var('events_lookback_days'), 'max(' ~ loaded ~ ')') }} from {{ this }}
    )
    {% endif %}
),

classified as (
    select
        event_id,
        customer_id,
        occurred_at,
        cast(occurred_at as date) as event_date,
        event_type,
        page_path,
        case
            when page_path is null then null
            when page_path like '/pricing%' then 'pricing'
            when page_path like '/blog/%' then 'blog'
            when page_path like '/product%' or page_path like '/features%' or page_path like '/integrations%'
                then 'product'
            when page_path like '/docs%' then 'docs'
            when page_path = '/' then 'home'
            else 'other'
        end as page_category,
        content_topic,
        feature_name,
        product_sku,
        received_at
    from events
)

select * from classified
