"""What running dbt through runyard's local executor costs over running it directly.

Runs the example project's ``dbt build --exclude tag:broken`` N times directly (a
subprocess, as a user would in a shell) and N times as a runyard run: triggered through
the HTTP API of a real ``runyard serve`` (uvicorn, local executor) and polled until it
is terminal. The two alternate, on one copy of the project, after one warm-up of each.
Prints both medians and their ratio (goal: at most 1.10) and writes the figures to
bench/results/local_overhead.json.

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


def run_through_runyard(api: httpx.Client, project_id: str, job_id: str, server: int) -> Sample:
    before = process_cpu(server)
    started = time.perf_counter()
    response = api.post(f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger", json={})
    response.raise_for_status()
    run_id = response.json()["job_run_id"]
    while True:
        run = api.get(f"/api/v1/runs/{run_id}").json()
        if run["is_terminal"]:
            break
        time.sleep(0.1)  # a client polling 10 times a second; the end is seen within 0.1 s
    elapsed = time.perf_counter() - started
    if run["status"] != "success":
        raise SystemExit(f"runyard run {run_id} ended {run['status']}: {run['error']}")
    time.sleep(0.3)  # the server reaps the wrapper just after recording the end
    after = process_cpu(server)
    if before is None or after is None:
        return Sample(elapsed, None)
    own = after[0] - before[0]
    return Sample(elapsed, own + after[1] - before[1], own)


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
                warm = run_through_runyard(api, project_id, job_id, server.pid)
                print(f"runyard {warm.wall:.2f} s")
                direct: list[Sample] = []
                through: list[Sample] = []
                for i in range(args.runs):
                    direct.append(run_direct(project))
                    through.append(run_through_runyard(api, project_id, job_id, server.pid))
                    d, r = direct[-1], through[-1]
                    print(
                        f"run {i + 1}: direct {d.wall:.2f} s (cpu {_show(d.cpu)}), runyard "
                        f"{r.wall:.2f} s (cpu {_show(r.cpu)}, runyard's own {_show(r.server_cpu)})"
                    )
        finally:
            server.terminate()
            server.wait(30)

    report = summarise(direct, through)
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
