{#-
  Regular expressions differ per warehouse; dbt ships no cross-database macro for them, so these dispatch.
  `tidings_regexp_like` is a full match when the pattern is anchored with ^ and $.
-#}
{% macro tidings_regexp_like(expression, pattern) -%}
    {#- patterns go into a SQL string literal: double any single quote -#}
    {{ return(adapter.dispatch('tidings_regexp_like', 'tidings')(expression, pattern | replace("'", "''"))) }}
{%- endmacro %}

{% macro default__tidings_regexp_like(expression, pattern) -%}
    regexp_like({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro duckdb__tidings_regexp_like(expression, pattern) -%}
    regexp_matches({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro postgres__tidings_regexp_like(expression, pattern) -%}
    ({{ expression }} ~ '{{ pattern }}')
{%- endmacro %}

{% macro bigquery__tidings_regexp_like(expression, pattern) -%}
    regexp_contains({{ expression }}, r'{{ pattern }}')
{%- endmacro %}

{#- Replace every match of `pattern`. -#}
{% macro tidings_regexp_replace(expression, pattern, replacement) -%}
    {{ return(adapter.dispatch('tidings_regexp_replace', 'tidings')(expression, pattern, replacement)) }}
{%- endmacro %}

{% macro default__tidings_regexp_replace(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '{{ replacement }}')
{%- endmacro %}

{% macro duckdb__tidings_regexp_replace(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{% macro postgres__tidings_regexp_replace(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{#- The first capture group of `pattern` in `expression`, or null. -#}
{% macro tidings_regexp_extract(expression, pattern) -%}
    {{ return(adapter.dispatch('tidings_regexp_extract', 'tidings')(expression, pattern)) }}
{%- endmacro %}

{% macro default__tidings_regexp_extract(expression, pattern) -%}
    regexp_substr({{ expression }}, '{{ pattern }}', 1, 1, 'e', 1)
{%- endmacro %}

{% macro duckdb__tidings_regexp_extract(expression, pattern) -%}
    nullif(regexp_extract({{ expression }}, '{{ pattern }}', 1), '')
{%- endmacro %}

{% macro postgres__tidings_regexp_extract(expression, pattern) -%}
    substring({{ expression }} from '{{ pattern }}')
{%- endmacro %}

{% macro bigquery__tidings_regexp_extract(expression, pattern) -%}
    regexp_extract({{ expression }}, r'{{ pattern }}')
{%- endmacro %}
