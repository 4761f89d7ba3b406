-- Every country of seed country_time_zones has exactly one main zone (the calendar day of its customers who have
-- no time zone of their own); returns the countries with none or several.
select
    country_code,
    count(case when is_main then 1 end) as main_zones
from {{ ref('country_time_zones') }}
group by country_code
having count(case when is_main then 1 end) <> 1
