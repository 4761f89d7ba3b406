-- Which customers fit which launched product (seed `product_launches`): they used the product's related feature
-- or read its related content topic in the last 90 days, and have never tried the product itself since launch
-- (all of fct_events, not only the last 90 days: an early user is no prospect three months on). A launch counts as
-- new for `product_launch_new_days`; after that nobody is told about it as new.
-- One row per customer and product; shared by seg_new_product_fit and msg_new_feature_intro.
with launches as (
    select * from {{ ref('product_launches') }}
    where launched_on <= {{ as_of_date() }}
        and launched_on > {{ dbt.dateadd('day', -1 * var('product_launch_new_days'), as_of_date()) }}
),

tried as (
    select distinct launches.product_key, events.customer_id
    from launches
    inner join {{ ref('fct_events') }} as events
        on events.feature_name = launches.product_key
        and events.event_date >= launches.launched_on
        and events.event_date <= {{ as_of_date() }}
),

recent_events as (
    select * from {{ ref('fct_events') }}
    where event_date > {{ dbt.dateadd('day', -90, as_of_date()) }}
        and event_date <= {{ as_of_date() }}
),

fit_signals as (
    select
        launches.product_key,
        recent_events.customer_id,
        sum(case when recent_events.feature_name = launches.fit_feature_name then 1 else 0 end)
            as related_feature_uses,
        count(
            distinct case
                when recent_events.content_topic = launches.fit_content_topic then recent_events.page_path
            end
        ) as related_articles_read
    from launches
    inner join recent_events
        on recent_events.feature_name = launches.fit_feature_name
        or recent_events.content_topic = launches.fit_content_topic
    group by launches.product_key, recent_events.customer_id
),

final as (
    select
        fit_signals.customer_id,
        launches.product_key,
        launches.product_name,
        launches.pitch,
        fit_signals.related_feature_uses,
        fit_signals.related_articles_read,
        case
            when fit_signals.related_feature_uses > 0 then {{ dbt.concat(["'uses '", 'launches.fit_feature_name']) }}
            else {{ dbt.concat(["'reads about '", 'launches.fit_content_topic']) }}
        end as fit_reason
    from fit_signals
    inner join launches on launches.product_key = fit_signals.product_key
    left join tried
        on tried.product_key = fit_signals.product_key
        and tried.customer_id = fit_signals.customer_id
    where tried.customer_id is null
        and (fit_signals.related_feature_uses > 0 or fit_signals.related_articles_read > 0)
)

select * from final
