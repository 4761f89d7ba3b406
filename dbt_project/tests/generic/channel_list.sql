{#-
    A comma-separated list of message channels in preference order (message_catalog.channel_candidates): each
    entry one of message_channels(), none twice, at least one. One failing row per problem, naming it and the
    fix, when the seed is loaded: before, a typo only failed the decisions' accepted_values test after the
    message models were built, and a repeated channel their unique tests.
-#}
{% test channel_list(model, column_name) %}
{%- set channels = message_channels() %}

with lists as (
    select distinct {{ column_name }} as channel_list
    from {{ model }}
    where {{ column_name }} is not null
),

entries as (
    select
        lists.channel_list,
        trim(listed.channel) as channel
    from lists,
        unnest(string_split(lists.channel_list, ',')) as listed (channel)
),

problems as (
    select
        channel_list,
        'unknown channel "' || channel || '"; use one of {{ channels | join(", ") }}' as problem
    from entries
    where channel <> '' and channel not in ('{{ channels | join("', '") }}')

    union all

    select
        channel_list,
        'channel "' || channel || '" listed twice; list each channel once' as problem
    from entries
    where channel <> ''
    group by channel_list, channel
    having count(*) > 1

    union all

    select
        channel_list,
        'no channel; list at least one of {{ channels | join(", ") }}' as problem
    from lists
    where trim(replace(channel_list, ',', '')) = ''
)

select * from problems
{% endtest %}
