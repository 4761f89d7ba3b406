"""CRM contacts: who the customers are, which behaviour persona drives their data, and their messy CRM record.

`sd_people` (temporary) holds the hidden truth every other table derives from: persona, country, signup age,
favourite content topic, referral. `raw.crm_customers` is what a CRM export really looks like: stray spaces,
upper-case and invalid emails, phones in mixed national/international formats, accented names, missing or
malformed postal addresses and loosely spelled countries.
"""

from __future__ import annotations

# Personas with their share of the base and signup age in days (prospects never signed up).
PERSONAS_SQL = """
create or replace temp table sd_personas as
select * from (values
    ('prospect',          0.10, null, null),
    ('new_unactivated',   0.05,    1,   13),
    ('trial_low_usage',   0.04,    8,   13),
    ('trial_engaged',     0.04,    1,   13),
    ('engaged',           0.24,   30, 1000),
    ('usage_drop',        0.06,   90,  900),
    ('heavy_user',        0.04,   60,  900),
    ('payment_failed',    0.03,   60,  700),
    ('repeat_buyer',      0.08,  120, 1200),
    ('lapsed_high_value', 0.04,  400, 1500),
    ('churned',           0.06,  120, 1000),
    ('casual',            0.22,   30, 1000)
) as p(persona, share, signup_lo, signup_hi)
"""

COUNTRIES_SQL = """
create or replace temp table sd_countries as
select * from (values
    ('US', 0.40, '1',  '',  7, ['America/New_York', 'America/Chicago', 'America/Denver', 'America/Los_Angeles'],
     ['New York', 'Chicago', 'Austin', 'Denver', 'Seattle', 'Boston', 'San Jose'],
     ['NY', 'IL', 'TX', 'CO', 'WA', 'MA', 'CA'],
     ['Main St', 'Oak Avenue', 'Maple Drive', 'Cedar Lane', 'Elm Street', 'Pine Road']),
    ('GB', 0.12, '44', '0', 10, ['Europe/London'], ['London', 'Manchester', 'Leeds', 'Glasgow', 'Bristol'], [],
     ['High Street', 'Station Road', 'Church Lane', 'Victoria Road']),
    ('DE', 0.10, '49', '0', 10, ['Europe/Berlin'], ['Berlin', 'München', 'Köln', 'Düsseldorf', 'Hamburg'], [],
     ['Hauptstraße', 'Schillerstraße', 'Gartenweg', 'Bahnhofstraße']),
    ('FR', 0.08, '33', '0',  9, ['Europe/Paris'], ['Paris', 'Lyon', 'Orléans', 'Nîmes', 'Marseille'], [],
     ['Rue de la Paix', 'Avenue des Champs', 'Rue Victor Hugo', 'Boulevard Saint-Germain']),
    ('CA', 0.07, '1',  '',  7, ['America/Toronto', 'America/Vancouver', 'America/Montreal'],
     ['Toronto', 'Vancouver', 'Montréal', 'Québec', 'Calgary'], ['ON', 'BC', 'QC', 'QC', 'AB'],
     ['King Street', 'Rue Sainte-Catherine', 'Granville Street']),
    ('ES', 0.05, '34', '',   9, ['Europe/Madrid'], ['Madrid', 'Barcelona', 'Sevilla', 'Málaga', 'A Coruña'], [],
     ['Calle Mayor', 'Gran Vía', 'Calle de Alcalá']),
    ('AU', 0.05, '61', '0',  9, ['Australia/Sydney', 'Australia/Melbourne', 'Australia/Perth'],
     ['Sydney', 'Melbourne', 'Perth'], ['NSW', 'VIC', 'WA'], ['George Street', 'Collins Street', 'Hay Street']),
    ('NL', 0.04, '31', '0',  9, ['Europe/Amsterdam'], ['Amsterdam', 'Rotterdam', 'Utrecht'], [],
     ['Keizersgracht', 'Coolsingel', 'Oudegracht']),
    ('BR', 0.04, '55', '',  11, ['America/Sao_Paulo'], ['São Paulo', 'Rio de Janeiro', 'Belo Horizonte'],
     ['SP', 'RJ', 'MG'],
     ['Rua Augusta', 'Avenida Paulista', 'Rua da Glória']),
    ('SE', 0.03, '46', '0',  9, ['Europe/Stockholm'], ['Stockholm', 'Göteborg', 'Malmö'], [],
     ['Kungsgatan', 'Drottninggatan', 'Storgatan']),
    ('IT', 0.03, '39', '',  10, ['Europe/Rome'], ['Roma', 'Milano', 'Napoli', 'Forlì'], [],
     ['Via Roma', 'Via Garibaldi', 'Corso Italia'])
) as c(country, share, calling_code, trunk_prefix, subscriber_digits, timezones, cities, states, streets)
"""

# Cumulative bounds make a single uniform draw select one persona / country.
PEOPLE_SQL = """
create or replace temp table sd_people as
with personas as (
    select *, sum(share) over (order by share desc, persona) - share as lo,
           sum(share) over (order by share desc, persona) as hi
    from sd_personas
),
countries as (
    select *, sum(share) over (order by share desc, country) - share as lo,
           sum(share) over (order by share desc, country) as hi
    from sd_countries
),
ids as (
    select i as id, rnd(i, 'persona') as persona_draw, rnd(i, 'country') as country_draw
    from range(1, sd_customers() + 1) t(i)
)
select
    ids.id,
    'cus_' || lpad(ids.id::varchar, 7, '0') as customer_id,
    p.persona,
    c.country,
    case when p.signup_lo is not null then rint(ids.id, 'signup', p.signup_lo, p.signup_hi) end as signup_days_ago,
    case when p.persona = 'prospect' then rint(ids.id, 'lead_age', 1, 400)
         else rint(ids.id, 'signup', p.signup_lo, p.signup_hi) + rint(ids.id, 'lead_lead', 0, 30)
    end as created_days_ago,
    pick(['product-analytics', 'email-marketing', 'data-engineering', 'growth', 'customer-success'], ids.id, 'topic')
        as favourite_topic,
    p.persona in ('engaged', 'repeat_buyer') and rnd(ids.id, 'advocate') < 0.15 as is_referrer
from ids
join personas p on ids.persona_draw >= p.lo and ids.persona_draw < p.hi
join countries c on ids.country_draw >= c.lo and ids.country_draw < c.hi
"""

# Referred customers point at a referrer chosen uniformly among the referrer pool.
REFERRALS_SQL = """
create or replace temp table sd_referrals as
with referrers as (
    select customer_id, row_number() over (order by id) as n from sd_people where is_referrer
),
pool as (select count(*) as size from referrers),
referred as (
    select p.id, p.customer_id, 1 + floor(rnd(p.id, 'referrer') * pool.size)::bigint as n
    from sd_people p, pool
    where p.persona <> 'prospect' and not p.is_referrer and pool.size > 0 and rnd(p.id, 'referred') < 0.08
)
select referred.customer_id, referrers.customer_id as referred_by_customer_id
from referred join referrers using (n)
"""

CRM_CUSTOMERS_SQL = """
create or replace table raw.crm_customers as
with named as (
    select
        p.*, c.calling_code, c.trunk_prefix, c.subscriber_digits, c.timezones, c.cities, c.states, c.streets,
        pick(['José', 'Zoë', 'Renée', 'François', 'Björn', 'Ana', 'Liam', 'Olivia', 'Noah', 'Emma', 'Chloé',
              'Łukasz', 'Søren', 'Inès', 'Mateo', 'Sofía', 'Jürgen', 'Aoife', 'Priya', 'Wei', 'Amélie', 'Noël',
              'Grace', 'Oliver', 'Lucía', 'Hannah', 'Marco', 'Élodie', 'Ravi', 'Maya'], p.id, 'first') as first_name,
        pick(['García', 'Müller', 'O''Brien', 'Smith', 'Johnson', 'Dubois', 'Nguyen', 'Kowalski', 'da Silva',
              'Rossi', 'Andersson', 'van der Berg', 'Martínez', 'Schröder', 'Lefèvre', 'Brown', 'Patel', 'Kim',
              'Ó Súilleabháin', 'Núñez', 'Jones', 'Wilson', 'Moreau', 'Fischer'], p.id, 'last') as last_name,
        pick(['example.com', 'example.net', 'example.org', 'mail.test', 'inbox.test'], p.id, 'domain') as domain
    from sd_people p join sd_countries c using (country)
),
contact as (
    select *,
        regexp_replace(lower(strip_accents(first_name)), '[^a-z]', '', 'g') || '.'
            || regexp_replace(lower(strip_accents(last_name)), '[^a-z]', '', 'g') || id::varchar as local_part,
        case when calling_code = '1'
             then rint(id, 'area', 201, 989)::varchar || rint(id, 'exchange', 200, 999)::varchar
                  || lpad(rint(id, 'line', 0, 9999)::varchar, 4, '0')
             else rint(id, 'lead_digit', 6, 7)::varchar
                  || lpad(rint(id, 'subscriber', 0, (10 ** (subscriber_digits - 1))::bigint - 1)::varchar,
                          subscriber_digits - 1, '0')
        end as national_number
    from named
),
messy as (
    select *,
        rnd(id, 'email_mess') as email_draw,
        rnd(id, 'phone_mess') as phone_draw,
        rnd(id, 'address_mess') as address_draw,
        local_part || '@' || domain as clean_email
    from contact
)
select
    customer_id,
    case when rnd(id, 'name_mess') < 0.05 then '  ' || upper(first_name) || ' '
         when rnd(id, 'name_mess') < 0.06 then null else first_name end as first_name,
    case when rnd(id, 'name_mess') < 0.03 then upper(last_name) else last_name end as last_name,
    case when email_draw < 0.02 then null
         when email_draw < 0.05 then pick([local_part || '@', local_part || '.' || domain, local_part || '@@' || domain,
                                           'n/a', local_part || '@example', 'no email'], id, 'bad_email')
         when email_draw < 0.15 then '  ' || clean_email || ' '
         when email_draw < 0.22 then upper(clean_email)
         when email_draw < 0.27 then upper(left(clean_email, 1)) || substr(clean_email, 2)
         else clean_email end as email,
    case when phone_draw < 0.08 then null
         when phone_draw < 0.12 then pick(['12345', 'n/a', '000', '+1 555 01', 'call me', '0'], id, 'bad_phone')
         when phone_draw < 0.35 then '+' || calling_code || ' ' || national_number
         -- '00' is the international prefix in Europe; NANP, Australia and Brazil dial other prefixes
         when phone_draw < 0.45 and calling_code not in ('1', '61', '55') then '00' || calling_code || national_number
         when phone_draw < 0.45 then '+' || calling_code || national_number
         when calling_code = '1' and phone_draw < 0.75
             then '(' || left(national_number, 3) || ') ' || substr(national_number, 4, 3) || '-'
                 || right(national_number, 4)
         when calling_code = '1' then left(national_number, 3) || '.' || substr(national_number, 4, 3) || '.'
             || right(national_number, 4)
         when phone_draw < 0.75 then trunk_prefix || left(national_number, 3) || ' ' || substr(national_number, 4)
         else trunk_prefix || left(national_number, 3) || '-' || substr(national_number, 4, 3) || '-'
             || substr(national_number, 7) end as phone,
    case when address_draw < 0.06 then null
         else rint(id, 'house', 1, 250)::varchar || ' ' || pick(streets, id, 'street') end as address_line1,
    case when rnd(id, 'line2') < 0.15
         then 'Apt ' || rint(id, 'apt', 1, 40)::varchar || pick(['A', 'B', 'C'], id, 'apt_letter')
    end as address_line2,
    case when address_draw between 0.06 and 0.08 then null else pick(cities, id, 'city') end as city,
    case when len(states) > 0 then pick(states, id, 'city') end as state,
    case when address_draw between 0.08 and 0.11 then null
         when address_draw between 0.11 and 0.13 then pick(['N/A', '0', 'XXXXX', '?'], id, 'bad_postal')
         when country = 'US' then lpad(rint(id, 'postal', 1001, 99950)::varchar, 5, '0')
         when country = 'CA' then chr(65 + rint(id, 'pc1', 0, 25)::int) || rint(id, 'pc2', 0, 9)::varchar
             || chr(65 + rint(id, 'pc3', 0, 25)::int) || ' ' || rint(id, 'pc4', 0, 9)::varchar
             || chr(65 + rint(id, 'pc5', 0, 25)::int) || rint(id, 'pc6', 0, 9)::varchar
         when country = 'GB' then pick(['SW1A', 'EC1A', 'M1', 'B33', 'LS1', 'G2', 'BS1'], id, 'pc1') || ' '
             || rint(id, 'pc2', 1, 9)::varchar || chr(65 + rint(id, 'pc3', 0, 25)::int)
             || chr(65 + rint(id, 'pc4', 0, 25)::int)
         when country = 'NL' then rint(id, 'postal', 1000, 9999)::varchar || ' '
             || chr(65 + rint(id, 'pc3', 0, 25)::int) || chr(65 + rint(id, 'pc4', 0, 25)::int)
         when country = 'AU' then rint(id, 'postal', 2000, 7999)::varchar
         when country = 'BR'
             then rint(id, 'postal', 10000, 99999)::varchar || '-' || lpad(rint(id, 'pc2', 0, 999)::varchar, 3, '0')
         when country = 'SE'
             then rint(id, 'postal', 100, 999)::varchar || ' ' || lpad(rint(id, 'pc2', 0, 99)::varchar, 2, '0')
         else lpad(rint(id, 'postal', 1000, 99999)::varchar, 5, '0') end as postal_code,
    case when rnd(id, 'country_mess') < 0.80 then country
         when rnd(id, 'country_mess') < 0.90 then lower(country)
         when country = 'US' then pick(['USA', 'United States', ' us'], id, 'country_name')
         when country = 'GB' then pick(['UK', 'United Kingdom'], id, 'country_name')
         else country || ' ' end as country,
    case when rnd(id, 'tz_missing') < 0.02 then null else pick(timezones, id, 'tz') end as timezone,
    case when rnd(id, 'dob_missing') < 0.04 then null
         else (sd_as_of() - to_days(rint(id, 'age_days', 18 * 365, 75 * 365)::int))::date end as date_of_birth,
    pick(['F', 'female', 'M', 'male', 'f', 'm', '', 'X', null, null], id, 'gender') as gender,
    days_before(created_days_ago + rnd(id, 'created_time')) as created_at,
    case when signup_days_ago is not null then days_before(signup_days_ago + rnd(id, 'signup_time'))
    end as signed_up_at,
    case when persona = 'prospect'
             then pick(['organic', 'paid_search', 'paid_social', 'event', 'content'], id, 'channel')
         when r.referred_by_customer_id is not null then 'referral'
         else pick(['organic', 'organic', 'paid_search', 'paid_social', 'partner', 'content'], id, 'channel')
    end as acquisition_channel,
    r.referred_by_customer_id,
    days_before(rnd(id, 'updated') * least(created_days_ago, 30)) as updated_at,
    sd_now() as _loaded_at
from messy left join sd_referrals r using (customer_id)
"""

STATEMENTS = (PERSONAS_SQL, COUNTRIES_SQL, PEOPLE_SQL, REFERRALS_SQL, CRM_CUSTOMERS_SQL)
