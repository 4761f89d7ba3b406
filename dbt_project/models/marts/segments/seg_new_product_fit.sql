-- Customers who fit a newly launched product (see customer_product_fit), one row per customer: the most recent
-- launch they fit.
with customers as (
    select * from {{ ref('dim_customers') }}
),

fits as (
    select
        customer_product_fit.*,
        row_number() over (
            partition by customer_product_fit.customer_id
            order by launches.launched_on desc, customer_product_fit.product_key
        ) as launch_rank
    from {{ ref('customer_product_fit') }} as customer_product_fit
    inner join {{ ref('product_launches') }} as launches on launches.product_key = customer_product_fit.product_key
),

final as (
    select
        customers.customer_id,
        'email' as channel,
        customers.email,
        customers.first_name,
        customers.last_name,
        fits.product_key,
        fits.product_name,
        fits.fit_reason
    from fits
    inner join customers on customers.customer_id = fits.customer_id
    where fits.launch_rank = 1
        and customers.can_email
        and not customers.in_global_control_group
)

select * from final
