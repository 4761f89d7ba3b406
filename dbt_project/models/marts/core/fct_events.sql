{{
    config(
        materialized='incremental',
        unique_key='event_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns'
    )
}}
-- One row per product/web event, classified by page. Incremental on occurred_at: each run re-reads the last
-- `events_lookback_days` before the newest loaded event so late-arriving events are picked up.
with events as (
    select * from {{ ref('stg_product__events') }}
    {% if is_incremental() %}
    where occurred_at > (
        select {{ dbt.dateadd('day', -1 * var('events_lookback_days'), 'max(occurred_at)') }} from {{ this }}
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
        product_sku
    from events
)

select * from classified
