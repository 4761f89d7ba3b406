with source as (
    select * from {{ source('billing', 'payments') }}
),

renamed as (
    select
        payment_id,
        invoice_id,
        customer_id,
        cast(amount as {{ dbt.type_numeric() }}) as amount,
        upper(currency) as currency,
        cast(attempted_at as {{ dbt.type_timestamp() }}) as attempted_at,
        status as payment_status,
        failure_code,
        card_brand,
        card_last4,
        cast(card_exp_month as integer) as card_exp_month,
        cast(card_exp_year as integer) as card_exp_year,
        -- a card is usable through the last day of its expiry month
        {{ dbt.last_day(
            "cast(" ~ dbt.concat(["cast(card_exp_year as " ~ dbt.type_string() ~ ")", "'-'",
                                  "lpad(cast(card_exp_month as " ~ dbt.type_string() ~ "), 2, '0')", "'-01'"]) ~ " as date)",
            "month") }} as card_expires_on,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
)

select * from renamed
