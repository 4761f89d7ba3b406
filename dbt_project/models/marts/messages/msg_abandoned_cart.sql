-- Abandoned cart: items added to the cart in the `abandoned_cart_window_hours` before the as-of instant (midnight
-- starting the as-of day, when the data ends) with no checkout completed afterwards. One occurrence per customer
-- and cart (keyed by its latest addition).
{%- set window_start = dbt.dateadd('hour', -var('abandoned_cart_window_hours'), as_of_date()) %}
{%- set window_end = as_of_date() %}
with customers as (
    select * from {{ ref('dim_customers') }}
),

activity as (
    select * from {{ ref('customer_activity') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'abandoned_cart'
),

cart_additions as (
    select
        customer_id,
        count(*) as items_added,
        {{ dbt.listagg('distinct product_sku', "', '", 'order by product_sku') }} as cart_skus
    from {{ ref('fct_events') }}
    where event_type = 'add_to_cart'
        and occurred_at >= {{ window_start }}
        and occurred_at < {{ window_end }}
    group by customer_id
),

carts as (
    select
        customers.customer_id,
        customers.first_name,
        activity.last_add_to_cart_at,
        cart_additions.items_added,
        cart_additions.cart_skus
    from customers
    inner join activity on activity.customer_id = customers.customer_id
    inner join cart_additions on cart_additions.customer_id = customers.customer_id
    where activity.last_checkout_completed_at is null
        or activity.last_checkout_completed_at < activity.last_add_to_cart_at
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'carts.customer_id', "'|abandoned_cart|'", dbt.cast('carts.last_add_to_cart_at', dbt.type_string())
        ])) }} as occurrence_key,
        carts.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        carts.first_name,
        carts.last_add_to_cart_at,
        carts.items_added,
        carts.cart_skus,
        {{ json_payload(['first_name', 'last_add_to_cart_at', 'items_added', 'cart_skus']) }} as payload
    from carts
    cross join catalog
)

select * from final
