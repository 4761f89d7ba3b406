-- Customers per lifecycle stage over time: for each day, week and month (period_grain) since the first recorded
-- transition (at most `metrics_history_days` back), the number of customers in each stage of each track at the end
-- of the period (or the day before the as-of date for the current period), from lifecycle_transitions.
{%- set grains = ['day', 'week', 'month'] %}
with transitions as (
    select * from {{ ref('lifecycle_transitions') }}
),

days as (
    select
        cast({{ dbt.dateadd('day', '-generated_number', as_of_date()) }} as date) as date_day
    from ({{ dbt.generate_series(var('metrics_history_days')) }}) as series
    where cast({{ dbt.dateadd('day', '-generated_number', as_of_date()) }} as date)
        >= (select min(entered_on) from transitions)
),

periods as (
    {%- for grain in grains %}
    select
        '{{ grain }}' as period_grain,
        cast({{ dbt.date_trunc(grain, 'date_day') }} as date) as period_start,
        max(date_day) as measured_on
    from days
    group by 1, 2
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

stage_at_period_end as (
    select
        periods.period_grain,
        periods.period_start,
        transitions.customer_id,
        transitions.track,
        transitions.to_stage as stage,
        row_number() over (
            partition by periods.period_grain, periods.period_start, transitions.customer_id, transitions.track
            order by transitions.entered_on desc, transitions.recorded_on desc, transitions.sequence desc
        ) as recency_rank
    from periods
    inner join transitions on transitions.entered_on <= periods.measured_on
),

final as (
    select
        period_grain,
        period_start,
        track,
        stage,
        count(*) as customers
    from stage_at_period_end
    where recency_rank = 1
    group by 1, 2, 3, 4
)

select * from final
