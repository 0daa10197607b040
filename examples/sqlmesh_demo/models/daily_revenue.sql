-- Revenue per day, built from shop.daily_orders.
MODEL (
  name shop.daily_revenue,
  kind INCREMENTAL_BY_TIME_RANGE (
    time_column order_date
  ),
  cron '@daily',
  grain (order_date),
  audits (
    assert_positive_revenue
  )
);

SELECT
  order_date,
  COUNT(*) AS order_count,
  SUM(amount) AS revenue
FROM shop.daily_orders
WHERE
  order_date BETWEEN @start_ds AND @end_ds
GROUP BY
  order_date
