# Recipes for day-to-day work; `./dev` does the set-up they rely on.

default:
    @just --list

# create the virtualenv with every development dependency (from requirements/dev.lock)
setup:
    ./dev test --co -q > /dev/null

# recompile requirements/*.lock from pyproject.toml (--upgrade[-package NAME]: newer versions)
lock *ARGS:
    PATH="$PWD/.venv/bin:$PATH" python3 requirements/lock.py {{ARGS}}

# ruff lint and format check
lint:
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .

# mypy --strict over app, validators, tests, bench and requirements
typecheck:
    .venv/bin/mypy

# the whole suite, exactly as CI runs it
test *ARGS:
    ./dev test {{ARGS}}

# the HTTP service on RUNYARD_HOST:RUNYARD_PORT
serve:
    ./dev serve

# the end-to-end demo on the example dbt and SQLMesh projects
demo:
    ./dev demo

# a longer schemathesis pass over every operation of the API
fuzz examples="200":
    RUNYARD_FUZZ_EXAMPLES={{examples}} ./dev test tests/integration/test_api_fuzz.py

# every benchmark in bench/ (their figures go to bench/results/), then the results table
bench:
    #!/usr/bin/env bash
    ./dev test --co -q > /dev/null
    set -u
    failed=0
    for b in bench/[a-z]*.py; do
        [ "$b" = bench/report.py ] && continue
        echo "== $b"
        PYTHONPATH=. .venv/bin/python "$b" || failed=1
    done
    .venv/bin/python bench/report.py
    exit $failed
