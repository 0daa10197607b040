-- Deliberately broken (tag: broken): it compiles, but fails when executed because
-- 'abc' cannot be cast to an integer. Exclude it with `--exclude tag:broken`.
select
    order_id,
    cast('abc' as integer) as broken_amount
from {{ ref('stg_orders') }}
