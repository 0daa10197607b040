"""The local executor's process handling, on tiny Python programs instead of dbt.

These runs are built directly (not through the API and its command validators) so they
can exit with any code, ignore signals or print their environment in milliseconds. The
same paths on real dbt and SQLMesh runs are in tests/integration/test_local_executor.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.container import Container
from app.errors import Invalid
from app.executors.local import sandbox as local_sandbox
from app.executors.local.executor import LocalExecutor, build_local_executor
from app.executors.local.output import OutputCollector
from app.executors.local.process import WRAPPER, identity
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
            executor_factory=lambda deps: build_local_executor(
                deps.store, deps.events, deps.settings, clock=deps.clock, term_grace_seconds=1.0
            ),
            scheduler_thread=False,
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


def test_a_missing_project_directory_is_a_clear_error(container: Container, tmp_path: Path) -> None:
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


# --- the sandbox helper (local_sandbox) and the wrapper -----------------------------------

needs_landlock = pytest.mark.skipif(
    local_sandbox.abi_version() < 1, reason="the kernel has no Landlock"
)


def confined(plan: local_sandbox.Plan, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a child confined by ``plan``, as the wrapper does."""

    def preexec() -> None:
        try:
            local_sandbox.apply(plan)
        except Exception as exc:
            os.write(2, f"sandbox failed: {exc}\n".encode())
            os._exit(126)

    return subprocess.run(
        argv, preexec_fn=preexec, capture_output=True, text=True, timeout=60, check=False
    )


PROBE = """
import os, sys
allowed, forbidden, outside = sys.argv[1:4]
print("read", open(os.path.join(allowed, "mine.txt")).read())
open(os.path.join(allowed, "new.txt"), "w").write("written")
for path, mode in ((forbidden, "r"), (outside, "w")):
    try:
        open(path, mode)
        print("OPENED", path)
    except PermissionError as exc:
        print("denied", path, exc.errno)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print("caps", status["CapEff"].strip(), status["CapBnd"].strip(), status["NoNewPrivs"].strip())
"""


@needs_landlock
def test_landlock_denies_what_the_plan_does_not_allow(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "mine.txt").write_text("hello")
    forbidden = tmp_path / "runyard.db"
    forbidden.write_text("another org's webhook secret")
    outside = tmp_path / "outside.txt"
    plan = local_sandbox.build_plan([str(allowed)])

    done = confined(plan, [sys.executable, "-c", PROBE, str(allowed), str(forbidden), str(outside)])

    assert done.returncode == 0, done.stderr
    assert "read hello" in done.stdout
    assert (allowed / "new.txt").read_text() == "written"
    assert f"denied {forbidden} 13" in done.stdout and f"denied {outside} 13" in done.stdout
    assert "OPENED" not in done.stdout and not outside.exists()
    if os.geteuid() == 0:  # root gives up every capability, and cannot get them back
        assert "caps 0000000000000000 0000000000000000 1" in done.stdout
    # The same probe unconfined opens both: the denial is the sandbox's doing.
    free = subprocess.run(
        [sys.executable, "-c", PROBE, str(allowed), str(forbidden), str(outside)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert f"OPENED {forbidden}" in free.stdout


@needs_landlock
def test_landlock_keeps_the_run_from_signalling_runyard(tmp_path: Path) -> None:
    plan = local_sandbox.build_plan([str(tmp_path)])
    code = f"import os, signal\ntry:\n os.kill({os.getpid()}, 0); print('reached')\n"
    code += "except PermissionError: print('refused')"
    done = confined(plan, [sys.executable, "-c", code])
    assert done.stdout.strip() == "refused", done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="switching uid needs root")
def test_the_uid_switch_runs_the_command_as_the_plans_user(tmp_path: Path) -> None:
    plan = local_sandbox.Plan(
        read_write=("/dev/null",),
        read_only=("/usr", "/lib", "/lib64", "/etc/ld.so.cache"),
        uid=65534,
        gid=65534,
        landlock=local_sandbox.abi_version() > 0,
    )
    done = confined(plan, ["/usr/bin/id", "-u"])
    assert done.stdout.strip() == "65534", done.stderr


def test_the_uid_switch_is_only_chosen_when_the_interpreter_is_reachable(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    user, why = local_sandbox.unprivileged_user(str(project), [])
    assert user is None  # owned by root, or runyard is not root
    if os.geteuid() == 0:
        os.chown(project, 65534, 65534)
        user, why = local_sandbox.unprivileged_user(str(project), [])
        interpreter = Path(sys.executable).resolve()
        reachable = local_sandbox.reachable_by(str(interpreter), 65534, 65534)
        assert (user is not None) == reachable
        if not reachable:  # this machine: the interpreter is in root's home (0700)
            assert "cannot reach" in why
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "f").write_text("x")
    assert not local_sandbox.reachable_by(str(private / "f"), 65534, 65534)
    assert local_sandbox.reachable_by("/usr/bin/env", 65534, 65534)


def test_a_plan_that_cannot_be_applied_never_runs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    plan = local_sandbox.Plan(read_write=(str(tmp_path),), uid=1 << 40, gid=1 << 40)
    exit_file = tmp_path / "exit"
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(WRAPPER),
            str(exit_file),
            "--sandbox",
            plan.to_json(),
            "--",
            sys.executable,
            "-c",
            f"open({str(marker)!r}, 'w')",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 126 and exit_file.read_text() == "126\n"
    assert "sandbox could not be applied" in done.stderr
    assert not marker.exists()


@needs_landlock
def test_the_wrapper_confines_the_command_and_still_records_its_exit_code(
    tmp_path: Path,
) -> None:
    project, spool = tmp_path / "project", tmp_path / "spool"
    project.mkdir()
    spool.mkdir()
    secret = tmp_path / "runyard.db"
    secret.write_text("secret")
    plan = local_sandbox.build_plan([str(project)])
    code = f"open({str(secret)!r}).read()"
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(WRAPPER),
            str(spool / "r.exit"),
            "--sandbox",
            plan.to_json(),
            "--",
            sys.executable,
            "-c",
            code,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "PermissionError" in done.stderr
    assert "[runyard] sandbox: no_new_privs" in done.stderr and "landlock ABI" in done.stderr
    assert (spool / "r.exit").read_text() == "1\n"
    assert stat.S_IMODE((spool / "r.exit").stat().st_mode) == 0o600


def test_spool_folder_and_files_are_private_whatever_the_umask(
    make_container: Factory, tmp_path: Path
) -> None:
    old = os.umask(0)
    try:
        container = make_container()
        run = launch(container, python("import time; time.sleep(1.5)"))
        spool = Path(tmp_path / "runyard.db-local")
        wait_for(lambda: (spool / f"{run.id}.log").exists())
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in spool.iterdir()}
        wait_terminal(container.store, run.id)
        exits = container.store.runs.record(run.id)
    finally:
        os.umask(old)
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    assert files[f"{run.id}.log"] == 0o600
    assert files[f"{run.id}.tmp"] == 0o700 and files[f"{run.id}.dbt"] == 0o700
    assert exits is not None and exits.status == "success"


def test_runyard_does_not_follow_symlinks_the_run_planted_in_its_output(tmp_path: Path) -> None:
    """runyard reads dbt's log and run_results.json unconfined: a run must not make it
    read another project's files through a symlink."""
    other = tmp_path / "globex" / "target"
    other.mkdir(parents=True)
    results = {
        "metadata": {"invocation_id": "inv-1"},
        "results": [
            {
                "unique_id": "model.globex.secret_model",
                "status": "error",
                "message": "globex secret",
            }
        ],
    }
    (other / "run_results.json").write_text(json.dumps(results))
    event = json.dumps(
        {"info": {"invocation_id": "inv-1", "name": "MainReportVersion"}, "data": {}}
    )
    project, logs_dir = tmp_path / "acme", tmp_path / "run.dbt"
    (project / "target").mkdir(parents=True)
    logs_dir.mkdir()
    (logs_dir / "dbt.log").write_text(event + "\n")
    collector = OutputCollector("dbt", project, logs_dir)

    (project / "target" / "run_results.json").write_text(json.dumps(results))
    assert [r.unique_id for r in collector.results()] == ["model.globex.secret_model"]

    (project / "target" / "run_results.json").unlink()
    (project / "target" / "run_results.json").symlink_to(other / "run_results.json")
    assert "globex secret" not in repr(collector.results())
    (project / "target" / "run_results.json").unlink()
    (project / "target").rmdir()
    (project / "target").symlink_to(other)
    assert "globex secret" not in repr(collector.results())

    secret_log = tmp_path / "secret.log"
    secret_log.write_text(event + "\n")
    (logs_dir / "dbt.log").unlink()
    (logs_dir / "dbt.log").symlink_to(secret_log)
    (project / "target").unlink()
    (project / "target").mkdir()
    (project / "target" / "run_results.json").write_text(json.dumps(results))
    assert collector.results() == []  # the log is not read through the link
