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

-- Each transition holds its stage from entered_on until the customer's next transition on the track (in the order
-- entered_on, recorded_on, sequence, the order that picks a customer's latest transition): +1 customer in the stage
-- on entered_on, -1 on the next transition's entered_on. Transitions entered on the same day cancel out.
transition_intervals as (
    select
        track,
        to_stage as stage,
        entered_on,
        lead(entered_on) over (
            partition by customer_id, track
            order by entered_on, recorded_on, sequence
        ) as next_entered_on
    from transitions
    where entered_on is not null
),

stage_changes as (
    select track, stage, entered_on as changed_on, 1 as change
    from transition_intervals
    union all
    select track, stage, next_entered_on as changed_on, -1 as change
    from transition_intervals
    where next_entered_on is not null
),

daily_stage_changes as (
    select
        track,
        stage,
        changed_on,
        sum(change) as net_change
    from stage_changes
    group by 1, 2, 3
),

-- Customers in a stage at the end of a period = the net change of every day up to measured_on (a few thousand
-- change days per track and stage, joined to a few hundred periods).
stage_at_period_end as (
    select
        periods.period_grain,
        periods.period_start,
        daily_stage_changes.track,
        daily_stage_changes.stage,
        sum(daily_stage_changes.net_change) as customers
    from periods
    inner join daily_stage_changes on daily_stage_changes.changed_on <= periods.measured_on
    group by 1, 2, 3, 4
),

final as (
    select
        period_grain,
        period_start,
        track,
        stage,
        cast(customers as {{ dbt.type_bigint() }}) as customers
    from stage_at_period_end
    where customers > 0
)

select * from final
