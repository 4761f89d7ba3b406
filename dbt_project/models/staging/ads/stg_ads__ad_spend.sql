with source as (
    select * from {{ source('ads', 'ad_spend') }}
),

renamed as (
    select
        {{ tidings_hash(['spend_date', 'channel', 'campaign_name']) }} as ad_spend_id,
        cast(spend_date as date) as spend_date,
        lower(channel) as channel,
        campaign_name,
        cast(spend as {{ dbt.type_numeric() }}) as spend,
        cast(impressions as bigint) as impressions,
        cast(clicks as bigint) as clicks,
        cast(conversions as bigint) as conversions,
        upper(currency) as currency,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
