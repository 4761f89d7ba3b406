-- How many customers each customer referred (signed-up referrals only).
with customers as (
    select * from {{ ref('stg_crm__customers') }}
)

select
    referred_by_customer_id as customer_id,
    count(*) as referrals
from customers
where referred_by_customer_id is not null and signed_up_at is not null
group by referred_by_customer_id
