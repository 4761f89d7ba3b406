with source as (
    select * from {{ source('product', 'events') }}
),

renamed as (
    select
        event_id,
        user_id as customer_id,
        cast("timestamp" as {{ dbt.type_timestamp() }}) as occurred_at,
        case event_name
            when 'Page Viewed' then 'page_view'
            when 'Logged In' then 'login'
            when 'Feature Used' then 'feature_use'
            when 'Product Added' then 'add_to_cart'
            when 'Checkout Started' then 'checkout_started'
            when 'Order Completed' then 'checkout_completed'
        end as event_type,
        -- the path without scheme, host, query string or fragment
        {{ tidings_regexp_extract('page_url', '^[a-z]+://[^/]+(/[^?#]*)') }} as page_path,
        nullif(lower(trim(content_topic)), '') as content_topic,
        nullif(lower(trim(feature_name)), '') as feature_name,
        nullif(upper(trim(product_sku)), '') as product_sku,
        cast(received_at as {{ dbt.type_timestamp() }}) as received_at,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
