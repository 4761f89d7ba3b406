-- Customer acquisition cost per acquisition channel and month, where spend can be attributed to the channel
-- (seed `ad_spend_channels` maps each ad platform's spend to the acquisition channel it buys):
--   cac = ad_spend / new_customers   (null when no customer signed up through the channel that month)
-- Channels without spend (organic, partner, ...) are listed with their new customers and no CAC.
with signups as (
    select
        acquisition_channel,
        cast({{ dbt.date_trunc('month', 'signup_date') }} as date) as period_start,
        count(*) as new_customers
    from {{ ref('dim_customers') }}
    where signup_date is not null
        and signup_date < {{ as_of_date() }}
        and acquisition_channel is not null
    group by 1, 2
),

spend as (
    select
        channels.acquisition_channel,
        cast({{ dbt.date_trunc('month', 'spend.spend_date') }} as date) as period_start,
        sum(spend.spend) as ad_spend
    from {{ ref('stg_ads__ad_spend') }} as spend
    inner join {{ ref('ad_spend_channels') }} as channels on channels.spend_channel = spend.channel
    where spend.spend_date < {{ as_of_date() }}
    group by 1, 2
),

final as (
    select
        'month' as period_grain,
        coalesce(signups.period_start, spend.period_start) as period_start,
        coalesce(signups.acquisition_channel, spend.acquisition_channel) as acquisition_channel,
        coalesce(signups.new_customers, 0) as new_customers,
        cast(spend.ad_spend as decimal(18, 2)) as ad_spend,
        cast(spend.ad_spend / nullif(signups.new_customers, 0) as decimal(18, 2)) as cac
    from signups
    full outer join spend
        on spend.acquisition_channel = signups.acquisition_channel
        and spend.period_start = signups.period_start
)

select * from final
