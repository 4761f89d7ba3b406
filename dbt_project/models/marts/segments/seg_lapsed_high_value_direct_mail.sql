-- High-value customers (lifetime revenue at least `lapsed_high_value_min_revenue`) with no order for
-- `lapsed_high_value_after_days`: a win-back postcard. Only with mail consent and a valid postal address.
-- occurrence_key identifies this month's mailing per customer, so send_once mails each of them once a month at most.
with customers as (
    select * from {{ ref('dim_customers') }}
),

final as (
    select
        {{ dbt.hash(dbt.concat([
            'customer_id', "'|lapsed_high_value|'",
            dbt.cast(dbt.date_trunc('month', as_of_date()), dbt.type_string())
        ])) }} as occurrence_key,
        customer_id,
        'mail' as channel,
        cast({{ dbt.date_trunc('month', as_of_date()) }} as date) as campaign_month,
        first_name,
        last_name,
        {{ dbt.concat(['first_name', "' '", 'last_name']) }} as full_name,
        address_line1,
        address_line2,
        city,
        state,
        postal_code,
        country_code,
        lifetime_revenue,
        cast(last_order_at as date) as last_order_date
    from customers
    where can_mail
        and not in_global_control_group
        and has_valid_postal_address
        and lifetime_revenue >= {{ var('lapsed_high_value_min_revenue') }}
        and last_order_at < {{ dbt.dateadd('day', -var('lapsed_high_value_after_days'), as_of_date()) }}
)

select * from final
