"""Paid acquisition spend per channel and day, and the ESP's message event log (sent → delivered → opened → clicked)."""

from __future__ import annotations

AD_SPEND_SQL = """
create or replace table raw.ad_spend as
with days as (
    select (sd_as_of() - to_days(d::int))::date as spend_date, d from range(1, 366) t(d)
),
campaigns as (
    select * from (values
        ('meta', 'prospecting_lookalike', 180.0), ('meta', 'retargeting_cart', 60.0),
        ('google', 'search_brand', 90.0), ('google', 'search_generic', 220.0),
        ('tiktok', 'awareness_video', 70.0), ('linkedin', 'b2b_decision_makers', 120.0)
    ) as c(channel, campaign_name, base_daily_spend)
),
rows as (
    select days.spend_date, campaigns.*, hash(campaigns.campaign_name, days.d) as k,
        -- spend scales with the size of the customer base so the economics stay plausible at any scale
        base_daily_spend * (sd_customers() / 1000.0) * (0.6 + 0.8 * rnd(hash(campaigns.campaign_name, days.d), 'spend'))
            as spend
    from days cross join campaigns
)
select
    spend_date,
    channel,
    campaign_name,
    round(spend, 2)::decimal(18, 2) as spend,
    floor(spend * (80 + 40 * rnd(k, 'cpm')))::bigint as impressions,
    floor(spend * (0.8 + 0.8 * rnd(k, 'cpc')))::bigint as clicks,
    floor(spend / (40 + 60 * rnd(k, 'cpa')))::bigint as conversions,
    'USD' as currency,
    sd_now() as _loaded_at
from rows
"""

ESP_MESSAGE_EVENTS_SQL = """
create or replace table raw.esp_message_events as
with sends as (
    select p.id, c.customer_id, c.email, unnest(range(rint(p.id, 'n_sends', 0, 4))) as s
    from sd_people p join raw.crm_customers c using (customer_id)
    where c.email like '%@%.%'
),
messages as (
    select *, hash(id, s) as k,
        pick2(['weekly_digest', 'product_update', 'black_friday_preview', 'onboarding_day_1', 'trial_ending_reminder',
               'winback_30'], id, s, 'message') as message_name,
        days_before(rnd2(id, s, 'sent_at') * 90) as sent_at
    from sends
),
funnel as (
    select *, rnd(k, 'bounce') < 0.03 as bounced, rnd(k, 'open') < 0.38 as opened, rnd(k, 'click') < 0.3 as clicked
    from messages
),
steps as (
    select *, 'sent' as event_type, 0 as seconds_after from funnel
    union all select *, 'bounced', 20 from funnel where bounced
    union all select *, 'delivered', 5 from funnel where not bounced
    union all select *, 'opened', 1800 + floor(rnd(k, 'open_at') * 86400)::bigint from funnel
        where not bounced and opened
    union all select *, 'clicked', 1900 + floor(rnd(k, 'open_at') * 86400)::bigint from funnel
        where not bounced and opened and clicked
)
select
    'esp_' || id::varchar || '_' || s::varchar || '_' || event_type as event_id,
    'msg_' || id::varchar || '_' || s::varchar as message_id,
    customer_id as external_id,
    email as recipient,
    message_name,
    message_name || '_' || strftime(sent_at, '%Y_%m') as campaign_name,
    event_type,
    least(sent_at + to_seconds(seconds_after), sd_now() - interval 1 second) as occurred_at,
    sd_now() as _loaded_at
from steps
"""

STATEMENTS = (AD_SPEND_SQL, ESP_MESSAGE_EVENTS_SQL)
