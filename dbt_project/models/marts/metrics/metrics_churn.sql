-- Monthly subscription churn over the last `metrics_history_months` complete months:
--   subscribers_at_start  paying subscriptions started before the month and not churned before it
--   churned               of those, subscriptions that churned (canceled or expired) during the month
--   churn_rate            = churned / subscribers_at_start   (null when there were no subscribers)
-- A subscription churns at its end date, or at its cancellation date when it has no end date.
with subscriptions as (
    select
        subscription_id,
        started_at,
        case
            when subscription_status in ('canceled', 'expired') then coalesce(ended_at, canceled_at)
        end as churned_at
    from {{ ref('stg_billing__subscriptions') }}
    where started_at is not null
),

months as (
    select
        cast({{ dbt.dateadd('month', '-generated_number', dbt.date_trunc('month', as_of_date())) }} as date)
            as month_start
    from ({{ dbt.generate_series(var('metrics_history_months')) }}) as series
),

monthly as (
    select
        months.month_start,
        count(subscriptions.subscription_id) as subscribers_at_start,
        count(
            case
                when subscriptions.churned_at < {{ dbt.dateadd('month', 1, 'months.month_start') }} then 1
            end
        ) as churned
    from months
    left join subscriptions
        on subscriptions.started_at < months.month_start
        and (subscriptions.churned_at is null or subscriptions.churned_at >= months.month_start)
    group by months.month_start
),

final as (
    select
        'month' as period_grain,
        month_start as period_start,
        subscribers_at_start,
        churned,
        cast(churned * 1.0 / nullif(subscribers_at_start, 0) as decimal(18, 4)) as churn_rate
    from monthly
)

select * from final
