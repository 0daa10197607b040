"""Load on a real server (uvicorn) running the Kubernetes executor against the emulator.

An open loop: requests are sent at a fixed arrival rate (default 300 a second for 60 s), a
mix of triggers, run reads, run lists and log reads, whether or not earlier ones have been
answered; each one's latency counts from when it was due to be sent, so a server that
falls behind shows it in the percentiles (a closed loop of N clients would only slow
down: its p99 is N divided by the throughput). Requests go out on a pool of keep-alive
connections that grows as needed. The emulator runs in its own process and completes
every Job shortly after it is created.

Printed: p50/p99 per route and overall, errors (5xx, refused or timed-out connections),
lost runs (a trigger answered 2xx whose run does not reach a terminal status), then a short
step search for the highest rate whose p99 stays under 100 ms.

    PYTHONPATH=. python bench/load.py [--rate 300] [--seconds 60] [--no-search]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.ids import new_id, utcnow
from app.models import Job
from app.services.tokens import TokenService
from app.store import Store
from bench._http import (
    Connection,
    OnResponse,
    Pick,
    RouteStats,
    describe,
    free_port,
    wait_for_port,
)
from tests.factories import saved_project
from tests.harness.k8s_server import FakeClusterProcess

RESULTS = Path(__file__).parent / "results" / "load.json"
JOBS = 20
TERMINAL = {"success", "failed", "timed_out", "cancelled", "lost"}


def seed(path: str) -> tuple[str, str, list[str]]:
    store = Store(path)
    store.migrate()
    token, _ = TokenService(store).create("bench", "admin")
    org = store.orgs.by_slug("bench")
    assert org is not None
    now = utcnow()
    project = saved_project(
        store,
        org_id=org.id,
        org_slug=org.slug,
        name="analytics",
        kind="dbt",
        image="ghcr.io/acme/analytics:1",
    )
    job_ids = []
    for i in range(JOBS):
        job = Job(
            id=new_id("job"),
            org_id=org.id,
            project_id=project.id,
            version=1,
            name=f"job-{i:02d}",
            command="dbt build --select tag:nightly",
            concurrency_policy="Allow",
            created_at=now,
            updated_at=now,
        )
        store.jobs.insert(job)
        job_ids.append(job.id)
    store.close()
    return token, project.id, job_ids


class OpenLoop:
    """Sends ``pick``'s requests at ``rate`` a second for ``seconds``, on a pool of
    keep-alive connections (at most ``max_connections``; beyond, a request waits for one,
    and the wait counts in its latency)."""

    def __init__(
        self,
        port: int,
        headers: dict[str, str],
        pick: Pick,
        on_response: OnResponse | None = None,
        max_connections: int = 256,
        timeout: float = 10.0,
    ) -> None:
        self._port = port
        self._headers = headers
        self._pick = pick
        self._on_response = on_response
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._timeout = timeout
        self.stats: dict[str, RouteStats] = {}
        self.errors: dict[str, int] = {}
        self.behind = 0.0  # how late the generator itself was at worst (seconds)

    async def _connection(self) -> tuple[Connection, bool]:
        """A connection, and whether it was kept from an earlier request."""
        if self._idle:
            return self._idle.pop(), True
        await self._slots.acquire()  # one slot per open connection
        try:
            return await Connection.open("127.0.0.1", self._port), False
        except BaseException:
            self._slots.release()
            raise

    def _close(self, connection: Connection) -> None:
        connection.close()
        self._slots.release()

    async def _send(
        self, method: str, path: str, body: bytes
    ) -> tuple[Connection, tuple[int, bytes]]:
        for attempt in (1, 2):
            connection, kept = await self._connection()
            try:
                return connection, await connection.request(method, path, self._headers, body)
            except (OSError, asyncio.IncompleteReadError, IndexError):
                self._close(connection)
                # The server closed a kept connection while it sat idle (its keep-alive
                # timeout): not a failed request; send it again on a new connection.
                if not kept or attempt == 2:
                    raise
            except BaseException:  # cancelled (the timeout): the connection is mid-request
                self._close(connection)
                raise
        raise AssertionError("unreachable")

    async def _one(self, i: int, due: float) -> None:
        label, method, path, body = self._pick(i)
        try:
            # A timed-out request's connection is closed by _send (on its cancellation).
            connection, (status, data) = await asyncio.wait_for(
                self._send(method, path, body), self._timeout
            )
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            kind = type(exc).__name__
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self.stats.setdefault(label, RouteStats()).add(0, time.perf_counter() - due)
            return
        self.stats.setdefault(label, RouteStats()).add(status, time.perf_counter() - due)
        self._idle.append(connection)
        if self._on_response is not None:
            self._on_response(label, status, data)

    async def run(self, rate: float, seconds: float) -> float:
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.behind = max(self.behind, -delay)
            task = asyncio.create_task(self._one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        for connection in self._idle:
            connection.close()
        return time.perf_counter() - start


def overall(stats: dict[str, RouteStats]) -> RouteStats:
    merged = RouteStats()
    for route in stats.values():
        merged.latencies.extend(route.latencies)
        for code, n in route.statuses.items():
            merged.statuses[code] = merged.statuses.get(code, 0) + n
    return merged


def failures(stats: RouteStats) -> int:
    return sum(n for code, n in stats.statuses.items() if code == 0 or code >= 500)


def step_search(
    port: int, headers: dict[str, str], pick: Pick, seconds: float, start: float, goal_ms: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """Rates rising by half each step until p99 reaches ``goal_ms`` or requests fail,
    then one step halfway back: the highest rate that kept p99 under the goal."""
    steps: list[dict[str, Any]] = []
    best: float | None = None
    rate = start
    failed_at: float | None = None
    while failed_at is None and rate <= 5000:
        loop = OpenLoop(port, headers, pick)
        elapsed = asyncio.run(loop.run(rate, seconds))
        merged = overall(loop.stats)
        p99 = merged.percentile(0.99) * 1000
        ok = p99 < goal_ms and not failures(merged)
        steps.append(
            {"rate": round(rate), "p99_ms": round(p99, 1), "errors": failures(merged), "ok": ok}
        )
        print(f"  step {rate:.0f} req/s for {elapsed:.0f} s: p99 {p99:.1f} ms, ok={ok}")
        if ok:
            best = rate
            rate *= 1.5
        else:
            failed_at = rate
    if best is not None and failed_at is not None:
        middle = (best + failed_at) / 2
        loop = OpenLoop(port, headers, pick)
        asyncio.run(loop.run(middle, seconds))
        merged = overall(loop.stats)
        p99 = merged.percentile(0.99) * 1000
        ok = p99 < goal_ms and not failures(merged)
        steps.append(
            {"rate": round(middle), "p99_ms": round(p99, 1), "errors": failures(merged), "ok": ok}
        )
        print(f"  step {middle:.0f} req/s: p99 {p99:.1f} ms, ok={ok}")
        if ok:
            best = middle
    return best, steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=300.0, help="requests a second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--search", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--goal-ms", type=float, default=100.0)
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeClusterProcess(
            auto_complete_delay=0.5, logs="dbt build\nDone. PASS=3 WARN=0 ERROR=0 SKIP=0 TOTAL=3\n"
        ) as cluster,
    ):
        kubeconfig = cluster.write_kubeconfig(Path(tmp) / "kubeconfig")
        db = os.path.join(tmp, "load.db")
        token, project_id, job_ids = seed(db)
        port = free_port()
        env = os.environ | {"PYTHONPATH": str(root), "KUBECONFIG": str(kubeconfig)}
        server = subprocess.Popen(
            [
                sys.executable,
                str(root / "bench" / "_apiserver.py"),
                "--db",
                db,
                "--port",
                str(port),
                "--executor",
                "kubernetes",
            ],
            env=env,
        )
        try:
            wait_for_port("127.0.0.1", port)
            headers = {"Authorization": f"Bearer {token}"}
            rng = random.Random(11)
            run_ids: list[str] = []
            triggered: list[str] = []

            def remember(label: str, status: int, body: bytes) -> None:
                if label == "trigger" and 200 <= status < 300:
                    run_id = json.loads(body)["job_run_id"]
                    triggered.append(run_id)
                    run_ids.append(run_id)

            def pick(i: int) -> tuple[str, str, str, bytes]:
                roll = rng.random()
                job_id = job_ids[rng.randrange(JOBS)]
                if roll < 0.15 or not run_ids:
                    return (
                        "trigger",
                        "POST",
                        f"/api/v1/projects/{project_id}/jobs/{job_id}/trigger",
                        b"{}",
                    )
                run_id = run_ids[-rng.randrange(1, min(len(run_ids), 200) + 1)]
                if roll < 0.55:
                    return "get run", "GET", f"/api/v1/runs/{run_id}", b""
                if roll < 0.80:
                    return (
                        "list runs",
                        "GET",
                        f"/api/v1/projects/{project_id}/jobs/{job_id}/runs?limit=20",
                        b"",
                    )
                return "logs", "GET", f"/api/v1/runs/{run_id}/logs?tail=100", b""

            # A few seconds at a low rate first: connections, caches, the first runs.
            asyncio.run(OpenLoop(port, headers, pick, remember).run(50, 3))
            loop = OpenLoop(port, headers, pick, remember)
            elapsed = asyncio.run(loop.run(args.rate, args.seconds))
            summaries = {label: s.summary(elapsed) for label, s in sorted(loop.stats.items())}
            merged = overall(loop.stats)
            everything = merged.summary(elapsed)
            # Every acknowledged trigger must reach a terminal status.
            pending = set(triggered)
            deadline = time.monotonic() + 120
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as http:
                while pending and time.monotonic() < deadline:
                    for run_id in list(pending):
                        status = http.get(f"/api/v1/runs/{run_id}").json().get("status")
                        if status in TERMINAL:
                            pending.discard(run_id)
                    if pending:
                        time.sleep(1)
            api_requests = cluster.request_stats()
            best: float | None = None
            steps: list[dict[str, Any]] = []
            if args.search:
                print(f"step search (open loop, p99 goal {args.goal_ms:.0f} ms):")
                best, steps = step_search(
                    port, headers, pick, args.step_seconds, 50.0, args.goal_ms
                )
        finally:
            server.terminate()
            server.wait(30)
    errors = failures(merged)
    reads = [s for label, s in summaries.items() if label != "trigger"]
    reads_p99 = max(s["p99_ms"] for s in reads) if reads else 0
    print(
        f"open loop at {args.rate:.0f} req/s for {elapsed:.0f} s: {everything['requests']} "
        f"requests, p50 {everything['p50_ms']} ms, p99 {everything['p99_ms']} ms, "
        f"{errors} errors {loop.errors or ''}; generator at worst {loop.behind * 1000:.0f} ms "
        "behind schedule"
    )
    print(describe(list(summaries.items())))
    print(
        f"  triggers acknowledged: {len(triggered)}; runs not terminal within 120 s: "
        f"{len(pending)} (goal 0)"
    )
    print(
        f"  Kubernetes API requests: {api_requests.get('total')} "
        f"({api_requests.get('total', 0) / max(1, len(triggered)):.1f} per run)"
    )
    if args.search:
        shown = "none" if best is None else f"{best:.0f} req/s"
        print(f"  highest rate with p99 under {args.goal_ms:.0f} ms: {shown}")
    result: dict[str, Any] = {
        "benchmark": "load",
        "mode": "open loop",
        "rate": args.rate,
        "seconds": round(elapsed, 1),
        "requests": everything["requests"],
        "p50_ms": everything["p50_ms"],
        "p99_ms": everything["p99_ms"],
        "errors": errors,
        "connection_errors": loop.errors,
        "generator_behind_ms": round(loop.behind * 1000, 1),
        "triggers": len(triggered),
        "lost_runs": len(pending),
        "reads_p99_ms": reads_p99,
        "routes": summaries,
        "highest_rate_p99_under_goal": None if best is None else round(best),
        "goal_ms": args.goal_ms,
        "steps": steps,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    return 1 if errors or pending else 0


if __name__ == "__main__":
    sys.exit(main())
