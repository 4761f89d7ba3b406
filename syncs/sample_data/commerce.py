"""Shop orders and order lines. Repeat buyers order often, lapsed high-value customers ordered a lot, long ago."""

from __future__ import annotations

CATALOG_SQL = """
create or replace temp table sd_catalog as
select row_number() over (order by sku) as n, * from (values
    ('TPL-STARTER-PACK', 'Template starter pack', 19.00),
    ('TPL-PRO-PACK', 'Template pro pack', 49.00),
    ('ADDON-SMS-1K', 'SMS credits (1,000)', 25.00),
    ('ADDON-SMS-10K', 'SMS credits (10,000)', 199.00),
    ('ADDON-SEATS-5', 'Extra seats (5)', 75.00),
    ('TRAINING-LIVE', 'Live training session', 299.00),
    ('CONSULT-HOUR', 'Consulting hour', 180.00),
    ('MERCH-MUG', 'Tidings mug', 14.00),
    ('MERCH-HOODIE', 'Tidings hoodie', 59.00),
    ('DATA-ENRICH-1K', 'Data enrichment (1,000 rows)', 39.00),
    ('AUDIT-DELIVERABILITY', 'Deliverability audit', 450.00),
    ('WORKSHOP-ONSITE', 'On-site workshop', 1200.00)
) as c(sku, product_name, unit_price)
"""

# Orders per persona: how many, and how many days ago (window) they were placed.
ORDERS_SQL = """
create or replace temp table sd_orders as
with plan as (
    select p.id, p.customer_id, p.persona, p.signup_days_ago,
        case p.persona
            when 'repeat_buyer' then rint(p.id, 'n_orders', 3, 10)
            when 'lapsed_high_value' then rint(p.id, 'n_orders', 4, 10)
            when 'engaged' then rint(p.id, 'n_orders', 0, 4)
            when 'casual' then rint(p.id, 'n_orders', 0, 4)
            when 'heavy_user' then rint(p.id, 'n_orders', 0, 3)
            when 'usage_drop' then rint(p.id, 'n_orders', 0, 2)
            when 'payment_failed' then rint(p.id, 'n_orders', 0, 2)
            when 'churned' then rint(p.id, 'n_orders', 0, 3)
            else 0 end as n_orders,
        case p.persona when 'lapsed_high_value' then 200 when 'churned' then 95 else 0 end as lo_days,
        case p.persona when 'lapsed_high_value' then 700 when 'churned' then 400 when 'repeat_buyer' then 365
            else p.signup_days_ago end as hi_days
    from sd_people p
),
orders as (
    select id, customer_id, persona, lo_days, least(hi_days, signup_days_ago) as hi_days, unnest(range(n_orders)) as i
    from plan where n_orders > 0
)
select
    'ord_' || lpad(id::varchar, 7, '0') || '_' || lpad(i::varchar, 2, '0') as order_id,
    customer_id,
    days_before(lo_days + rnd2(id, i, 'order_at') * greatest(hi_days - lo_days, 0.5)) as created_at,
    case when rnd2(id, i, 'status') < 0.05 then 'refunded'
         when rnd2(id, i, 'status') < 0.07 then pick(['cancelled', 'canceled', 'CANCELLED'], id, 'cancel_spelling')
         else pick(['completed', 'completed', 'completed', 'complete', 'COMPLETED'], id, 'status_spelling')
    end as status,
    'USD' as currency,
    -- lines are generated from these two hidden columns and then dropped
    persona = 'lapsed_high_value' as premium,
    rint2(id, i, 'n_lines', 1, 4) as n_lines,
    sd_now() as _loaded_at
from orders
"""

ORDER_LINES_SQL = """
create or replace table raw.shop_order_lines as
with lines as (
    select order_id, premium, unnest(range(n_lines)) as line_number from sd_orders
),
picked as (
    select order_id, line_number,
        case when premium then rint2(hash(order_id), line_number, 'sku', 6, 12)
             else rint2(hash(order_id), line_number, 'sku', 1, 10) end as n,
        case when premium then rint2(hash(order_id), line_number, 'qty', 1, 3)
             else rint2(hash(order_id), line_number, 'qty', 1, 2) end as quantity
    from lines
)
select
    picked.order_id || '_' || (picked.line_number + 1)::varchar as order_line_id,
    picked.order_id,
    c.sku as product_sku,
    c.product_name,
    picked.quantity,
    c.unit_price::decimal(18, 2) as unit_price,
    sd_now() as _loaded_at
from picked join sd_catalog c using (n)
"""

ORDER_TOTALS_SQL = """
create or replace table raw.shop_orders as
select o.order_id, o.customer_id, o.created_at, o.status, o.currency,
       t.total_amount, t.item_count, o._loaded_at
from sd_orders o
join (
    select order_id, sum(quantity * unit_price)::decimal(18, 2) as total_amount, sum(quantity)::integer as item_count
    from raw.shop_order_lines group by order_id
) t using (order_id)
"""

STATEMENTS = (CATALOG_SQL, ORDERS_SQL, ORDER_LINES_SQL, ORDER_TOTALS_SQL)
