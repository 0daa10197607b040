"""Run tracking on Kubernetes: 1,000 (or --runs) Jobs finishing within about a second,
against the emulator (tests/harness/k8s.py: a real HTTP server, the real client).

runyard (a Container with the Kubernetes executor and its tracker started) has its runs
running: nine in ten one-off runs (of up to 100 jobs per org, spread over --orgs orgs, each
in its own namespace) and one in ten scheduled Jobs fired by the first org's CronJobs. The
emulator then ends them all as fast as it can (one in ten fails with dbt's output naming
the broken model). Prints the time until every run is terminal with its logs stored,
counted from the last Job's end, the Kubernetes API requests per run made meanwhile (no
request may read a single Job: nothing is polled), the watch threads, the CPU each process
used while the runs finished, and peak memory; --profile samples every thread's stack
meanwhile and prints where they were. Writes bench/results/tracker.json; exits 1 when a run
is missing or wrong, or the goal (every run recorded within 5 s of the last finish) is missed.

The emulator runs in a child process (this script with --serve-cluster, driven over a
pipe), so that playing the Job controller for thousands of Jobs does not compete with
runyard for one interpreter lock.

    python bench/tracker.py [--runs 1000] [--orgs 1] [--scope auto] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.container import Container
from app.executors.k8s.gateway import KubernetesExecutor
from app.ids import new_id, utcnow
from app.models import Job, Principal, Project
from app.settings import Settings
from tests.factories import saved_project
from tests.harness.k8s import FakeCluster

RESULTS = Path(__file__).parent / "results" / "tracker.json"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "unit" / "fixtures"
JOBS = 100
SCHEDULED_SHARE = 10  # one run in ten comes from a CronJob; one in ten fails
GOAL_SECONDS = 5.0
OK_LOG = (FIXTURES / "dbt_build_all.txt").read_text()
BROKEN_LOG = (FIXTURES / "dbt_run_broken.txt").read_text()


# --- the emulator's process ---------------------------------------------------------------


def serve_cluster(kubeconfig: Path) -> None:
    """Serve the emulator; play its controllers on commands read from stdin (JSON lines),
    answering each on stdout."""
    with FakeCluster(event_history=200_000) as cluster:
        cluster.write_kubeconfig(kubeconfig)
        print(json.dumps({"url": cluster.url}), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            op, ns = command["op"], command.get("namespace", "")
            answer: Any = None
            if op == "start":
                for where, name in command["jobs"]:
                    cluster.start_job(where, name, logs=command["logs"])
            elif op == "fire":
                answer = [
                    cluster.fire_cronjob(ns, cronjob, datetime.fromisoformat(at))
                    for cronjob, at in command["slots"]
                ]
            elif op == "finish":
                answer = finish_all(cluster, command["items"])
            elif op == "cpu":
                times = os.times()
                answer = times.user + times.system
            elif op == "rss":
                answer = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(json.dumps({"answer": answer}), flush=True)


def finish_all(cluster: FakeCluster, items: list[Any]) -> dict[str, float]:
    """End every Job in one turn of the emulator's event loop, the way a burst hits a real
    API server. The public ``finish_job`` is one call per Job from another thread, and the
    emulator's loop serves runyard's requests in between: a thousand would take seconds."""
    state = cluster._require_state()  # the harness's own state; it runs on the loop thread

    def burst() -> dict[str, float]:
        first = time.time()
        for namespace, name, exit_code, logs in items:
            state.finish_job(namespace, name, exit_code=exit_code, logs=logs)
        return {"first": first, "last": time.time()}

    return cluster._call(burst)


class Cluster:
    """The parent's handle on the emulator's process."""

    def __init__(self, kubeconfig: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, __file__, "--serve-cluster", str(kubeconfig)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = str(self._read()["url"])

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise SystemExit("FAIL: the emulator's process ended")
        result: dict[str, Any] = json.loads(line)
        return result

    def call(self, op: str, **fields: Any) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self._process.stdin.flush()
        return self._read()["answer"]

    def requests(self, *, reset: bool = False) -> list[dict[str, Any]]:
        """The API requests served so far (the harness's own endpoint, not recorded)."""
        if reset:
            httpx.post(f"{self.url}/_harness/reset", timeout=30).raise_for_status()
            return []
        response = httpx.get(f"{self.url}/_harness/requests?records=1", timeout=30)
        records: list[dict[str, Any]] = response.json()["records"]
        return records

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(30)


# --- runyard's side -----------------------------------------------------------------------


def seed(container: Container, org: str, jobs_wanted: int) -> tuple[Principal, Project, list[Job]]:
    token, _ = container.tokens.create(org, "admin")
    principal = container.tokens.authenticate(token)
    now = utcnow()
    project = saved_project(
        container.store,
        org_id=principal.org_id,
        org_slug=principal.org_slug,
        name="warehouse",
        kind="dbt",
        image="ghcr.io/acme/warehouse:2026.4",
    )
    jobs = []
    for i in range(jobs_wanted):
        job = Job(
            id=new_id("job"),
            org_id=principal.org_id,
            project_id=project.id,
            name=f"group-{i:03d}",
            command=f"dbt build --select tag:group_{i}",
            schedule=f"{i % 60} 2 * * *",
            concurrency_policy="Allow",
            version=1,
            created_at=now,
            updated_at=now,
        )
        container.store.jobs.insert(job)
        jobs.append(job)
    return principal, project, jobs


def count(container: Container, sql: str) -> int:
    return int(container.store.database.scalar(sql))


def wait(predicate: Any, timeout: float, what: str, container: Container | None = None) -> float:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            if container is not None:
                states = container.store.database.rows(
                    "SELECT status, log_bytes > 0 AS logged, count(*) AS n FROM runs"
                    " GROUP BY status, logged"
                )
                print(f"runs by status: {states}", file=sys.stderr)
            raise SystemExit(f"FAIL: {what} did not happen in {timeout} s")
        time.sleep(0.05)  # a count over every run: polling it faster steals runyard's CPU
    return time.time()


class ThreadProfiles:
    """cProfile in every thread started after ``install`` (cProfile alone sees one thread):
    where runyard's CPU goes, summed over its threads."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []

    def install(self) -> None:
        def start(*_: object) -> None:
            profile = cProfile.Profile()
            self.profiles.append(profile)
            sys.setprofile(None)
            profile.enable()

        threading.setprofile(start)

    def top(self, count: int = 25) -> list[str]:
        if not self.profiles:
            return []
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
        lines = []
        for (path, line, name), (_, calls, own, cumulative, _) in rows[:count]:
            lines.append(
                f"{own:8.2f} s own {cumulative:8.2f} s cum {calls:9d} calls "
                f"{Path(path).name}:{line}:{name}"
            )
        return lines


class Sampler:
    """A sampling profiler across threads (py-spy is not installed; cProfile sees one
    thread): every few milliseconds, each thread's innermost frame that is runyard's own
    code, or the library call it is blocked in, counted by thread kind."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        names = {}
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                name = names.get(ident, "?")
                if ident == self._thread.ident or name == "MainThread":
                    continue
                kind = name.rstrip("0123456789_-").removesuffix("-") or name
                self.samples[(kind, _where(frame))] += 1

    def top(self, count: int = 25) -> list[tuple[str, str, int]]:
        return [(kind, where, n) for (kind, where), n in self.samples.most_common(count)]


def _where(frame: Any) -> str:
    """The innermost frame and the innermost runyard frame above it."""
    inner = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
    seen = frame
    while seen is not None:
        if "/app/" in seen.f_code.co_filename:
            own = f"{Path(seen.f_code.co_filename).name}:{seen.f_code.co_name}"
            return inner if own == inner else f"{own} > {inner}"
        seen = seen.f_back
    return inner


def run(
    container: Container, cluster: Cluster, total: int, orgs: int, profile: bool
) -> dict[str, Any]:
    per_org = -(-total // orgs)
    scheduled = total // SCHEDULED_SHARE
    # Each CronJob fires once: a CronJob keeps only its last 3 finished Jobs (its history
    # limit), so ten of one CronJob ending together would have seven deleted, pods and logs
    # with them, before anyone could read them (a real cluster does the same).
    seeded = [
        seed(container, f"bench{o:04d}", max(scheduled, JOBS) if o == 0 else min(JOBS, per_org))
        for o in range(orgs)
    ]
    principal, project, jobs = seeded[0]
    executor = container.executor
    assert isinstance(executor, KubernetesExecutor) and executor.tracker is not None
    tracker = executor.tracker
    namespace = container.settings.namespace_for(principal.org_slug)
    container.projects.deploy(principal, project.id)  # the CronJobs of the first org
    profiles = ThreadProfiles()
    if profile:
        profiles.install()
    executor.start()
    assert tracker.synced.wait(120)

    started: list[tuple[str, str]] = []
    for i in range(total - scheduled):
        org_principal, org_project, org_jobs = seeded[i % orgs]
        job = org_jobs[(i // orgs) % min(JOBS, len(org_jobs))]
        triggered = container.runs.trigger(org_principal, org_project.id, job.id)
        assert triggered.run.job_name is not None and triggered.run.namespace is not None
        started.append((triggered.run.namespace, triggered.run.job_name))
    slot = datetime(2026, 4, 28, 2, tzinfo=UTC)
    slots = [
        (f"warehouse-{jobs[i].name}", (slot + timedelta(hours=i)).isoformat())
        for i in range(scheduled)
    ]
    started += [(namespace, n) for n in cluster.call("fire", namespace=namespace, slots=slots)]
    cluster.call("start", jobs=started, logs="Running with dbt=1.11.16\n")
    wait(
        lambda: count(container, "SELECT count(*) FROM runs WHERE status = 'running'") == total,
        300,
        f"{total} runs running",
        container,
    )
    tracker.settle(60)

    cluster.requests(reset=True)
    failing = set(started[::SCHEDULED_SHARE])
    items = [
        (ns, name, 1, BROKEN_LOG) if (ns, name) in failing else (ns, name, 0, OK_LOG)
        for ns, name in started
    ]
    cpu_before = (_cpu(), cluster.call("cpu"))
    sampler = Sampler() if profile else None
    if sampler is not None:
        sampler.__enter__()
    window = cluster.call("finish", items=items)
    done = wait(
        lambda: (
            count(
                container,
                "SELECT count(*) FROM runs WHERE status IN ('success', 'failed') AND log_bytes > 0",
            )
            == total
        ),
        300,
        "every run recorded",
        container,
    )
    cpu_after = (_cpu(), cluster.call("cpu"))
    if sampler is not None:
        sampler.__exit__()
    tracker.settle(30)
    kinds = Counter(_kind(r["path"], r["query"]) for r in cluster.requests())
    threads = [t.name for t in threading.enumerate()]
    return {
        "runs": total,
        "orgs": orgs,
        "watch_scope": tracker.scope,
        "watch_threads": sum(n.startswith("k8s-watch") for n in threads),
        "threads": len(threads),
        "finish_window_seconds": round(window["last"] - window["first"], 3),
        "recorded_after_last_finish_seconds": round(done - window["last"], 3),
        "recorded_after_first_finish_seconds": round(done - window["first"], 3),
        "cpu_seconds_runyard": round(cpu_after[0] - cpu_before[0], 2),
        "cpu_seconds_emulator": round(cpu_after[1] - cpu_before[1], 2),
        "peak_rss_mb_runyard": round(_rss() / 2**20, 1),
        "peak_rss_mb_emulator": round(cluster.call("rss") / 2**20, 1),
        "requests_per_run": round(sum(kinds.values()) / total, 3),
        "single_job_reads": kinds.get("read one Job", 0),
        "goal_seconds": GOAL_SECONDS,
        "wrong": check(container, failing),
        "requests": dict(kinds),
        "profile": sampler.top() if sampler is not None else [],
        "cpu_profile": profiles.top(),
        "load_average": os.getloadavg(),
    }


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _kind(path: str, query: dict[str, str]) -> str:
    if query.get("watch", "").lower() in ("true", "1"):
        return "watch Jobs"
    if path.endswith("/log"):
        return "read a pod log"
    if path.endswith("/pods"):
        return "list pods"
    if path.endswith("/jobs"):
        return "list Jobs"
    if "/jobs/" in path:
        return "read one Job"
    return path


def check(container: Container, failing: set[tuple[str, str]]) -> int:
    """Runs with a wrong status, error or log, plus any missing or recorded twice."""
    wrong = 0
    rows = container.store.database.rows("SELECT id, namespace, job_name, status, error FROM runs")
    for row in rows:
        text = container.store.runs.read_log(row["id"])
        if (row["namespace"], row["job_name"]) in failing:
            ok = row["status"] == "failed" and "model broken_orders failed" in (row["error"] or "")
            ok = ok and text.endswith(BROKEN_LOG)
        else:
            ok = row["status"] == "success" and text.endswith(OK_LOG)
        wrong += not ok
    return wrong + abs(len(rows) - len({(r["namespace"], r["job_name"]) for r in rows}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--orgs", type=int, default=1, help="spread the runs over this many orgs")
    parser.add_argument("--scope", choices=["auto", "cluster", "namespaces"], default="auto")
    parser.add_argument("--profile", action="store_true", help="sample every thread's stack")
    parser.add_argument("--serve-cluster", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_cluster:
        serve_cluster(args.serve_cluster)
        return 0
    total = args.runs
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        cluster = Cluster(kubeconfig)
        os.environ["KUBECONFIG"] = str(kubeconfig)
        settings = Settings(
            database=str(Path(tmp) / "bench.db"),
            executor="kubernetes",
            reconcile_interval_seconds=0,
            k8s_watch_scope=args.scope,
            log_level="WARNING",
        )
        container = Container(settings)
        try:
            figures = run(container, cluster, total, max(1, args.orgs), args.profile)
        finally:
            container.stop()
            cluster.close()
    print(
        f"{total} runs: the emulator ended them within {figures['finish_window_seconds']} s; "
        f"every run terminal with its logs {figures['recorded_after_last_finish_seconds']} s "
        f"after the last ended ({figures['recorded_after_first_finish_seconds']} s after the "
        "first)"
    )
    print(
        f"{figures['orgs']} orgs, watch scope {figures['watch_scope']}: "
        f"{figures['watch_threads']} watch threads, {figures['threads']} threads in all; "
        f"CPU while finishing: runyard {figures['cpu_seconds_runyard']} s, emulator "
        f"{figures['cpu_seconds_emulator']} s; peak RSS runyard "
        f"{figures['peak_rss_mb_runyard']} MB, emulator {figures['peak_rss_mb_emulator']} MB; "
        f"load average {figures['load_average'][0]:.1f}"
    )
    if figures["profile"]:
        print("where runyard's threads were (samples every 5 ms):")
    for kind, where, n in figures["profile"]:
        print(f"  {n:6d}  {kind:22s} {where}")
    if figures["cpu_profile"]:
        print("runyard's CPU by function (cProfile in every tracker thread, own time):")
    for line in figures["cpu_profile"]:
        print(f"  {line}")
    print(
        f"API requests per run while finishing: {figures['requests_per_run']} "
        f"({figures['requests']}); single-Job reads: {figures['single_job_reads']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    failures = figures["wrong"]
    if failures:
        print(f"FAIL: {failures} runs have a wrong status or log", file=sys.stderr)
    if figures["recorded_after_last_finish_seconds"] > GOAL_SECONDS:
        print(f"FAIL: goal is every run recorded within {GOAL_SECONDS} s", file=sys.stderr)
        failures += 1
    if figures["single_job_reads"]:
        print("FAIL: the tracker read single Jobs (polling)", file=sys.stderr)
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
