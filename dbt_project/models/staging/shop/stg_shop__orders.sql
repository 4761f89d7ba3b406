with source as (
    select * from {{ source('shop', 'orders') }}
),

renamed as (
    select
        order_id,
        customer_id,
        cast(created_at as {{ dbt.type_timestamp() }}) as ordered_at,
        case lower(trim(status))
            when 'complete' then 'completed'
            when 'canceled' then 'cancelled'
            else lower(trim(status))
        end as status,
        upper(currency) as currency,
        cast(total_amount as {{ dbt.type_numeric() }}) as order_total,
        cast(item_count as integer) as item_count,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
