-- Deliberately failing data test (tag: broken): one demo customer spent less than 10.
-- `dbt test --select tag:broken` reports it as a test failure (status "fail", exit 1).
{{ config(tags=['broken']) }}

select customer_id, customer_name, lifetime_value
from {{ ref('customer_orders') }}
where lifetime_value < 10
