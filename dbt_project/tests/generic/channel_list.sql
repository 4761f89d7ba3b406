{#-
    A comma-separated list of message channels in preference order (message_catalog.channel_candidates): at most
    one entry per channel of message_channels(), each of them known, none twice, none empty. One failing row per
    problem, naming it and the fix, when the seed is loaded: before, a typo only failed the decisions'
    accepted_values test after the message models were built, a repeated channel their unique tests, and an entry
    past the third was dropped silently. Cross-database macros only, like the models.
-#}
{% test channel_list(model, column_name) %}
{%- set channels = message_channels() %}
{%- set most = channels | length %}

with lists as (
    select distinct
        {{ column_name }} as channel_list,
        {{ dbt.length(column_name) }} - {{ dbt.length(dbt.replace(column_name, "','", "''")) }} + 1 as entry_count
    from {{ model }}
    where {{ column_name }} is not null
),

entries as (
    {%- for position in range(1, most + 1) %}
    select
        channel_list,
        trim({{ dbt.split_part('channel_list', "','", position) }}) as channel
    from lists
    where entry_count >= {{ position }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

problems as (
    select
        channel_list,
        'more than {{ most }} entries; list each of {{ channels | join(", ") }} at most once' as problem
    from lists
    where entry_count > {{ most }}

    union all

    select
        channel_list,
        'an empty entry (a stray comma, or no channel); list at least one of {{ channels | join(", ") }}' as problem
    from entries
    where channel = ''
    group by channel_list

    union all

    select
        channel_list,
        {{ dbt.concat(["'unknown channel \"'", "channel", "'\"; use one of " ~ channels | join(", ") ~ "'"]) }}
            as problem
    from entries
    where channel <> '' and channel not in ('{{ channels | join("', '") }}')

    union all

    select
        channel_list,
        {{ dbt.concat(["'channel \"'", "channel", "'\" listed twice; list each channel once'"]) }} as problem
    from entries
    where channel <> ''
    group by channel_list, channel
    having count(*) > 1
)

select * from problems
{% endtest %}
