with source as (
    select * from {{ source('billing', 'invoices') }}
),

renamed as (
    select
        invoice_id,
        subscription_id,
        customer_id,
        cast(amount_due as {{ dbt.type_numeric() }}) as amount_due,
        upper(currency) as currency,
        cast(issued_at as {{ dbt.type_timestamp() }}) as issued_at,
        status as invoice_status,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
