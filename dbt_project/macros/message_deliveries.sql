{#-
    Shared by the models that turn message occurrences into deliveries (message_decisions,
    message_delivery_log): both must agree on the delivery key the send_once syncs deduplicate on.
-#}

{#- The channels a message can go out on; message_catalog.channel_candidates lists some of them in preference
    order (checked by the generic test channel_list). -#}
{% macro message_channels() -%}
    {{ return(['email', 'sms', 'direct_mail']) }}
{%- endmacro %}

{#- The delivery key of a message occurrence on one channel: md5(occurrence_key | channel). -#}
{% macro message_delivery_key(occurrence_key, channel) -%}
    {{ dbt.hash(dbt.concat([occurrence_key, "'|'", channel])) }}
{%- endmacro %}

{#- One row per candidate channel of each occurrence in the CTE or relation `occurrences` (its
    channel_candidates lists each of message_channels() at most once, in preference order: the generic test
    channel_list holds the seed to that, so reading one position per known channel reads every entry), adding
    channel, channel_position and delivery_key (computed once here, so callers select and join on the column). -#}
{% macro message_channel_options(occurrences) -%}
    select
        options.*,
        {{ message_delivery_key('options.occurrence_key', 'options.channel') }} as delivery_key
    from (
        {%- for position in range(1, message_channels() | length + 1) %}
        select
            {{ occurrences }}.*,
            {{ position }} as channel_position,
            trim({{ dbt.split_part(occurrences ~ '.channel_candidates', "','", position) }}) as channel
        from {{ occurrences }}
        {%- if not loop.last %}
        union all
        {%- endif %}
        {%- endfor %}
    ) as options
    where options.channel <> ''
{%- endmacro %}
