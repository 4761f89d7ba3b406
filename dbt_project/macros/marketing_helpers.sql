{#
    Portable helpers for the marketing marts (segments, messages, metrics).
    Each dispatches by adapter so another warehouse only needs its own `<adapter>__` implementation.
#}

{% macro hash_bucket(expression, buckets=100) -%}
    {{ return(adapter.dispatch('hash_bucket', 'tidings')(expression, buckets)) }}
{%- endmacro %}

{#- A stable bucket in [0, buckets) from the md5 of `expression`: the same input always lands in the same bucket. -#}
{% macro default__hash_bucket(expression, buckets) -%}
    {{ exceptions.raise_compiler_error(
        "hash_bucket has no implementation for adapter '" ~ adapter.type() ~ "': add a macro "
        ~ adapter.type() ~ "__hash_bucket that turns the first 8 hex digits of an md5 into an integer.") }}
{%- endmacro %}

{% macro duckdb__hash_bucket(expression, buckets) -%}
    mod(cast(('0x' || substr({{ dbt.hash(expression) }}, 1, 8)) as bigint), {{ buckets }})
{%- endmacro %}

{% macro postgres__hash_bucket(expression, buckets) -%}
    mod(('x' || substr({{ dbt.hash(expression) }}, 1, 8))::bit(32)::bigint, {{ buckets }})
{%- endmacro %}

{#- Whether the customer is in the global control group: a stable hash bucket below `global_control_group_pct`.
    That customer gets no marketing on any channel (messages and marketing audiences) and is measured against. -#}
{% macro in_global_control_group(customer_id) -%}
    ({{ hash_bucket(dbt.concat(["'global_control|'", customer_id])) }} < {{ var('global_control_group_pct') }})
{%- endmacro %}

{% macro to_local_timestamp(utc_timestamp, time_zone) -%}
    {{ return(adapter.dispatch('to_local_timestamp', 'tidings')(utc_timestamp, time_zone)) }}
{%- endmacro %}

{#- Wall-clock time in `time_zone` (an IANA name) for a naive timestamp stored in UTC. -#}
{% macro default__to_local_timestamp(utc_timestamp, time_zone) -%}
    convert_timezone('UTC', {{ time_zone }}, {{ utc_timestamp }})
{%- endmacro %}

{% macro duckdb__to_local_timestamp(utc_timestamp, time_zone) -%}
    timezone({{ time_zone }}, timezone('UTC', cast({{ utc_timestamp }} as timestamp)))
{%- endmacro %}

{% macro json_payload(columns) -%}
    {{ return(adapter.dispatch('json_payload', 'tidings')(columns)) }}
{%- endmacro %}

{#- JSON text of an object with one key per column in `columns` (its value is that column's value). -#}
{% macro default__json_payload(columns) -%}
    {{ exceptions.raise_compiler_error(
        "json_payload has no implementation for adapter '" ~ adapter.type() ~ "': add a macro "
        ~ adapter.type() ~ "__json_payload that builds a JSON object as text.") }}
{%- endmacro %}

{% macro duckdb__json_payload(columns) -%}
    cast(json_object(
        {%- for column in columns %}
        '{{ column }}', {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    ) as varchar)
{%- endmacro %}

{% macro postgres__json_payload(columns) -%}
    cast(json_build_object(
        {%- for column in columns %}
        '{{ column }}', {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
    ) as text)
{%- endmacro %}
