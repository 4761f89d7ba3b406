"""Consent events per channel and the suppression list.

Consent arrives as an event log (opt_in / opt_out per channel, a few re-opt-ins), the way preference centres
and checkout forms record it. Suppressions come from the ESP (unsubscribes, hard bounces, spam complaints,
often keyed only by the email address as the ESP saw it), from support (do-not-mail) and from privacy
requests (erasure).
"""

from __future__ import annotations

CONSENT_EVENTS_SQL = """
create or replace table raw.consent_events as
with channels as (
    select * from (values ('email', 0.80), ('sms', 0.35), ('direct_mail', 0.50), ('ads', 0.65))
        as c(channel, opt_in_rate)
),
journeys as (
    select p.id, p.customer_id, p.persona, p.created_days_ago, c.channel,
        hash(p.id, c.channel) as k,
        -- lapsed high-value customers are the win-back mail audience: most of them accepted direct mail
        case when c.channel = 'direct_mail' and p.persona = 'lapsed_high_value' then 0.85 else c.opt_in_rate end as rate
    from sd_people p cross join channels c
),
opted_in as (
    select *, rnd(k, 'opt_out') < 0.08 as opts_out, rnd(k, 'reopt') < 0.02 as opts_back_in
    from journeys where rnd(k, 'opt_in') < rate
),
steps as (
    select *, 0 as step, 'opt_in' as action, created_days_ago - rnd(k, 'in_at') * least(created_days_ago, 3) as days_ago
    from opted_in
    union all
    select *, 1, 'opt_out', created_days_ago * rnd(k, 'out_at') * 0.9 from opted_in where opts_out
    union all
    select *, 2, 'opt_in', created_days_ago * rnd(k, 'out_at') * 0.9 * rnd(k, 'reopt_at') from opted_in
    where opts_out and opts_back_in
)
select
    'cev_' || id::varchar || '_' || channel || '_' || step::varchar as consent_event_id,
    customer_id,
    channel,
    action,
    case step when 0 then pick(['signup_form', 'checkout', 'import', 'event_badge_scan'], k, 'source')
              else 'preference_center' end as source,
    days_before(days_ago) as occurred_at,
    sd_now() as _loaded_at
from steps
"""

SUPPRESSIONS_SQL = """
create or replace table raw.suppressions as
with draws as (
    select c.customer_id, c.email, p.id, rnd(p.id, 'suppression') as draw, p.created_days_ago
    from raw.crm_customers c join sd_people p using (customer_id)
),
suppressed as (
    select *,
        case when draw < 0.040 then 'unsubscribe'
             when draw < 0.060 then 'hard_bounce'
             when draw < 0.065 then 'spam_complaint'
             when draw < 0.080 then 'do_not_mail'
             when draw < 0.085 then 'erasure_request' end as reason
    from draws where draw < 0.085
)
select
    'sup_' || id::varchar as suppression_id,
    -- the ESP often knows only the address it mailed
    case when reason in ('unsubscribe', 'hard_bounce', 'spam_complaint') and rnd(id, 'esp_keyed') < 0.3 then null
         else customer_id end as customer_id,
    case when reason in ('unsubscribe', 'hard_bounce', 'spam_complaint') then email end as email,
    reason,
    case when reason in ('unsubscribe', 'hard_bounce', 'spam_complaint') then 'esp'
         when reason = 'do_not_mail' then 'support' else 'privacy_request' end as source,
    days_before(rnd(id, 'suppressed_at') * least(created_days_ago, 365)) as created_at,
    sd_now() as _loaded_at
from suppressed
where reason not in ('unsubscribe', 'hard_bounce', 'spam_complaint') or email is not null
"""

STATEMENTS = (CONSENT_EVENTS_SQL, SUPPRESSIONS_SQL)
