"""Product and web events (Segment-style track calls), planned per persona and per behavioural trait.

Each plan row says "this customer emits between min_n and max_n events of this stream, between lo and hi days
ago"; the rows are then exploded set-wise. Traits cut across personas: content readers binge one topic,
pricing-page visitors who do not convert, and carts abandoned in the last day. Orders add their own
add-to-cart / checkout events so the funnel in events agrees with the shop.
"""

from __future__ import annotations

PERSONA_STREAMS_SQL = """
create or replace temp table sd_persona_streams as
select * from (values
    ('prospect', 'page_view', 1, 4, 0, 400), ('prospect', 'pricing_view', 0, 1, 0, 60),
    ('prospect', 'blog_read', 0, 3, 0, 120),
    ('new_unactivated', 'login', 0, 1, 0, 13), ('new_unactivated', 'page_view', 1, 4, 0, 13),
    ('trial_low_usage', 'login', 0, 2, 0, 13), ('trial_low_usage', 'feature_use', 0, 1, 0, 13),
    ('trial_low_usage', 'page_view', 1, 3, 0, 13), ('trial_low_usage', 'pricing_view', 0, 2, 0, 13),
    ('trial_engaged', 'login', 6, 15, 0, 13), ('trial_engaged', 'feature_use', 8, 25, 0, 13),
    ('trial_engaged', 'page_view', 2, 6, 0, 13), ('trial_engaged', 'pricing_view', 1, 3, 0, 13),
    ('engaged', 'login', 8, 20, 0, 90), ('engaged', 'feature_use', 5, 14, 0, 90),
    ('engaged', 'page_view', 1, 4, 0, 180), ('engaged', 'blog_read', 0, 3, 0, 180),
    ('engaged', 'pricing_view', 0, 1, 0, 180),
    ('usage_drop', 'login', 12, 24, 31, 90), ('usage_drop', 'login', 0, 2, 0, 30),
    ('usage_drop', 'feature_use', 6, 14, 31, 90), ('usage_drop', 'page_view', 1, 3, 0, 180),
    ('heavy_user', 'login', 15, 25, 0, 30), ('heavy_user', 'feature_use', 34, 40, 0, 29),
    ('heavy_user', 'page_view', 1, 3, 0, 90),
    ('payment_failed', 'login', 5, 15, 0, 60), ('payment_failed', 'feature_use', 3, 10, 0, 60),
    ('payment_failed', 'page_view', 1, 3, 0, 90),
    ('repeat_buyer', 'login', 3, 10, 0, 60), ('repeat_buyer', 'feature_use', 2, 8, 0, 60),
    ('repeat_buyer', 'page_view', 2, 5, 0, 365),
    ('lapsed_high_value', 'login', 0, 5, 200, 500), ('lapsed_high_value', 'page_view', 1, 4, 200, 600),
    ('churned', 'login', 4, 12, 95, 300), ('churned', 'feature_use', 2, 10, 95, 300),
    ('churned', 'page_view', 0, 2, 95, 400),
    ('casual', 'login', 2, 6, 0, 45), ('casual', 'feature_use', 0, 4, 0, 60),
    ('casual', 'page_view', 1, 3, 0, 365), ('casual', 'blog_read', 0, 2, 0, 365)
) as s(persona, stream, min_n, max_n, lo_days, hi_days)
"""

EVENT_PLAN_SQL = """
create or replace temp table sd_event_plan as
with persona_plan as (
    select p.id, s.stream, s.lo_days, s.hi_days, rint2(p.id, s.stream || s.lo_days::varchar, 'n', s.min_n, s.max_n) as n
    from sd_people p join sd_persona_streams s using (persona)
),
trait_plan as (
    select id, 'topic_read' as stream, 0 as lo_days, 60 as hi_days, rint(id, 'n_topic', 5, 12) as n
    from sd_people where rnd(id, 'content_reader') < 0.06
    union all
    select id, 'pricing_visit', 0, 14, rint(id, 'n_pricing', 2, 5)
    from sd_people
    where persona in ('prospect', 'new_unactivated', 'trial_low_usage', 'casual') and rnd(id, 'pricing_visitor') < 0.25
    union all
    select id, 'cart_abandon', 0, 0.9, 1
    from sd_people where persona <> 'prospect' and rnd(id, 'cart_abandoner') < 0.04
)
select plan.id, people.customer_id, people.favourite_topic, plan.stream, plan.lo_days,
    -- nobody acts before their CRM record exists
    least(plan.hi_days, people.created_days_ago) as hi_days, plan.n
from (select * from persona_plan union all select * from trait_plan) plan
join sd_people people using (id)
where plan.n > 0
"""

PRODUCT_EVENTS_SQL = """
create or replace table raw.product_events as
with exploded as (
    select id, customer_id, favourite_topic, stream, lo_days, hi_days, unnest(range(n)) as i from sd_event_plan
),
stream_events as (
    select
        'evt_' || id::varchar || '_' || stream || '_' || lo_days::varchar || '_' || i::varchar as event_id,
        customer_id,
        days_before(lo_days + rnd2(hash(id, stream, lo_days), i, 'at') * greatest(hi_days - lo_days, 0.01)) as ts,
        case stream
            when 'login' then 'Logged In'
            when 'feature_use' then 'Feature Used'
            when 'cart_abandon' then 'Product Added'
            else 'Page Viewed' end as event_name,
        case stream
            when 'page_view' then pick2(['/', '/product', '/features', '/docs/getting-started', '/docs/api', '/about',
                                         '/customers', '/integrations'], id, i, 'path')
            when 'pricing_view' then '/pricing'
            when 'pricing_visit' then '/pricing'
            when 'blog_read' then '/blog/'
                || pick2(['product-analytics', 'email-marketing', 'data-engineering', 'growth', 'customer-success'],
                         id, i, 'topic')
                || '/post-' || rint2(id, i, 'post', 1, 40)::varchar
            when 'topic_read' then '/blog/' || favourite_topic || '/post-' || rint2(id, i, 'post', 1, 40)::varchar
            when 'login' then '/app/login'
        end as page_path,
        case stream when 'feature_use'
            then pick2(['reports', 'automations', 'integrations', 'dashboards', 'exports', 'api', 'segments',
                        'ab_tests'], id, i, 'feature') end as feature_name,
        case stream when 'cart_abandon' then pick2(['TPL-STARTER-PACK', 'TPL-PRO-PACK', 'ADDON-SMS-1K', 'MERCH-HOODIE',
                                                     'TRAINING-LIVE'], id, i, 'sku') end as product_sku,
        rnd2(id, i, 'url_style') as url_draw
    from exploded
),
abandoned_checkouts as (
    select event_id || '_checkout' as event_id, customer_id, ts + interval 3 minute as ts,
           'Checkout Started' as event_name, '/checkout' as page_path, null as feature_name, product_sku, url_draw
    from stream_events where event_name = 'Product Added' and url_draw < 0.5
),
order_funnel as (
    select o.order_id || '_' || step.name as event_id, o.customer_id,
           o.created_at - to_seconds(step.seconds_before) as ts, step.event_name, step.page_path,
           null as feature_name, l.product_sku, rnd(hash(o.order_id), 'url_style') as url_draw
    from raw.shop_orders o
    join (select order_id, min(product_sku) as product_sku from raw.shop_order_lines group by order_id) l
        using (order_id)
    cross join (values ('cart', 'Product Added', '/cart', 600), ('checkout', 'Checkout Started', '/checkout', 240),
                       ('completed', 'Order Completed', '/checkout/complete', 0))
        as step(name, event_name, page_path, seconds_before)
),
all_events as (
    select * from stream_events union all select * from abandoned_checkouts union all select * from order_funnel
)
select
    event_id,
    customer_id as user_id,
    event_name,
    ts as "timestamp",
    case when page_path is null then null
         when url_draw < 0.15 then 'https://www.tidings.test' || page_path || '?utm_source=newsletter&utm_medium=email'
         when url_draw < 0.20 then 'https://www.tidings.test' || page_path || '#top'
         else 'https://www.tidings.test' || page_path end as page_url,
    case when page_path like '/blog/%' then split_part(page_path, '/', 3) end as content_topic,
    feature_name,
    product_sku,
    ts + to_seconds(1 + floor(url_draw * 20)::bigint) as received_at,
    sd_now() as _loaded_at
from all_events
"""

STATEMENTS = (PERSONA_STREAMS_SQL, EVENT_PLAN_SQL, PRODUCT_EVENTS_SQL)
