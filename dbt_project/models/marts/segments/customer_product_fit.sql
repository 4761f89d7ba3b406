-- Which customers fit which launched product (seed `product_launches`): they used the product's related feature
-- or read its related content topic in the last 90 days, and have not tried the product itself since launch.
-- One row per customer and product; shared by seg_new_product_fit and msg_new_feature_intro.
with launches as (
    select * from {{ ref('product_launches') }}
    where launched_on <= {{ as_of_date() }}
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
        ) as related_articles_read,
        sum(
            case
                when recent_events.feature_name = launches.product_key
                    and recent_events.event_date >= launches.launched_on
                    then 1
                else 0
            end
        ) as product_uses
    from launches
    inner join recent_events
        on recent_events.feature_name in (launches.fit_feature_name, launches.product_key)
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
    where fit_signals.product_uses = 0
        and (fit_signals.related_feature_uses > 0 or fit_signals.related_articles_read > 0)
)

select * from final
