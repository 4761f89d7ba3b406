{#-
    A table of Tidings' own sync state (source `tidings`, written by syncs/state.py) with its `columns` cast as
    given, or no rows with the same columns while the table does not exist (no sync has run against this
    warehouse yet). `columns` is a list of (name, type) pairs. The source is named outside any condition, so
    dbt records the dependency when it parses the model.
-#}
{% macro tidings_state_table(table_name, columns) -%}
    {%- set state_table = source('tidings', table_name) -%}
    {%- set existing = load_relation(state_table) if execute else none -%}
    select
        {%- for name, data_type in columns %}
        cast({{ name if existing is not none else 'null' }} as {{ data_type }}) as {{ name }}
            {{- ',' if not loop.last }}
        {%- endfor %}
    {%- if existing is not none %}
    from {{ state_table }}
    {%- else %}
    where 1 = 0
    {%- endif %}
{%- endmacro %}
