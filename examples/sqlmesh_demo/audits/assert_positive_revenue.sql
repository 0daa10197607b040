-- Passes when every day has positive revenue. Set RUNYARD_DEMO_FAIL=audit to make it fail.
AUDIT (
  name assert_positive_revenue
);

SELECT *
FROM @this_model
WHERE
  revenue <= 0 OR @demo_failure('audit') <> 0
