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
    channel_candidates lists channels in preference order; empty entries are skipped), adding channel,
    channel_position and delivery_key (computed once here, so callers select and join on the column). Every
    entry is read, so a list the generic test channel_list rejects still fails the decisions' tests, never
    loses a channel silently. -#}
{% macro message_channel_options(occurrences) -%}
    select
        options.*,
        {{ message_delivery_key('options.occurrence_key', 'options.channel') }} as delivery_key
    from (
        select
            {{ occurrences }}.*,
            cast(listed.channel_position as integer) as channel_position,
            trim(listed.channel) as channel
        from {{ occurrences }},
            unnest(string_split({{ occurrences }}.channel_candidates, ',')) with ordinality
                as listed (channel, channel_position)
    ) as options
    where options.channel <> ''
{%- endmacro %}
