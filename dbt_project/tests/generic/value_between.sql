{#-
    Every non-null value of the column lies within [min_value, max_value]. For settings marketers edit in seeds,
    where an out-of-range value changes behaviour silently (a holdout of 150% holds out everyone). Failing rows
    carry the value and the allowed range.
-#}
{% test value_between(model, column_name, min_value, max_value) %}

select
    {{ column_name }} as value,
    'must be between {{ min_value }} and {{ max_value }}' as problem
from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}

{% endtest %}
