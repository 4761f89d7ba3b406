{#-
  For a singular test that reads audiences by a list of their names: stops compilation when a seg_* model is in
  none of `listed`, so a new audience cannot slip past the test. The error reads `before` ~ <model> ~ `after`.
-#}
{% macro require_every_segment_listed(listed, before, after) -%}
    {%- if execute %}
        {%- for node in graph.nodes.values()
            if node.resource_type == 'model' and node.name.startswith('seg_') and node.name not in listed %}
            {{ exceptions.raise_compiler_error(before ~ node.name ~ after) }}
        {%- endfor %}
    {%- endif %}
{%- endmacro %}
