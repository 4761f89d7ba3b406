-- New product / feature introduction, only to customers it fits (customer_product_fit). Once per customer and product.
with customers as (
    select * from {{ ref('dim_customers') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'new_feature_intro'
),

fits as (
    select
        fit.customer_id,
        customers.first_name,
        fit.product_key,
        fit.product_name,
        fit.pitch,
        fit.fit_reason
    from {{ ref('customer_product_fit') }} as fit
    inner join customers on customers.customer_id = fit.customer_id
),

final as (
    select
        {{ dbt.hash(dbt.concat(['fits.customer_id', "'|new_feature_intro|'", 'fits.product_key'])) }}
            as occurrence_key,
        fits.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        fits.first_name,
        fits.product_key,
        fits.product_name,
        fits.pitch,
        fits.fit_reason,
        {{ json_payload(['first_name', 'product_name', 'pitch', 'fit_reason']) }} as payload
    from fits
    cross join catalog
)

select * from final
