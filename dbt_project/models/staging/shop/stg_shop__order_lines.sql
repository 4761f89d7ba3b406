with source as (
    select * from {{ source('shop', 'order_lines') }}
),

renamed as (
    select
        order_line_id,
        order_id,
        upper(trim(product_sku)) as product_sku,
        product_name,
        cast(quantity as integer) as quantity,
        cast(unit_price as {{ dbt.type_numeric() }}) as unit_price,
        cast(quantity * unit_price as {{ dbt.type_numeric() }}) as line_total,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
