with source as (
    select * from {{ source('crm', 'customers') }}
),

known_time_zones as (
    {{ known_time_zones() }}
),

renamed as (
    select
        customer_id,
        nullif(trim(first_name), '') as first_name,
        nullif(trim(last_name), '') as last_name,
        {{ normalize_email('email') }} as email_normalized,
        nullif(trim(phone), '') as phone_raw,
        nullif(trim(address_line1), '') as address_line1,
        nullif(trim(address_line2), '') as address_line2,
        nullif(trim(city), '') as city,
        nullif(upper(trim(state)), '') as state,
        nullif(upper(trim(postal_code)), '') as postal_code,
        {{ normalize_country_code('country') }} as country_code,
        nullif(trim(timezone), '') as timezone_raw,
        cast(date_of_birth as date) as date_of_birth,
        case lower(trim(gender))
            when 'f' then 'f'
            when 'female' then 'f'
            when 'm' then 'm'
            when 'male' then 'm'
        end as gender,
        cast(created_at as {{ dbt.type_timestamp() }}) as created_at,
        cast(signed_up_at as {{ dbt.type_timestamp() }}) as signed_up_at,
        lower(trim(acquisition_channel)) as acquisition_channel,
        referred_by_customer_id,
        cast(updated_at as {{ dbt.type_timestamp() }}) as updated_at,
        cast(_loaded_at as {{ dbt.type_timestamp() }}) as loaded_at
    from source
),

normalized as (
    select
        renamed.*,
        known_time_zones.name as timezone,
        {{ email_is_valid('email_normalized') }} as email_valid,
        {{ phone_e164_digits('phone_raw', 'country_code') }} as phone_e164_digits,
        address_line1 is not null
            and city is not null
            and (state is not null or not {{ postal_region_is_required('country_code') }})
            and {{ postal_code_is_valid('postal_code', 'country_code') }} as has_valid_postal_address
    from renamed
    -- An unknown zone is dropped (null), spelled as the warehouse spells it otherwise.
    left join known_time_zones on lower(known_time_zones.name) = lower(renamed.timezone_raw)
),

final as (
    select
        customer_id,
        first_name,
        last_name,
        email_normalized,
        email_valid,
        phone_raw,
        case when phone_e164_digits is not null then {{ dbt.concat(["'+'", 'phone_e164_digits']) }} end as phone_e164,
        phone_e164_digits is not null as phone_valid,
        address_line1,
        address_line2,
        city,
        state,
        postal_code,
        country_code,
        has_valid_postal_address,
        timezone,
        date_of_birth,
        gender,
        created_at,
        signed_up_at,
        acquisition_channel,
        referred_by_customer_id,
        updated_at,
        loaded_at
    from normalized
)

select * from final
