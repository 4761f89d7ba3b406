{#-
  A deterministic surrogate key from several columns (like dbt_utils.generate_surrogate_key, which we cannot
  install offline): nulls become a marker so (null, 'a') and ('', 'a') differ; parts are '|'-separated.
-#}
{% macro tidings_hash(columns) -%}
    {%- set parts = [] -%}
    {%- for column in columns -%}
        {%- do parts.append("coalesce(cast(" ~ column ~ " as " ~ dbt.type_string() ~ "), '_null_')") -%}
        {%- if not loop.last %}{% do parts.append("'|'") %}{% endif -%}
    {%- endfor -%}
    {{ dbt.hash(dbt.concat(parts)) }}
{%- endmacro %}

{#-
  A stable bucket 0..buckets-1 per key (e.g. holdout groups): the first 8 hex digits of md5, as an integer.
-#}
{% macro tidings_bucket(column, buckets=100) -%}
    {{ tidings_hex_to_int("substr(" ~ dbt.hash(column) ~ ", 1, 8)") }} % {{ buckets }}
{%- endmacro %}

{% macro tidings_hex_to_int(hex_expression) -%}
    {{ return(adapter.dispatch('tidings_hex_to_int', 'tidings')(hex_expression)) }}
{%- endmacro %}

{% macro default__tidings_hex_to_int(hex_expression) -%}
    cast(to_number({{ hex_expression }}, 'XXXXXXXX') as bigint)
{%- endmacro %}

{% macro duckdb__tidings_hex_to_int(hex_expression) -%}
    cast(('0x' || {{ hex_expression }}) as bigint)
{%- endmacro %}

{% macro postgres__tidings_hex_to_int(hex_expression) -%}
    cast(('x' || lpad({{ hex_expression }}, 16, '0'))::bit(64) as bigint)
{%- endmacro %}
