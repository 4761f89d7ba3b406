-- Contact-policy arbitration: one row per candidate delivery (a due message occurrence on one channel) with the
-- decision and its reason. Rules, in order (the first that applies decides):
--   0. already_sent  a send_once sync already delivered it (acknowledged in the message ledger): never twice;
--                    for a non-urgent message, a delivery on any of its channels, or a pending one on another
--   1. suppressed    globally suppressed customer (erased, complained, hard bounced, unsubscribed)
--   2. no_consent    no consent or no valid identifier for the channel (dim_customers.can_<channel>)
--   3. holdout       marketing only: the customer is in the global control group (`global_control_group_pct`) or
--                    in the sequence's holdout (message_catalog.holdout_pct), both stable md5 buckets
--   4. quiet_hours   SMS inside the customer's local quiet hours (`sms_quiet_hours_start` to `sms_quiet_hours_end`).
--                    Without a time zone of their own, quiet hours in any zone of their country (seed
--                    country_time_zones) hold the SMS, and caps count days in the country's main zone; a country
--                    not in the seed uses `message_fallback_timezone`.
--   5. capped        marketing only: the customer already got `message_daily_cap_per_channel` marketing messages on
--                    this channel this local calendar day, or `message_weekly_cap_per_channel` in the last 7 local days
--                    (marketing_messages_sent: Tidings' own deliveries, sent or pending, and the ESP's own sends)
--   6. outranked     marketing only: higher-priority marketing messages (message_catalog.priority, lower wins) took
--                    the remaining slots under the caps
-- Transactional messages are exempt from holdouts and caps and do not use up marketing slots. A delivery an
-- earlier run wrote ahead but did not see acknowledged (ledger `pending`) already holds its slot: it is screened
-- again (an opt-out since still stops it) but not capped or outranked, so the sync can finish it.
-- Channel choice: urgent messages go to every consented candidate channel (SMS for urgency, email for context);
-- other messages go to the first consented channel of channel_candidates (earlier unconsented ones are logged as
-- no_consent). occurrence_key identifies the delivery: md5(message occurrence_key | channel).
{%- set decision_at = var('message_decision_at') %}
{%- set run_started = "cast('" ~ run_started_at.strftime('%Y-%m-%d %H:%M:%S') ~ "' as timestamp)" %}
with candidates as (
    select * from {{ ref('message_candidates') }}
),

country_time_zones as (
    select * from {{ ref('country_time_zones') }}
),

-- Caps and quiet hours need a local clock: a customer without a time zone gets their country's main zone
-- (quiet hours then also look at the country's other zones, see country_quiet_hours).
customers as (
    select
        dim_customers.*,
        coalesce(
            dim_customers.timezone, main_zones.time_zone, '{{ var("message_fallback_timezone") }}'
        ) as contact_timezone,
        case when dim_customers.timezone is null then main_zones.country_code end as zone_guessed_for_country
    from {{ ref('dim_customers') }} as dim_customers
    left join country_time_zones as main_zones
        on main_zones.country_code = dim_customers.country_code
        and main_zones.is_main
),

catalog as (
    select * from {{ ref('message_catalog') }}
),

-- The instant the queue is decided for: the var when given; otherwise now, unless the build replays a past as-of
-- date, then noon UTC of that day.
decision_time as (
    select
        {%- if decision_at %}
        cast('{{ decision_at }}' as timestamp) as decision_at
        {%- else %}
        case
            when cast({{ run_started }} as date) = {{ as_of_date() }} then {{ run_started }}
            else {{ dbt.dateadd('hour', 12, as_of_date()) }}
        end as decision_at
        {%- endif %}
),

{%- set quiet_hour_condition -%}
    {%- if var('sms_quiet_hours_start') > var('sms_quiet_hours_end') -%}
    (extract(hour from local_decision_at) >= {{ var('sms_quiet_hours_start') }}
        or extract(hour from local_decision_at) < {{ var('sms_quiet_hours_end') }})
    {%- else -%}
    (extract(hour from local_decision_at) >= {{ var('sms_quiet_hours_start') }}
        and extract(hour from local_decision_at) < {{ var('sms_quiet_hours_end') }})
    {%- endif -%}
{%- endset %}

-- The decision instant on the wall clock of each time zone: one conversion per zone, not one per delivery.
local_decision_times as (
    select
        contact_timezone,
        local_decision_at,
        {{ quiet_hour_condition }} as is_quiet_hour
    from (
        select
            zones.contact_timezone,
            {{ to_local_timestamp('decision_time.decision_at', 'zones.contact_timezone') }} as local_decision_at
        from (
            select contact_timezone from customers
            union
            select time_zone from country_time_zones
        ) as zones
        cross join decision_time
    ) as converted
),

-- For customers without a time zone: is it quiet hours in any zone of their country?
country_quiet_hours as (
    select
        country_time_zones.country_code,
        {{ dbt.bool_or('local_decision_times.is_quiet_hour') }} as is_quiet_hour_somewhere
    from country_time_zones
    inner join local_decision_times on local_decision_times.contact_timezone = country_time_zones.time_zone
    group by country_time_zones.country_code
),

channel_options as (
    {{ message_channel_options('candidates') }}
),

-- Hand-overs of these deliveries only (int_messages__handed_over, restricted before it ranks the whole ledger).
handed_over as (
    {{ tidings_handed_over(occurrence_keys='select delivery_key from channel_options') }}
),

deliveries as (
    select
        channel_options.delivery_key as occurrence_key,
        channel_options.occurrence_key as message_occurrence_key,
        channel_options.customer_id,
        channel_options.message_name,
        channel_options.message_kind,
        channel_options.priority,
        channel_options.urgent,
        channel_options.channel,
        channel_options.channel_position,
        channel_options.payload,
        customers.contact_timezone,
        customers.zone_guessed_for_country,
        customers.is_globally_suppressed,
        customers.suppression_reason,
        case channel_options.channel
            when 'email' then customers.can_email
            when 'sms' then customers.can_sms
            when 'direct_mail' then customers.can_mail
            else false
        end as has_consent,
        {{ in_global_control_group('channel_options.customer_id') }} as in_global_control_group,
        {{ hash_bucket(dbt.concat(['channel_options.message_name', "'|'", 'channel_options.customer_id'])) }}
            as sequence_bucket,
        catalog.holdout_pct,
        handed_over.status as handover_status,
        handed_over.sync_name as handed_over_by,
        decision_time.decision_at,
        local_decision_times.local_decision_at,
        coalesce(country_quiet_hours.is_quiet_hour_somewhere, local_decision_times.is_quiet_hour) as is_quiet_hour
    from channel_options
    inner join customers on customers.customer_id = channel_options.customer_id
    inner join catalog on catalog.message_name = channel_options.message_name
    cross join decision_time
    left join local_decision_times on local_decision_times.contact_timezone = customers.contact_timezone
    left join country_quiet_hours on country_quiet_hours.country_code = customers.zone_guessed_for_country
    left join handed_over on handed_over.occurrence_key = channel_options.delivery_key
),

-- Non-urgent messages stop at the first consented channel: a channel is kept unless a consented channel comes
-- before it (one aggregate per occurrence and a join, rather than a running-count window over every delivery).
first_consented_channels as (
    select
        message_occurrence_key,
        min(channel_position) as first_consented_position
    from deliveries
    where has_consent
    group by message_occurrence_key
),

-- A non-urgent message goes out on one channel only: once handed over on one, it is not sent on another (say
-- the customer withdrew email consent and SMS is now the first consented channel). A pending hand-over counts
-- too: its run may have delivered it, and a message missed is better than one sent twice.
handed_over_occurrences as (
    select
        message_occurrence_key,
        min(case when handover_status = 'sent' then channel end) as sent_channel,
        min(case when handover_status = 'sent' then handed_over_by end) as sent_by,
        min(case when handover_status = 'pending' then channel end) as pending_channel,
        min(case when handover_status = 'pending' then handed_over_by end) as pending_by
    from deliveries
    where handover_status is not null
    group by message_occurrence_key
),

chosen_channels as (
    select
        deliveries.*,
        coalesce(
            deliveries.channel_position > first_consented_channels.first_consented_position, false
        ) as has_consented_channel_before,
        handed_over_occurrences.sent_channel,
        handed_over_occurrences.sent_by,
        handed_over_occurrences.pending_channel,
        handed_over_occurrences.pending_by
    from deliveries
    left join first_consented_channels
        on first_consented_channels.message_occurrence_key = deliveries.message_occurrence_key
    left join handed_over_occurrences
        on handed_over_occurrences.message_occurrence_key = deliveries.message_occurrence_key
),

screened as (
    select
        *,
        cast(local_decision_at as date) as local_decision_date,
        case
            when handover_status = 'sent' then 'already_sent'
            when not urgent and sent_channel is not null then 'already_sent'
            when not urgent and handover_status is null and pending_channel is not null then 'already_sent'
            when is_globally_suppressed then 'suppressed'
            when not has_consent then 'no_consent'
            when message_kind = 'marketing' and in_global_control_group then 'holdout'
            when message_kind = 'marketing' and sequence_bucket < holdout_pct then 'holdout'
            when channel = 'sms' and is_quiet_hour then 'quiet_hours'
        end as screen_decision
    from chosen_channels
    where urgent or not has_consented_channel_before
),

-- Marketing messages already sent, per customer, channel and local calendar day.
sent_marketing as (
    select
        sent.customer_id,
        sent.channel,
        cast({{ to_local_timestamp('sent.sent_at', 'customers.contact_timezone') }} as date) as local_sent_date
    from {{ ref('marketing_messages_sent') }} as sent
    inner join customers on customers.customer_id = sent.customer_id
),

sent_counts as (
    select
        screened.message_occurrence_key,
        screened.channel,
        count(case when sent_marketing.local_sent_date = screened.local_decision_date then 1 end) as sent_today,
        count(sent_marketing.local_sent_date) as sent_last_7_days
    from screened
    inner join sent_marketing
        on sent_marketing.customer_id = screened.customer_id
        and sent_marketing.channel = screened.channel
        and sent_marketing.local_sent_date > {{ dbt.dateadd('day', -7, 'screened.local_decision_date') }}
        and sent_marketing.local_sent_date <= screened.local_decision_date
    where screened.screen_decision is null
        and screened.message_kind = 'marketing'
        and screened.handover_status is null
    group by screened.message_occurrence_key, screened.channel
),

ranked as (
    select
        screened.*,
        coalesce(sent_counts.sent_today, 0) as sent_today,
        coalesce(sent_counts.sent_last_7_days, 0) as sent_last_7_days,
        row_number() over (
            partition by screened.customer_id, screened.channel
            order by screened.priority, screened.message_occurrence_key
        ) as priority_rank,
        first_value(screened.message_name) over (
            partition by screened.customer_id, screened.channel
            order by screened.priority, screened.message_occurrence_key
        ) as top_message_name
    from screened
    left join sent_counts
        on sent_counts.message_occurrence_key = screened.message_occurrence_key
        and sent_counts.channel = screened.channel
    where screened.screen_decision is null
        and screened.message_kind = 'marketing'
        and screened.handover_status is null
),

capped as (
    select
        occurrence_key,
        case
            when sent_today >= {{ var('message_daily_cap_per_channel') }} then 'capped'
            when sent_last_7_days >= {{ var('message_weekly_cap_per_channel') }} then 'capped'
            when priority_rank > least(
                {{ var('message_daily_cap_per_channel') }} - sent_today,
                {{ var('message_weekly_cap_per_channel') }} - sent_last_7_days
            ) then 'outranked'
            else 'send'
        end as cap_decision,
        case
            when sent_today >= {{ var('message_daily_cap_per_channel') }}
                then {{ dbt.concat([
                    "'daily cap of " ~ var('message_daily_cap_per_channel') ~ " reached on '", 'channel'
                ]) }}
            when sent_last_7_days >= {{ var('message_weekly_cap_per_channel') }}
                then {{ dbt.concat([
                    "'weekly cap of " ~ var('message_weekly_cap_per_channel') ~ " reached on '", 'channel'
                ]) }}
            else {{ dbt.concat(["'outranked by '", 'top_message_name', "' on '", 'channel']) }}
        end as cap_reason
    from ranked
),

final as (
    select
        screened.occurrence_key,
        screened.message_occurrence_key,
        screened.customer_id,
        screened.message_name,
        screened.message_kind,
        screened.priority,
        screened.urgent,
        screened.channel,
        coalesce(screened.screen_decision, capped.cap_decision, 'send') as decision,
        case coalesce(screened.screen_decision, capped.cap_decision, 'send')
            when 'already_sent' then case
                when screened.handover_status = 'sent'
                    then {{ dbt.concat(["'already sent by '", 'screened.handed_over_by']) }}
                when screened.sent_channel is not null
                    then {{ dbt.concat(["'already sent on '", 'screened.sent_channel', "' by '", 'screened.sent_by']) }}
                else {{ dbt.concat([
                    "'possibly sent on '", 'screened.pending_channel', "' by '", 'screened.pending_by',
                    "' (its run did not finish)'"
                ]) }}
            end
            when 'suppressed' then {{ dbt.concat([
                "'globally suppressed: '", "coalesce(screened.suppression_reason, 'unknown')"
            ]) }}
            when 'no_consent' then {{ dbt.concat(["'no consent or no valid identifier for '", 'screened.channel']) }}
            when 'holdout' then case
                when screened.in_global_control_group then 'global control group'
                else {{ dbt.concat(["'holdout group of '", 'screened.message_name']) }}
            end
            when 'quiet_hours' then case
                when screened.zone_guessed_for_country is null then 'SMS quiet hours in the customer''s time zone'
                else {{ dbt.concat([
                    "'SMS quiet hours in a time zone of '", 'screened.zone_guessed_for_country',
                    "' (the customer has none)'"
                ]) }}
            end
            when 'send' then case
                when screened.message_kind = 'transactional' then 'transactional: exempt from marketing caps'
                when screened.handover_status = 'pending' then {{ dbt.concat([
                    "'finishing a delivery an earlier run of '", 'screened.handed_over_by', "' started'"
                ]) }}
                else 'within caps and highest priority'
            end
            else capped.cap_reason
        end as decision_reason,
        screened.payload,
        screened.decision_at,
        screened.contact_timezone,
        screened.local_decision_date
    from screened
    left join capped on capped.occurrence_key = screened.occurrence_key
)

select * from final
