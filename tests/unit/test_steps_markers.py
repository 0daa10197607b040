"""The launcher's step runner (real subprocesses) and the tracker's marker parser, fed
hostile pod logs: markers are read strictly and decide nothing but the run's step records."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.executors.k8s import launcher
from app.executors.k8s.tracking import steps as parser
from app.executors.k8s.tracking.steps import finish_steps, read_steps, step_results, steps_error
from app.models import StepPlan

M = parser.STEP_MARKER
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def plans(*names: str, subcommand: str = "build") -> list[StepPlan]:
    return [
        StepPlan(name=n, command=f"dbt {n}", argv=["dbt", n], subcommand=subcommand) for n in names
    ]


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_marker_is_the_same_on_both_sides() -> None:
    assert launcher.STEP_MARKER == parser.STEP_MARKER


def run_launcher_steps(steps: list[dict[str, object]]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = launcher.run_steps(steps)
    return code, out.getvalue()


def test_run_steps_in_order_skip_after_failure_unless_run_on_failure() -> None:
    code, out = run_launcher_steps(
        [
            {"name": "one", "argv": py("pass")},
            {"name": "two", "argv": py("import sys; sys.exit(3)")},
            {"name": "three", "argv": py("pass")},
            {"name": "four", "argv": py("import sys; sys.exit(5)"), "run_on_failure": True},
        ]
    )
    assert code == 3  # the first failed step's code
    read = read_steps(out, plans("one", "two", "three", "four"))
    finish_steps(read, "failed")
    assert [s.status for s in read.steps] == ["success", "failed", "skipped", "failed"]
    assert [s.exit_code for s in read.steps] == [0, 3, None, 5]
    assert "== step 2/4: two ==" in out and "== step 3/4" not in out


def test_a_missing_program_fails_its_step_and_the_run() -> None:
    code, out = run_launcher_steps([{"name": "x", "argv": ["/nonexistent/dbt"]}])
    assert code == 127
    read = read_steps(out, plans("x"))
    assert read.steps[0].status == "failed" and read.steps[0].exit_code == 127


def test_load_steps_refuses_what_runyard_does_not_write() -> None:
    for bad in (
        "[]",
        "{}",
        '[{"argv": []}]',
        '[{"argv": "dbt build"}]',
        '[{"argv": ["dbt", 1]}]',
        '[{"argv": ["dbt"], "name": 5}]',
        json.dumps([{"argv": ["dbt"]}] * 51),
    ):
        with pytest.raises(ValueError):
            launcher.load_steps(bad)
    with pytest.raises(ValueError):
        launcher.load_steps("not json")


def test_main_with_bad_steps_exits_2_without_running_anything() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "RUNYARD_STEPS": '[{"argv": "rm -rf /"}]'}
    done = subprocess.run(
        [sys.executable, launcher.__file__, "--steps"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "cannot read the run's steps" in done.stderr


def test_a_stop_signal_ends_the_current_step_and_skips_the_rest() -> None:
    steps = [
        {"name": "slow", "argv": py("import time; time.sleep(30)")},
        {"name": "after", "argv": py("pass"), "run_on_failure": True},
    ]
    env = {"PATH": os.environ.get("PATH", ""), "RUNYARD_STEPS": json.dumps(steps)}
    process = subprocess.Popen(
        [sys.executable, launcher.__file__, "--steps"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    deadline = time.monotonic() + 20
    while not any('"start"' in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the child has started
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 128 + signal.SIGTERM
    reader.join(5)
    read = read_steps("".join(lines), plans("slow", "after"))
    assert read.steps[0].status == "failed" and read.steps[0].exit_code == 143
    assert read.steps[1].status == "skipped"  # even run_on_failure: the pod is stopping


def test_hostile_markers_are_ignored() -> None:
    log = "".join(
        [
            f'{M}{{"event": "start", "index": 5}}\n',  # no such step
            f'{M}{{"event": "start", "index": -1}}\n',
            f'{M}{{"event": "end", "index": 0, "exit_code": 0}}\n',  # never started
            f"{M}not json\n",
            f'{M}{{"event": "start", "index": 0, "extra": 1}}\n',  # unknown field
            f'{M}{{"event": "start", "index": "0"}}\n',  # wrong type
            f'{M}{{"event": "boom", "index": 0}}\n',
            f'  {M}{{"event": "start", "index": 0}}\n',  # not at the line's start
            f'{M}{{"event": "start", "index": 0, "seconds": {"9" * 600}}}\n',  # too long
            f'{M}{{"event": "start", "index": 0}}\n',  # the real one
            "dbt output\n",
            f'{M}{{"event": "start", "index": 1}}\n',  # 0 has not ended
            f'{M}{{"event": "end", "index": 0, "exit_code": 99999}}\n',  # out of range
            f'{M}{{"event": "end", "index": 0, "exit_code": 1, "seconds": -5}}\n',
            f'{M}{{"event": "end", "index": 0, "exit_code": 1, "seconds": 2.5}}\n',
            f'{M}{{"event": "end", "index": 0, "exit_code": 0}}\n',  # ended already
            f'{M}{{"event": "start", "index": 0}}\n',  # again
            f'{M}{{"event": "skip", "index": 0}}\n',
            f'{M}{{"event": "start", "index": 1}}\n',
        ]
    )
    read = read_steps(log, plans("build", "test"))
    first = read.steps[0]
    assert (first.status, first.exit_code, first.duration_seconds) == ("failed", 1, 2.5)
    assert [s.status for s in read.steps] == ["failed", "running"]
    finish_steps(read, "timed_out")
    assert [s.status for s in read.steps] == ["failed", "timed_out"]
    assert read.segments[0].startswith("dbt output\n")
    # The log's pieces put together are the whole log, each step's from its marker.
    assert "".join(piece for _, piece in read.pieces) == log
    assert [index for index, _ in read.pieces] == [None, 0, 1]


def test_a_marker_cannot_skip_a_step_that_ran_or_rewind() -> None:
    log = (
        f'{M}{{"event": "start", "index": 1}}\n'
        f'{M}{{"event": "end", "index": 1, "exit_code": 0}}\n'
        f'{M}{{"event": "start", "index": 0}}\n'  # earlier than one that started
        f'{M}{{"event": "skip", "index": 0}}\n'  # earlier than one that started
    )
    read = read_steps(log, plans("a", "b"))
    assert [s.status for s in read.steps] == ["pending", "success"]
    finish_steps(read, "success")
    assert [s.status for s in read.steps] == ["skipped", "success"]


def test_results_per_step_only_from_steps_that_run_nodes() -> None:
    broken = (FIXTURES / "dbt_run_broken.txt").read_text()
    log = (
        f'{M}{{"event": "start", "index": 0}}\n{broken}'
        f'{M}{{"event": "end", "index": 0, "exit_code": 1}}\n'
        f'{M}{{"event": "start", "index": 1}}\n{broken}'
        f'{M}{{"event": "end", "index": 1, "exit_code": 0}}\n'
    )
    steps = [*plans("build"), *plans("docs", subcommand="docs generate")]
    read = read_steps(log, steps)
    results = step_results(read, steps, "dbt")
    assert [(r.name, r.status, r.step) for r in results] == [("broken_orders", "error", 0)]
    error = steps_error(read, results, "dbt")
    assert error is not None and error.startswith("Step 1 of 2 (build) failed with exit code 1.")
    assert "broken_orders" in error


def test_many_markers_cost_little() -> None:
    flood = f'{M}{{"event": "start", "index": 0}}\n' * 200_000
    started = time.monotonic()
    read = read_steps(flood, plans("a"))
    assert time.monotonic() - started < 5
    assert read.steps[0].status == "running"
