-- Every due message occurrence of every sequence (msg_*), in the shape message_decisions arbitrates.
{%- set sequences = [
    'msg_billing_alerts', 'msg_policy_change', 'msg_trial_ending', 'msg_abandoned_cart', 'msg_renewal_reminder',
    'msg_onboarding', 'msg_reengagement', 'msg_upsell_expansion', 'msg_new_feature_intro', 'msg_loyalty_status',
    'msg_usage_summary'
] %}
{%- if execute %}
    {%- for node in graph.nodes.values()
        if node.resource_type == 'model' and node.name.startswith('msg_') and node.name not in sequences %}
        {{ exceptions.raise_compiler_error(
            "message_candidates does not include " ~ node.name ~ ": add it to `sequences` in message_candidates.sql") }}
    {%- endfor %}
{%- endif %}
with unioned as (
    {%- for sequence in sequences %}
    select
        occurrence_key,
        customer_id,
        message_name,
        message_kind,
        priority,
        channel_candidates,
        urgent,
        payload
    from {{ ref(sequence) }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select * from unioned
)

select * from final
