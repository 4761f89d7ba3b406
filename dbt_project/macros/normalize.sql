{#-
  Identity normalization shared by staging models, following the rules ad and email platforms publish
  (Meta, Google Customer Match): emails trimmed and lower-cased; phones in E.164.
-#}

{#- Trimmed, lower-cased email; empty strings become null. Validity is a separate flag (email_is_valid). -#}
{% macro normalize_email(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}

{#- One @, a non-empty local part, a dotted domain ending in a 2+ letter TLD, no whitespace. -#}
{% macro email_is_valid(normalized_email) -%}
    coalesce({{ tidings_regexp_like(normalized_email, "^[a-z0-9._%+'-]+@[a-z0-9-]+([.][a-z0-9-]+)*[.][a-z]{2,}$") }}, false)
{%- endmacro %}

{#- ISO 3166-1 alpha-2 from the loose spellings CRMs hold ('us', 'USA', 'United Kingdom', 'UK'). -#}
{% macro normalize_country_code(column) -%}
    case upper(trim({{ column }}))
        when 'USA' then 'US'
        when 'UNITED STATES' then 'US'
        when 'UK' then 'GB'
        when 'UNITED KINGDOM' then 'GB'
        when '' then null
        else upper(trim({{ column }}))
    end
{%- endmacro %}

{#- International calling code (digits, no +) for the countries the business serves; null elsewhere. -#}
{% macro country_calling_code(country_code) -%}
    case {{ country_code }}
        when 'US' then '1' when 'CA' then '1' when 'GB' then '44' when 'DE' then '49' when 'FR' then '33'
        when 'ES' then '34' when 'AU' then '61' when 'NL' then '31' when 'BR' then '55' when 'SE' then '46'
        when 'IT' then '39' when 'IE' then '353' when 'MX' then '52'
    end
{%- endmacro %}

{#-
  E.164 digits (without '+') from a free-form phone number, or null when it cannot be one. The rule:
  1. keep digits only;
  2. a number written with a leading '+' is already international: its digits are the E.164 digits;
  3. a number starting with '00' (international dialling prefix) is international: drop the '00';
  4. otherwise it is national: for NANP countries (calling code 1) a 10-digit number gets '1' prepended and an
     11-digit number starting with 1 is kept; elsewhere one leading trunk '0' is dropped and the country's
     calling code prepended (Italian numbers keep their 0, as the numbering plan requires);
  5. the result must have 8 to 15 digits (E.164's limit), and exactly 11 for calling code 1.
-#}
{% macro phone_e164_digits(phone, country_code) -%}
    {%- set digits = tidings_regexp_replace(phone, '[^0-9]', '') -%}
    {%- set calling_code = country_calling_code(country_code) -%}
    {%- set candidate -%}
        case
            when trim({{ phone }}) like '+%' then {{ digits }}
            when {{ digits }} like '00%' then substr({{ digits }}, 3)
            when {{ calling_code }} = '1' and length({{ digits }}) = 10 then {{ dbt.concat(["'1'", digits]) }}
            when {{ calling_code }} = '1' and length({{ digits }}) = 11 and {{ digits }} like '1%' then {{ digits }}
            when {{ calling_code }} = '1' then null
            when {{ country_code }} = 'IT' then {{ dbt.concat([calling_code, digits]) }}
            when {{ digits }} like '0%' then {{ dbt.concat([calling_code, 'substr(' ~ digits ~ ', 2)']) }}
            else {{ dbt.concat([calling_code, digits]) }}
        end
    {%- endset -%}
    case
        when length({{ candidate }}) between 8 and 15
         and ({{ candidate }} not like '1%' or length({{ candidate }}) = 11)
        then {{ candidate }}
    end
{%- endmacro %}

{#- Countries whose postal services need a state, province or region on the address: the SFTP mail-house
    connector applies the same rule (STATE_REQUIRED_COUNTRIES) and takes an address without a country as US. -#}
{% macro postal_region_is_required(country_code) -%}
    coalesce({{ country_code }}, 'US') in ('US', 'CA', 'AU', 'BR', 'MX')
{%- endmacro %}

{#- A postal code shaped as the country's postal service defines it; unknown countries need any non-blank code. -#}
{% macro postal_code_is_valid(postal_code, country_code) -%}
    coalesce(case {{ country_code }}
        when 'US' then {{ tidings_regexp_like(postal_code, '^[0-9]{5}(-[0-9]{4})?$') }}
        when 'CA' then {{ tidings_regexp_like(postal_code, '^[A-Z][0-9][A-Z] ?[0-9][A-Z][0-9]$') }}
        when 'GB' then {{ tidings_regexp_like(postal_code, '^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$') }}
        when 'NL' then {{ tidings_regexp_like(postal_code, '^[1-9][0-9]{3} ?[A-Z]{2}$') }}
        when 'AU' then {{ tidings_regexp_like(postal_code, '^[0-9]{4}$') }}
        when 'BR' then {{ tidings_regexp_like(postal_code, '^[0-9]{5}-?[0-9]{3}$') }}
        when 'SE' then {{ tidings_regexp_like(postal_code, '^[0-9]{3} ?[0-9]{2}$') }}
        when 'IE' then {{ tidings_regexp_like(postal_code, '^[A-Z0-9]{3} ?[A-Z0-9]{4}$') }}
        when 'DE' then {{ tidings_regexp_like(postal_code, '^[0-9]{5}$') }}
        when 'FR' then {{ tidings_regexp_like(postal_code, '^[0-9]{5}$') }}
        when 'ES' then {{ tidings_regexp_like(postal_code, '^[0-9]{5}$') }}
        when 'IT' then {{ tidings_regexp_like(postal_code, '^[0-9]{5}$') }}
        when 'MX' then {{ tidings_regexp_like(postal_code, '^[0-9]{5}$') }}
        else {{ postal_code }} is not null and trim({{ postal_code }}) <> ''
    end, false)
{%- endmacro %}

{#- The time zone names the warehouse can convert with (one column: name). Staging keeps only these, so one
    unknown value in the CRM (a typo, 'Paris time') becomes null instead of failing every local-time
    conversion downstream (the warehouse raises on an unknown zone). -#}
{% macro known_time_zones() -%}
    {{ return(adapter.dispatch('known_time_zones', 'tidings')()) }}
{%- endmacro %}

{% macro default__known_time_zones() -%}
    {{ exceptions.raise_compiler_error(
        "known_time_zones has no implementation for adapter '" ~ adapter.type() ~ "': add a macro "
        ~ adapter.type() ~ "__known_time_zones that selects the warehouse's time zone names as `name`.") }}
{%- endmacro %}

{% macro duckdb__known_time_zones() -%}
    select name from pg_timezone_names()
{%- endmacro %}

{% macro postgres__known_time_zones() -%}
    select name from pg_timezone_names
{%- endmacro %}
