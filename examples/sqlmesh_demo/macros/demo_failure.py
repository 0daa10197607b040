"""Failure switch for tests and demos.

`@demo_failure('model')` renders to 0 unless the environment variable RUNYARD_DEMO_FAIL
(read when SQLMesh renders the query, i.e. at plan or run time) names that kind:
- RUNYARD_DEMO_FAIL=model: shop.daily_orders casts the string 'abc' to an integer and fails;
- RUNYARD_DEMO_FAIL=audit: the audit assert_positive_revenue on shop.daily_revenue fails.
Several kinds may be given, separated by commas.
"""

import os

from sqlglot import exp
from sqlmesh import macro


@macro()
def demo_failure(evaluator, kind):
    wanted = {k.strip() for k in os.environ.get("RUNYARD_DEMO_FAIL", "").split(",") if k.strip()}
    name = kind.name if isinstance(kind, exp.Expression) else str(kind)
    if name in wanted:
        return exp.cast(exp.Literal.string("abc"), "INT") if name == "model" else exp.Literal.number(1)
    return exp.Literal.number(0)
