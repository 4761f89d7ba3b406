-- Active annual subscriptions renewing within the widest of `renewal_windows_days`, tagged with the window they are
-- in. A monthly plan renews within 30 days all the time: it is never due (as in the lifecycle's renewal_due).
{%- set windows = var('renewal_windows_days') | sort %}
with customers as (
    select * from {{ ref('dim_customers') }}
),

due as (
    select
        *,
        {{ dbt.datediff(as_of_date(), 'cast(current_period_end as date)', 'day') }} as days_until_renewal
    from customers
    where subscription_status = 'active'
        and billing_interval = 'year'
        and current_period_end is not null
),

final as (
    select
        customer_id,
        'email' as channel,
        email,
        first_name,
        last_name,
        plan_name,
        current_period_end as renews_at,
        days_until_renewal,
        case
            {%- for window in windows %}
            when days_until_renewal <= {{ window }} then {{ window }}
            {%- endfor %}
        end as renewal_window_days
    from due
    where can_email
        and not in_global_control_group
        and days_until_renewal >= 0
        and days_until_renewal <= {{ windows | last }}
)

select * from final
