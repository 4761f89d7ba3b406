-- Read at least `content_topic_min_articles` distinct articles on one topic recently: content retargeting.
-- One row per customer, for the topic they read most (ties broken by topic name).
with customers as (
    select * from {{ ref('dim_customers') }}
),

article_reads as (
    select
        customer_id,
        content_topic,
        count(distinct page_path) as articles_read,
        max(occurred_at) as last_read_at
    from {{ ref('fct_events') }}
    where event_type = 'page_view'
        and page_category = 'blog'
        and content_topic is not null
        and event_date > {{ dbt.dateadd('day', -var('content_topic_window_days'), as_of_date()) }}
        and event_date <= {{ as_of_date() }}
    group by customer_id, content_topic
),

top_topic as (
    select
        *,
        row_number() over (partition by customer_id order by articles_read desc, content_topic) as topic_rank
    from article_reads
    where articles_read >= {{ var('content_topic_min_articles') }}
),

final as (
    select
        customers.customer_id,
        'ads' as channel,
        customers.email,
        customers.phone_e164,
        customers.first_name,
        customers.last_name,
        customers.country_code,
        top_topic.content_topic,
        top_topic.articles_read,
        top_topic.last_read_at
    from top_topic
    inner join customers on customers.customer_id = top_topic.customer_id
    where top_topic.topic_rank = 1
        and customers.can_ads
        and not customers.in_global_control_group
)

select * from final
