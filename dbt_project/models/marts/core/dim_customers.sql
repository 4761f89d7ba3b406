-- One row per CRM contact: normalized identity, consent and suppression per channel, and the sendability
-- flags every audience and message relies on. can_<channel> = consent AND not suppressed (for that channel)
-- AND a valid identifier for the channel. Erased customers keep their id but lose every personal field.
with customers as (
    select * from {{ ref('stg_crm__customers') }}
),

consents as (
    select * from {{ ref('int_customers__consents_pivoted') }}
),

suppressions as (
    select * from {{ ref('int_customers__suppressions_resolved') }}
),

orders as (
    select * from {{ ref('int_customers__orders_aggregated') }}
),

subscriptions as (
    select * from {{ ref('int_customers__subscription_current') }}
),

joined as (
    select
        customers.*,
        coalesce(consents.consent_email, false) as consent_email,
        coalesce(consents.consent_sms, false) as consent_sms,
        coalesce(consents.consent_direct_mail, false) as consent_direct_mail,
        coalesce(consents.consent_ads, false) as consent_ads,
        coalesce(suppressions.is_erased, false) as is_erased,
        coalesce(suppressions.is_do_not_mail, false) as is_do_not_mail,
        coalesce(suppressions.is_email_address_suppressed, false) as is_email_address_suppressed,
        suppressions.suppression_reason,
        orders.first_order_at,
        orders.last_order_at,
        coalesce(orders.lifetime_orders, 0) as lifetime_orders,
        coalesce(orders.lifetime_revenue, 0) as lifetime_revenue,
        subscriptions.plan_name,
        subscriptions.subscription_status,
        subscriptions.billing_interval,
        subscriptions.trial_ends_at,
        subscriptions.current_period_end
    from customers
    left join consents on customers.customer_id = consents.customer_id
    left join suppressions on customers.customer_id = suppressions.customer_id
    left join orders on customers.customer_id = orders.customer_id
    left join subscriptions on customers.customer_id = subscriptions.customer_id
),

identity as (
    -- erasure wins over everything: no personal data survives it
    select
        customer_id,
        case when not is_erased and email_valid then email_normalized end as email,
        email_valid and not is_erased as email_valid,
        case when not is_erased then phone_e164 end as phone_e164,
        phone_valid and not is_erased as phone_valid,
        case when not is_erased then first_name end as first_name,
        case when not is_erased then last_name end as last_name,
        case when not is_erased then address_line1 end as address_line1,
        case when not is_erased then address_line2 end as address_line2,
        case when not is_erased then city end as city,
        case when not is_erased then state end as state,
        case when not is_erased then postal_code end as postal_code,
        country_code,
        has_valid_postal_address and not is_erased as has_valid_postal_address,
        timezone,
        case when not is_erased then date_of_birth end as date_of_birth,
        case when not is_erased then gender end as gender,
        consent_email,
        consent_sms,
        consent_direct_mail,
        consent_ads,
        suppression_reason is not null as is_globally_suppressed,
        suppression_reason,
        is_do_not_mail,
        is_email_address_suppressed,
        signed_up_at,
        acquisition_channel,
        first_order_at,
        last_order_at,
        lifetime_orders,
        lifetime_revenue,
        plan_name,
        subscription_status,
        billing_interval,
        trial_ends_at,
        current_period_end
    from joined
),

final as (
    select
        cast(customer_id as {{ dbt.type_string() }}) as customer_id,
        email,
        email_valid,
        phone_e164,
        phone_valid,
        first_name,
        last_name,
        address_line1,
        address_line2,
        city,
        state,
        postal_code,
        country_code,
        has_valid_postal_address,
        timezone,
        date_of_birth,
        gender,
        consent_email,
        consent_sms,
        consent_direct_mail,
        consent_ads,
        is_globally_suppressed,
        suppression_reason,
        consent_email and not is_globally_suppressed and not is_email_address_suppressed and email_valid as can_email,
        consent_sms and not is_globally_suppressed and phone_valid as can_sms,
        consent_direct_mail and not is_globally_suppressed and not is_do_not_mail and has_valid_postal_address
            as can_mail,
        consent_ads and not is_globally_suppressed and (email_valid or phone_valid) as can_ads,
        {{ in_global_control_group('customer_id') }} as in_global_control_group,
        signed_up_at as signup_at,
        cast(signed_up_at as date) as signup_date,
        acquisition_channel,
        first_order_at,
        last_order_at,
        cast(lifetime_orders as integer) as lifetime_orders,
        cast(lifetime_revenue as decimal(18, 2)) as lifetime_revenue,
        plan_name,
        subscription_status,
        billing_interval,
        trial_ends_at,
        current_period_end,
        cast({{ dbt.datediff('signed_up_at', as_of_timestamp(), 'day') }} as integer) as tenure_days
    from identity
)

select * from final
