select
    c.customer_id,
    c.customer_name,
    c.country,
    count(o.order_id) as order_count,
    coalesce(sum(o.amount) filter (where o.status <> 'returned'), 0) as lifetime_value,
    min(o.order_date) as first_order_date
from {{ ref('stg_customers') }} as c
left join {{ ref('stg_orders') }} as o on o.customer_id = c.customer_id
group by 1, 2, 3
