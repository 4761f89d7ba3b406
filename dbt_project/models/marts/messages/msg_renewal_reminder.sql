-- Renewal reminders, starting months ahead: one occurrence per subscription period and reminder window
-- (`renewal_windows_days`, e.g. 90/60/30 days before current_period_end); the window a renewal is in now is due.
-- Annual plans only: a monthly plan is always within 30 days of renewing and would be reminded every month.
{%- set windows = var('renewal_windows_days') | sort %}
with customers as (
    select * from {{ ref('dim_customers') }}
),

catalog as (
    select * from {{ ref('message_catalog') }}
    where message_name = 'renewal_reminder'
),

due as (
    select
        customer_id,
        first_name,
        plan_name,
        cast(current_period_end as date) as renewal_date,
        {{ dbt.datediff(as_of_date(), 'cast(current_period_end as date)', 'day') }} as days_until_renewal
    from customers
    where subscription_status = 'active'
        and billing_interval = 'year'
        and current_period_end is not null
),

reminders as (
    select
        *,
        case
            {%- for window in windows %}
            when days_until_renewal <= {{ window }} then {{ window }}
            {%- endfor %}
        end as reminder_window_days
    from due
    where days_until_renewal >= 0
        and days_until_renewal <= {{ windows | last }}
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'reminders.customer_id', "'|renewal_reminder|'", dbt.cast('reminders.renewal_date', dbt.type_string()),
            "'|'", dbt.cast('reminders.reminder_window_days', dbt.type_string())
        ])) }} as occurrence_key,
        reminders.customer_id,
        catalog.message_name,
        catalog.message_kind,
        catalog.priority,
        catalog.channel_candidates,
        catalog.urgent,
        reminders.first_name,
        reminders.plan_name,
        reminders.renewal_date,
        reminders.days_until_renewal,
        reminders.reminder_window_days,
        {{ json_payload(['first_name', 'plan_name', 'renewal_date', 'days_until_renewal', 'reminder_window_days']) }}
            as payload
    from reminders
    cross join catalog
)

select * from final
