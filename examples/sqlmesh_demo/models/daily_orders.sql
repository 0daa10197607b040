-- Synthetic orders: three per day, generated for each interval SQLMesh processes.
MODEL (
  name shop.daily_orders,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column order_date
  ),
  cron '@daily',
  grain (order_id),
  audits (
    not_null(columns := (order_id, order_date, amount)),
    unique_values(columns := (order_id))
  )
);

SELECT
  CAST(strftime(d.day, '%Y%m%d') AS INTEGER) * 10 + n.i AS order_id,
  CAST(d.day AS DATE) AS order_date,
  (n.i % 3) + 1 AS customer_id,
  CAST(10 + 5 * n.i + dayofmonth(d.day) AS DECIMAL(10, 2)) + @demo_failure('model') AS amount
FROM generate_series(CAST(@start_ds AS DATE), CAST(@end_ds AS DATE), INTERVAL 1 DAY) AS d(day)
CROSS JOIN range(3) AS n(i)
WHERE
  CAST(d.day AS DATE) BETWEEN @start_ds AND @end_ds
