"""The local executor's process handling, on tiny Python programs instead of dbt.

These runs are built directly (not through the API and its command validators) so they
can exit with any code, ignore signals or print their environment in milliseconds. The
same paths on real dbt and SQLMesh runs are in tests/integration/test_local_executor.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.container import Container
from app.errors import Invalid
from app.executors.local import LocalExecutor, build_local_executor
from app.executors.local_process import identity
from app.models import JobConfig, Principal, RunRecord
from app.settings import Settings
from app.store import Store
from tests.factories import run_record, snapshot

Factory = Callable[[], Container]


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """Org acme's project "proj", under the default projects root (beside the database)."""
    path = tmp_path / "projects" / "acme" / "proj"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def make_container(tmp_path: Path, project_dir: Path) -> Iterator[Factory]:
    made: list[Container] = []

    def make() -> Container:
        settings = Settings(database=str(tmp_path / "runyard.db"), executor="local")
        container = Container(
            settings,
            executor_factory=lambda c: build_local_executor(
                c, scheduler_thread=False, term_grace_seconds=1.0
            ),
        )
        container.start()
        made.append(container)
        return container

    yield make
    for container in reversed(made):
        container.stop()


@pytest.fixture
def container(make_container: Factory) -> Container:
    return make_container()


def admin(container: Container) -> Principal:
    token, _ = container.tokens.create("acme", "admin")
    return container.tokens.authenticate(token)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def make_run(
    container: Container,
    argv: list[str],
    *,
    path: str | None = "proj",
    project_env: dict[str, str] | None = None,
    **job: Any,
) -> RunRecord:
    """A pending run record in the database, as RunService.start_run would insert it."""
    org = container.store.orgs.get_or_create("acme")
    record = run_record(
        org_id=org.id,
        job_name="analytics-nightly-20260428-020000",
        cronjob_name="analytics-nightly",
        snapshot_=snapshot(
            path=path,
            argv=argv,
            project_environment=project_env,
            job=JobConfig(name="nightly", command="dbt build", **job),
        ),
    )
    assert container.store.runs.insert(record)
    return record


def launch(container: Container, argv: list[str], **fields: Any) -> RunRecord:
    record = make_run(container, argv, **fields)
    container.executor.launch(record)
    return record


def wait_terminal(store: Store, run_id: str, timeout: float = 30) -> RunRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.runs.record(run_id)
        assert record is not None
        if record.is_terminal:
            return record
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end within {timeout} s")


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    return identity(pid) is not None


# --- running ------------------------------------------------------------------------------


def test_success_records_exit_code_and_output(container: Container) -> None:
    run = launch(container, python("print('hello from the project')"))
    done = wait_terminal(container.store, run.id)
    assert (done.status, done.exit_code, done.error) == ("success", 0, None)
    assert done.start_time is not None and done.duration_seconds is not None
    log = container.store.runs.read_log(run.id)
    assert log.startswith("[runyard] ")
    assert "hello from the project\n" in log


def test_environment_is_built_from_scratch(
    container: Container, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNYARD_SLACK_TOKEN", "xoxb-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    run = launch(
        container,
        python("import json, os; print(json.dumps(dict(os.environ)))"),
        project_env={"WAREHOUSE": "dev", "GREETING": "project"},
        environment={"GREETING": "job"},
    )
    wait_terminal(container.store, run.id)
    line = next(x for x in container.store.runs.read_log(run.id).splitlines() if x.startswith("{"))
    env = json.loads(line)
    assert not [name for name in env if name.startswith("RUNYARD_")]
    assert "AWS_SECRET_ACCESS_KEY" not in env
    assert env["WAREHOUSE"] == "dev" and env["GREETING"] == "job"
    assert env["DBT_PROFILES_DIR"] == str(project_dir)
    assert env["DBT_SEND_ANONYMOUS_USAGE_STATS"] == "false"
    assert env["SQLMESH__DISABLE_ANONYMIZED_ANALYTICS"] == "1"
    assert env["TZ"] == "UTC"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_output_is_stored_in_batches_not_per_line(container: Container) -> None:
    run = launch(container, python("for i in range(20000): print('line', i)"))
    wait_terminal(container.store, run.id)
    log = container.store.runs.read_log(run.id)
    assert [x for x in log.splitlines() if x.startswith("line")] == [
        f"line {i}" for i in range(20000)
    ]
    chunks = container.store.database.scalar(
        "SELECT count(*) FROM run_log_chunks WHERE run_id = ?", (run.id,)
    )
    assert chunks < 50


def test_logs_are_stored_while_the_run_goes_on(container: Container) -> None:
    run = launch(container, python("import time; print('first', flush=True); time.sleep(30)"))
    wait_for(lambda: "first" in container.store.runs.read_log(run.id))
    record = container.store.runs.record(run.id)
    assert record is not None and record.status == "running"
    container.runs.cancel(admin(container), run.id)


def test_a_missing_project_directory_is_a_clear_error(
    container: Container, tmp_path: Path
) -> None:
    record = make_run(container, python("pass"), path="not-there")
    with pytest.raises(Invalid) as missing:
        container.executor.launch(record)
    assert "'not-there'" in missing.value.detail and "does not exist" in missing.value.detail
    assert str(tmp_path / "projects" / "acme") in missing.value.detail
    record = make_run(container, python("pass"), path=None)
    with pytest.raises(Invalid) as unset:
        container.executor.launch(record)
    assert "has no path" in unset.value.detail


# --- failure, retries, timeout ------------------------------------------------------------


def test_exit_codes_1_and_2_are_not_retried(container: Container) -> None:
    run = launch(container, python("import sys; print('model failed'); sys.exit(1)"), retries=3)
    done = wait_terminal(container.store, run.id)
    assert (done.status, done.exit_code) == ("failed", 1)
    assert "retrying" not in container.store.runs.read_log(run.id)
    assert done.error and "exited with code 1" in done.error


def test_other_failures_are_retried_up_to_retries(container: Container) -> None:
    run = launch(container, python("import sys; print('boom'); sys.exit(3)"), retries=2)
    done = wait_terminal(container.store, run.id)
    assert (done.status, done.exit_code) == ("failed", 3)
    log = container.store.runs.read_log(run.id)
    assert log.splitlines().count("boom") == 3
    assert "[runyard] attempt 1 of 3 failed with exit code 3; retrying (attempt 2 of 3)" in log
    assert "[runyard] attempt 2 of 3 failed with exit code 3; retrying (attempt 3 of 3)" in log


def test_a_retry_can_succeed(container: Container, project_dir: Path) -> None:
    code = (
        "import pathlib, sys; p = pathlib.Path('tries'); n = int(p.read_text() or 0) "
        "if p.exists() else 0; p.write_text(str(n + 1)); sys.exit(0 if n else 137)"
    )
    run = launch(container, python(code), retries=1)
    done = wait_terminal(container.store, run.id)
    assert (done.status, done.exit_code) == ("success", 0)
    assert (project_dir / "tries").read_text() == "2"


def test_timeout_stops_the_process_group(container: Container) -> None:
    run = launch(container, python("import time; time.sleep(60)"), timeout_seconds=1)
    started = time.monotonic()
    done = wait_terminal(container.store, run.id)
    assert time.monotonic() - started < 10
    assert done.status == "timed_out"
    assert done.exit_code == 143  # SIGTERM
    assert done.error and "timeout_seconds (1 s)" in done.error


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(
    container: Container,
) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(60)"
    )
    run = launch(container, python(code), timeout_seconds=1)
    done = wait_terminal(container.store, run.id)
    assert (done.status, done.exit_code) == ("timed_out", 137)  # SIGKILL


# --- cancel, stop, restart ----------------------------------------------------------------

SPAWNS_A_GRANDCHILD = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('grandchild pid', child.pid, flush=True); time.sleep(60)"
)


def _grandchild(store: Store, run_id: str) -> int:
    def lines() -> list[str]:
        return [x for x in store.runs.read_log(run_id).splitlines() if x.startswith("grandchild")]

    wait_for(lambda: bool(lines()))
    return int(lines()[0].split()[-1])


def test_cancel_stops_the_whole_process_group(container: Container) -> None:
    run = launch(container, python(SPAWNS_A_GRANDCHILD))
    grandchild = _grandchild(container.store, run.id)
    process = container.store.local.process(run.id)
    assert process is not None and alive(process.pid)
    container.runs.cancel(admin(container), run.id)
    done = wait_terminal(container.store, run.id)
    assert done.status == "cancelled" and done.error == "cancelled by a user"
    wait_for(lambda: not alive(process.pid) and not alive(grandchild))
    wait_for(lambda: container.store.local.process(run.id) is None)
    assert "[runyard] the run was cancelled" in container.store.runs.read_log(run.id)


def test_stopping_runyard_terminates_active_runs(tmp_path: Path, make_container: Factory) -> None:
    container = make_container()
    run = launch(container, python(SPAWNS_A_GRANDCHILD))
    grandchild = _grandchild(container.store, run.id)
    container.stop()
    store = Store(tmp_path / "runyard.db")
    done = store.runs.record(run.id)
    assert done is not None and done.status == "cancelled"
    assert done.error and "runyard was stopped while the run was active" in done.error
    wait_for(lambda: not alive(grandchild))
    store.close()


def _detach(container: Container) -> None:
    executor = container.executor
    assert isinstance(executor, LocalExecutor)
    executor.detach()  # as a crash would: the process keeps running, nothing is recorded


def test_a_restart_reattaches_to_a_live_process(make_container: Factory) -> None:
    first = make_container()
    code = "import time; print('before', flush=True); time.sleep(1.5); print('after')"
    run = launch(first, python(code))
    wait_for(lambda: "before" in first.store.runs.read_log(run.id))
    _detach(first)
    process = first.store.local.process(run.id)
    assert process is not None and alive(process.pid)

    second = make_container()
    done = wait_terminal(second.store, run.id)
    assert (done.status, done.exit_code) == ("success", 0)
    log = second.store.runs.read_log(run.id)
    assert log.splitlines().count("before") == 1 and log.splitlines().count("after") == 1
    assert f"re-attached to the run's process (pid {process.pid})" in log


def test_a_run_that_ended_while_runyard_was_down_gets_its_real_outcome(
    make_container: Factory,
) -> None:
    first = make_container()
    run = launch(first, python("import sys, time; time.sleep(0.3); print('done'); sys.exit(1)"))
    _detach(first)
    process = first.store.local.process(run.id)
    assert process is not None
    exit_file = Path(process.spool).with_suffix(".exit")
    wait_for(exit_file.exists)

    second = make_container()
    done = wait_terminal(second.store, run.id)
    assert (done.status, done.exit_code) == ("failed", 1)
    assert "done" in second.store.runs.read_log(run.id)


def test_a_run_whose_process_vanished_is_lost(make_container: Factory) -> None:
    first = make_container()
    run = launch(first, python("import time; time.sleep(60)"))
    _detach(first)
    process = first.store.local.process(run.id)
    assert process is not None
    os.killpg(process.pid, signal.SIGKILL)  # the wrapper goes too: no exit code is left
    wait_for(lambda: not alive(process.pid))

    second = make_container()
    done = wait_terminal(second.store, run.id)
    assert done.status == "lost"
    assert done.error and done.error.startswith("runyard restarted while the run was active")


def test_a_pending_run_without_a_process_is_lost_at_start(make_container: Factory) -> None:
    first = make_container()
    record = make_run(first, python("pass"))  # inserted, never launched (a crash in between)
    second = make_container()
    done = second.store.runs.record(record.id)
    assert done is not None and done.status == "lost"
    assert done.error and "before its process was started" in done.error
