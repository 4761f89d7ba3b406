{#-
  The date every "last N days" rule is anchored to: dbt var `as_of_date`, else env var TIDINGS_AS_OF_DATE,
  else the warehouse's current date. A fixed date makes builds reproducible (tests, backfills, demos).
  `as_of_timestamp()` is the start of that day: facts strictly before it are "the past".
-#}
{% macro as_of_date() -%}
    {%- set value = var('as_of_date', none) or env_var('TIDINGS_AS_OF_DATE', '') -%}
    {%- if value -%}
        {%- set parsed = modules.datetime.datetime.strptime(value | string, '%Y-%m-%d') -%}
        cast('{{ parsed.strftime("%Y-%m-%d") }}' as date)
    {%- else -%}
        current_date
    {%- endif -%}
{%- endmacro %}

{% macro as_of_timestamp() -%}
    cast({{ as_of_date() }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#- The instant `days` days before the as-of instant (use for "in the last N days" lower bounds). -#}
{% macro days_before_as_of(days) -%}
    {{ dbt.dateadd('day', '-1 * (' ~ days ~ ')', as_of_timestamp()) }}
{%- endmacro %}

{#- The first instant of the `days`-day window that ends with the as-of day ("in the last N days", today included). -#}
{% macro window_start(days) -%}
    {{ days_before_as_of(days - 1) }}
{%- endmacro %}

{#- The instant `days` days after the as-of instant (use for "in the next N days" upper bounds). -#}
{% macro days_after_as_of(days) -%}
    {{ dbt.dateadd('day', days, as_of_timestamp()) }}
{%- endmacro %}
