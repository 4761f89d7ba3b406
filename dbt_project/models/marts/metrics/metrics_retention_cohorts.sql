-- Monthly retention by sign-up cohort: for each sign-up month and each month since (0 = the sign-up month) up to
-- the as-of month, the customers active that month (a login or a completed order) out of the cohort:
--   retention_rate = active_customers / cohort_size
with customers as (
    select
        customer_id,
        cast({{ dbt.date_trunc('month', 'signup_date') }} as date) as cohort_month
    from {{ ref('dim_customers') }}
    where signup_date is not null
        and signup_date < {{ as_of_date() }}
),

cohorts as (
    select cohort_month, count(*) as cohort_size
    from customers
    group by cohort_month
),

activity_months as (
    select distinct customer_id, cast({{ dbt.date_trunc('month', 'event_date') }} as date) as activity_month
    from {{ ref('fct_events') }}
    where event_type = 'login'
        and event_date < {{ as_of_date() }}
    union
    select distinct customer_id, cast({{ dbt.date_trunc('month', 'order_date') }} as date)
    from {{ ref('fct_orders') }}
    where status = 'completed'
        and order_date < {{ as_of_date() }}
),

cohort_activity as (
    select
        customers.cohort_month,
        activity_months.activity_month,
        count(distinct customers.customer_id) as active_customers
    from customers
    inner join activity_months on activity_months.customer_id = customers.customer_id
    where activity_months.activity_month >= customers.cohort_month
    group by 1, 2
),

months as (
    select distinct activity_month from activity_months
),

final as (
    select
        cohorts.cohort_month,
        cast({{ dbt.datediff('cohorts.cohort_month', 'months.activity_month', 'month') }} as integer)
            as months_since_signup,
        months.activity_month,
        cohorts.cohort_size,
        coalesce(cohort_activity.active_customers, 0) as active_customers,
        cast(coalesce(cohort_activity.active_customers, 0) * 1.0 / cohorts.cohort_size as decimal(18, 4))
            as retention_rate
    from cohorts
    inner join months on months.activity_month >= cohorts.cohort_month
    left join cohort_activity
        on cohort_activity.cohort_month = cohorts.cohort_month
        and cohort_activity.activity_month = months.activity_month
)

select * from final
