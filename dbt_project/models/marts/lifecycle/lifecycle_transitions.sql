{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        on_schema_change='fail'
    )
}}
-- History of stage changes on both tracks. Each build appends one row for every customer whose evaluated
-- stage differs from their latest recorded stage, dated the as-of date; the first build records every
-- customer's current stage with the entered date inferred from the data. History is never rewritten
-- (full_refresh is disabled) and a build for an as-of date older than the latest one recorded adds nothing
-- (for any customer: one whose only record has an entered date estimated before that older date would otherwise
-- get a transition that then ranks as their latest), so state never moves backwards. "Entered at_risk this week" is a filter on to_stage and entered_on.
with evaluated as (
    select * from {{ ref('int_customers__lifecycle_evaluated') }}
),

current_stages as (
    select customer_id, 'lifecycle' as track, lifecycle_stage as stage, lifecycle_entered_on_estimate as entered_on_estimate
    from evaluated
    union all
    select customer_id, 'subscription', subscription_stage, subscription_entered_on_estimate
    from evaluated
    where subscription_stage is not null
),

{% if is_incremental() %}
latest_recorded as (
    select customer_id, track, to_stage, entered_on
    from (
        select
            *,
            row_number() over (partition by customer_id, track order by recorded_on desc, sequence desc) as recency_rank
        from {{ this }}
    ) as ranked
    where recency_rank = 1
),
{% endif %}

changes as (
    select
        current_stages.customer_id,
        current_stages.track,
        {% if is_incremental() -%}
        latest_recorded.to_stage as from_stage,
        current_stages.stage as to_stage,
        case when latest_recorded.customer_id is null then current_stages.entered_on_estimate
             else {{ as_of_date() }} end as entered_on,
        latest_recorded.customer_id is null as is_first_record
        {%- else -%}
        cast(null as {{ dbt.type_string() }}) as from_stage,
        current_stages.stage as to_stage,
        current_stages.entered_on_estimate as entered_on,
        true as is_first_record
        {%- endif %}
    from current_stages
    {% if is_incremental() %}
    left join latest_recorded
        on current_stages.customer_id = latest_recorded.customer_id
        and current_stages.track = latest_recorded.track
    where {{ as_of_date() }} >= (select max(recorded_on) from {{ this }})
        and (latest_recorded.customer_id is null or latest_recorded.to_stage <> current_stages.stage)
    {% endif %}
),

{% if is_incremental() %}
previous_sequence as (
    select coalesce(max(sequence), 0) as last_sequence from {{ this }}
),
{% endif %}

final as (
    select
        {{ tidings_hash(['changes.customer_id', 'changes.track', 'changes.from_stage', 'changes.to_stage',
                         'changes.entered_on']) }} as transition_id,
        changes.customer_id,
        changes.track,
        changes.from_stage,
        changes.to_stage,
        changes.entered_on,
        {{ as_of_date() }} as recorded_on,
        changes.is_first_record,
        -- one build adds one batch: the sequence number orders batches recorded on the same as-of date
        {% if is_incremental() %}previous_sequence.last_sequence + 1{% else %}1{% endif %} as sequence
    from changes
    {% if is_incremental() %}cross join previous_sequence{% endif %}
)

select * from final
