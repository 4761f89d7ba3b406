-- The top `lookalike_top_share` of buyers by historic CLV: the seed list for ad platforms' lookalike audiences.
with customers as (
    select * from {{ ref('dim_customers') }}
),

ranked as (
    select
        customer_id,
        clv,
        percent_rank() over (order by clv desc, customer_id) as clv_percent_rank
    from {{ ref('metrics_customer_clv') }}
    where clv > 0
),

final as (
    select
        customers.customer_id,
        'ads' as channel,
        customers.email,
        customers.phone_e164,
        customers.first_name,
        customers.last_name,
        customers.postal_code,
        customers.country_code,
        ranked.clv
    from ranked
    inner join customers on customers.customer_id = ranked.customer_id
    where ranked.clv_percent_rank < {{ var('lookalike_top_share') }}
        and customers.can_ads
)

select * from final
