"""What running dbt through runyard's local executor costs over running it directly.

Runs the example project's ``dbt build --exclude tag:broken`` N times directly (a
subprocess, as a user would in a shell) and N times as a runyard run, measured at the
user's edge: ``runyard jobs trigger PROJECT JOB --wait`` as a subprocess (the CLI's import,
the trigger, the wait for the end) against a real ``runyard serve`` (uvicorn, local
executor). The two alternate, on one copy of the project, after one warm-up of each.
Prints both medians and their ratio (goal: at most 1.10) and writes the figures to
bench/results/local_overhead.json.

It also measures trigger to process start: from sending ``POST .../trigger`` to the start
of the command the run's wrapper forks (the kernel's start time of dbt's process, read from
/proc, 10 ms resolution), goal under 100 ms.

Wall time on a shared machine moves with whatever else runs, so the CPU time each run
cost is measured too (Linux): dbt's for the direct runs, and for the runyard runs the
server's own plus its children's (the wrapper and dbt), over the run. Its ratio is
what runyard adds in work, whatever the neighbours do; the server's own CPU time (the
supervisor, log writes, the tracker, answering the polls) is reported on its own.

    python bench/local_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.services.tokens import TokenService  # noqa: E402
from app.store import Store  # noqa: E402

COMMAND = ["dbt", "build", "--exclude", "tag:broken"]
RESULTS = Path(__file__).parent / "results" / "local_overhead.json"
GOAL = 1.10


def direct_env(project: Path) -> dict[str, str]:
    """What a user's shell would give dbt: their PATH and HOME, the project's profiles."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "LANG") if k in os.environ}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        {
            "DBT_PROFILES_DIR": str(project),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float | None  # all the work: dbt's, and for runyard runs the server's too
    server_cpu: float | None = None  # runyard's own part


def process_cpu(pid: int) -> tuple[float, float] | None:
    """CPU seconds of a process itself, and of the children it has waited for (/proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return own, (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime


def run_direct(project: Path) -> Sample:
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        COMMAND,
        cwd=project,
        env=direct_env(project),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"direct dbt build failed:\n{done.stdout.decode()[-2000:]}")
    return Sample(elapsed, children_cpu() - cpu)


def cli() -> list[str]:
    """The ``runyard`` command a user has: the console script beside this interpreter."""
    script = Path(sys.executable).parent / "runyard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]


def run_through_runyard(
    env: dict[str, str], project_id: str, job_id: str, server: int, workdir: Path
) -> Sample:
    before = process_cpu(server)
    started = time.perf_counter()
    done = subprocess.run(
        [*cli(), "jobs", "trigger", project_id, job_id, "--wait"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"runyard jobs trigger --wait exited {done.returncode}:\n"
            f"{done.stdout.decode()[-2000:]}{done.stderr.decode()[-2000:]}"
        )
    time.sleep(0.3)  # the server reaps the wrapper just after recording the end
    after = process_cpu(server)
    if before is None or after is None:
        return Sample(elapsed, None)
    own = after[0] - before[0]
    return Sample(elapsed, own + after[1] - before[1], own)


def _started_at(pid: int) -> float | None:
    """When ``pid`` started, in seconds since boot (/proc, clock-tick resolution): the same
    clock as CLOCK_BOOTTIME (the boot time in /proc/stat has only whole seconds)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def trigger_to_exec(api: httpx.Client, database: Path, project_id: str, job_id: str) -> float:
    """Seconds from sending the trigger to the start of the command's process."""
    import sqlite3

    sent = time.clock_gettime(time.CLOCK_BOOTTIME)
    response = api.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={})
    response.raise_for_status()
    run_id = response.json()["job_run_id"]
    reader = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = reader.execute(
                "SELECT pid FROM local_processes WHERE run_id = ?", (run_id,)
            ).fetchone()
            kids = _children(row[0]) if row else []
            if kids:
                started = _started_at(kids[0])
                if started is not None:
                    break
            time.sleep(0.005)
        else:
            raise SystemExit(f"the process of run {run_id} was not seen within 30 s")
    finally:
        reader.close()
    api.get(f"/api/v1/runs/{run_id}/wait?timeout=60")
    return max(0.0, started - sent)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(database: Path, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RUNYARD_DATABASE": str(database),
        "RUNYARD_PORT": str(port),
        "RUNYARD_EXECUTOR": "local",
        "RUNYARD_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit("runyard serve exited; run it by hand to see why")
        time.sleep(0.1)
    server.terminate()
    raise SystemExit("runyard serve did not answer /health within 60 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="runyard-bench-") as tmp:
        work = Path(tmp)
        # Local projects live under the projects root, one folder per org (org "bench").
        project = work / "projects" / "bench" / "dbt_demo"
        shutil.copytree(
            REPO / "examples" / "dbt_demo",
            project,
            ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"),
        )
        database = work / "runyard.db"
        store = Store(database)
        store.migrate()
        token, _ = TokenService(store).create("bench", "admin")
        store.close()

        port = free_port()
        server = start_server(database, port, work)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            ) as api:
                created = api.post(
                    "/api/v1/projects",
                    json={"name": "bench", "kind": "dbt", "path": "dbt_demo"},
                )
                created.raise_for_status()
                project_id = created.json()["id"]
                job = api.post(
                    f"/api/v1/projects/{project_id}/jobs",
                    json={"name": "build", "command": " ".join(COMMAND), "schedule": None},
                )
                job.raise_for_status()
                job_id = job.json()["id"]

                print(f"warm-up: direct {run_direct(project).wall:.2f} s, ", end="", flush=True)
                client_env = {
                    **os.environ,
                    "RUNYARD_URL": f"http://127.0.0.1:{port}",
                    "RUNYARD_TOKEN": token,
                    "PYTHONPATH": str(REPO),
                }
                warm = run_through_runyard(client_env, project_id, job_id, server.pid, work)
                print(f"runyard {warm.wall:.2f} s")
                direct: list[Sample] = []
                through: list[Sample] = []
                for i in range(args.runs):
                    direct.append(run_direct(project))
                    through.append(
                        run_through_runyard(client_env, project_id, job_id, server.pid, work)
                    )
                    d, r = direct[-1], through[-1]
                    print(
                        f"run {i + 1}: direct {d.wall:.2f} s (cpu {_show(d.cpu)}), runyard "
                        f"{r.wall:.2f} s (cpu {_show(r.cpu)}, runyard's own {_show(r.server_cpu)})"
                    )
                starts = [
                    trigger_to_exec(api, database, project_id, job_id) for _ in range(args.runs)
                ]
        finally:
            server.terminate()
            server.wait(30)

    report = summarise(direct, through)
    report["trigger_to_exec_ms"] = [round(x * 1000, 1) for x in starts]
    report["median_trigger_to_exec_ms"] = round(statistics.median(starts) * 1000, 1)
    report["trigger_to_exec_goal_ms"] = 100
    print(
        f"median direct {report['median_direct_seconds']:.2f} s, "
        f"median runyard {report['median_runyard_seconds']:.2f} s, "
        f"ratio {report['ratio']:.3f} (goal <= {GOAL})"
    )
    if report["cpu_ratio"] is not None:
        print(
            f"median cpu direct {report['median_direct_cpu_seconds']:.2f} s, "
            f"runyard {report['median_runyard_cpu_seconds']:.2f} s, "
            f"ratio {report['cpu_ratio']:.3f}; runyard's own cpu per run "
            f"{report['median_server_cpu_seconds']:.3f} s; load average {report['load_average']}"
        )
    print(
        f"trigger to process start: median {report['median_trigger_to_exec_ms']} ms "
        f"({report['trigger_to_exec_ms']}; goal < 100 ms)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(REPO)}")
    return 0 if report["ratio"] <= GOAL else 1


def _show(cpu: float | None) -> str:
    return "n/a" if cpu is None else f"{cpu:.2f} s"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def summarise(direct: list[Sample], through: list[Sample]) -> dict[str, Any]:
    median_direct = statistics.median(x.wall for x in direct)
    median_runyard = statistics.median(x.wall for x in through)
    direct_cpu = _median([x.cpu for x in direct])
    runyard_cpu = _median([x.cpu for x in through])
    return {
        "command": " ".join(COMMAND),
        "measured_as": "runyard jobs trigger PROJECT JOB --wait (the CLI, a subprocess)",
        "runs": len(direct),
        "direct_seconds": [round(x.wall, 3) for x in direct],
        "runyard_seconds": [round(x.wall, 3) for x in through],
        "median_direct_seconds": round(median_direct, 3),
        "median_runyard_seconds": round(median_runyard, 3),
        "ratio": round(median_runyard / median_direct, 3),
        "goal": GOAL,
        "direct_cpu_seconds": [x.cpu and round(x.cpu, 3) for x in direct],
        "runyard_cpu_seconds": [x.cpu and round(x.cpu, 3) for x in through],
        "runyard_own_cpu_seconds": [x.server_cpu and round(x.server_cpu, 3) for x in through],
        "median_direct_cpu_seconds": direct_cpu,
        "median_runyard_cpu_seconds": runyard_cpu,
        "median_server_cpu_seconds": _median([x.server_cpu for x in through]),
        "cpu_ratio": round(runyard_cpu / direct_cpu, 3) if runyard_cpu and direct_cpu else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    sys.exit(main())
