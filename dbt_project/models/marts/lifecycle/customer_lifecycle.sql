-- Current lifecycle and subscription stage per customer with the date each was entered (from
-- lifecycle_transitions) and the previous lifecycle stage. Stage rules: int_customers__lifecycle_evaluated;
-- stage catalogue: seed lifecycle_stages; thresholds: dbt vars.
with evaluated as (
    select * from {{ ref('int_customers__lifecycle_evaluated') }}
),

transitions as (
    select * from {{ ref('lifecycle_transitions') }}
),

latest as (
    select
        *,
        -- the latest recorded, as lifecycle_transitions itself reads it (a first record's entered date is an estimate)
        row_number() over (partition by customer_id, track order by recorded_on desc, sequence desc) as recency_rank
    from transitions
),

lifecycle_latest as (
    select * from latest where track = 'lifecycle' and recency_rank = 1
),

subscription_latest as (
    select * from latest where track = 'subscription' and recency_rank = 1
),

final as (
    select
        evaluated.customer_id,
        evaluated.lifecycle_stage,
        case when lifecycle_latest.to_stage = evaluated.lifecycle_stage then lifecycle_latest.entered_on
             else evaluated.lifecycle_entered_on_estimate end as lifecycle_stage_entered_on,
        case when lifecycle_latest.to_stage = evaluated.lifecycle_stage then lifecycle_latest.from_stage
             end as previous_lifecycle_stage,
        evaluated.subscription_stage,
        case when evaluated.subscription_stage is null then null
             when subscription_latest.to_stage = evaluated.subscription_stage then subscription_latest.entered_on
             else evaluated.subscription_entered_on_estimate end as subscription_stage_entered_on,
        evaluated.days_since_activity
    from evaluated
    left join lifecycle_latest on evaluated.customer_id = lifecycle_latest.customer_id
    left join subscription_latest on evaluated.customer_id = subscription_latest.customer_id
),

with_duration as (
    select
        *,
        cast({{ dbt.datediff('lifecycle_stage_entered_on', as_of_date(), 'day') }} as integer) as days_in_lifecycle_stage
    from final
)

select * from with_duration
