"""Notification delivery under a burst: runs finish at once, each calling for a Slack alert
and a webhook, and one webhook receiver hangs.

Receivers run in a separate process (so they do not share runyard's interpreter): a Slack
Web API stand-in answering chat.postMessage like Slack, a healthy webhook receiver, and
one that accepts connections and never answers. 90 % of the jobs' webhooks go to the
healthy receiver, 10 % to the hanging one. The runs are finished by 8 threads through the
tracker (as executors do), which writes each run's status and its outbox rows in one
transaction; the outbox's own workers deliver, with runyard's default settings (16 sender
threads, 4 requests at a time per host, 10 s timeout).

Prints the time until every deliverable notification (Slack, healthy webhooks) has been
delivered (goal: under 10 s), from the first run's finish and from the last one's, and
delivery latency percentiles. With --noisy-org, half the runs are one org's burst of
failures, finished first: it prints how long the alerts of 100 orgs with one failure each,
finished right after the burst, waited (goal: under 1 s); the rest of the runs belong to
1,000 other orgs. Writes the figures to bench/results/notify.json.

    python bench/notify.py [--runs 1000] [--hanging-share 0.1] [--noisy-org]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.container import Container  # noqa: E402
from app.ids import new_id, utcnow  # noqa: E402
from app.models import Job, JobConfig, NodeSummary, RunRecord, RunSnapshot  # noqa: E402
from app.ports import Outcome  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store.jobs import config_of  # noqa: E402
from tests.factories import saved_project  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "notify.json"
GOAL_SECONDS = 10.0
FAIR_GOAL_SECONDS = 1.0  # another org's alert, behind one org's burst
QUIET_ORGS = 1000
PROBES = 100  # orgs with one run each, finished right after the burst
FINISHING_THREADS = 8
BROKEN = NodeSummary(
    unique_id="model.dbt_demo.broken_orders",
    name="broken_orders",
    resource_type="model",
    status="error",
    message="Runtime Error in model broken_orders (models/broken/broken_orders.sql)\n"
    "  Conversion Error: Could not convert string 'abc' to INT32",
)


# --- the receivers' process ----------------------------------------------------------------


def serve() -> None:
    """Three servers on free ports; prints "slack hook hang" ports, then serves forever."""
    hang_forever = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else small writes wait for delayed ACKs (40 ms)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.server.kind  # type: ignore[attr-defined]
            if kind == "hang":
                hang_forever.wait()
                return
            body = b'{"ok": true, "channel": "C1", "ts": "1.0"}' if kind == "slack" else b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    servers = []
    for kind in ("slack", "hook", "hang"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 256
        server.kind = kind  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
    hang_forever.wait()


# --- the benchmark -------------------------------------------------------------------------


def _org_jobs(container: Container, slug: str, ports: list[int]) -> tuple[Any, list[Job]]:
    """An org's project and its two jobs: webhooks to the healthy and the hanging receiver."""
    store = container.store
    org = store.orgs.get_or_create(slug)
    now = utcnow()
    project = saved_project(
        store,
        org_id=org.id,
        org_slug=org.slug,
        name="analytics",
        kind="dbt",
        slack_channel="#data-alerts",
    )
    jobs = []
    for name, port in (("healthy", ports[1]), ("hanging", ports[2])):
        config = JobConfig(
            name=name,
            command="dbt build",
            slack_alerts_enabled=True,
            webhook_enabled=True,
            webhook_url=f"http://127.0.0.1:{port}/hook",
            webhook_events=["failure"],
        )
        job = Job(
            **{f: getattr(config, f) for f in JobConfig.__struct_fields__},
            id=new_id("job"),
            project_id=project.id,
            org_id=org.id,
            version=1,
            webhook_secret="bench-secret-0123456789",
            webhook_secret_set=True,
            created_at=now,
            updated_at=now,
        )
        store.jobs.insert(job)
        jobs.append(job)
    return project, jobs


def _setup(
    container: Container, runs: int, hanging_share: float, ports: list[int], noisy: bool
) -> list[str]:
    """The runs, in the order they will finish. With ``noisy``: half of them are one org's
    burst, finished first; then PROBES orgs with a single run each (the alerts whose delay
    is measured); then the rest, over QUIET_ORGS other orgs."""
    store = container.store
    now = utcnow()
    plan: list[tuple[str, int]] = []  # (org, index of the run)
    burst = runs // 2 if noisy else runs
    probes = min(PROBES, runs - burst)
    plan += [("bench", i) for i in range(burst)]
    plan += [(f"probe{i - burst:04d}", i) for i in range(burst, burst + probes)]
    plan += [(f"quiet{i % QUIET_ORGS:04d}", i) for i in range(burst + probes, runs)]
    orgs = {slug: _org_jobs(container, slug, ports) for slug in dict.fromkeys(s for s, _ in plan)}
    run_ids = []
    hanging_every = round(1 / hanging_share) if hanging_share else 0
    for slug, i in plan:
        project, jobs = orgs[slug]
        job = jobs[1] if hanging_every and i % hanging_every == 0 else jobs[0]
        run = RunRecord(
            id=new_id("run"),
            org_id=project.org_id,
            project_id=project.id,
            job_id=job.id,
            job_name=f"analytics-{job.name}-{i}",
            cronjob_name=None,
            namespace=None,
            job_type="build",
            status="pending",
            start_time=None,
            end_time=None,
            duration_seconds=None,
            triggered_by="scheduled",
            command="dbt build",
            job_version=1,
            executor="bench",  # no executor of this process takes these runs for its own
            created_at=now,
            updated_at=now,
            snapshot=RunSnapshot(
                project_name=project.name,
                project_kind="dbt",
                image=None,
                path=None,
                service_account=None,
                template_overrides={},
                project_environment={},
                project_resources={},
                job=config_of(job),
                job_version=1,
                argv=["dbt", "build"],
            ),
        )
        store.runs.insert(run)
        container.tracker.started(run.id, now)
        container.tracker.log(run.id, "12:00:01  1 of 18 START sql table model broken_orders\n")
        run_ids.append(run.id)
    return run_ids


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def bench(runs: int, hanging_share: float, noisy: bool) -> dict[str, Any]:
    receivers = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receivers.stdout is not None
        ports = [int(p) for p in receivers.stdout.readline().split()]
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                database=str(Path(tmp) / "bench.db"),
                executor="local",
                slack_token="xoxb-bench",
                slack_base_url=f"http://127.0.0.1:{ports[0]}/api/",
                webhook_allowed_hosts=("127.0.0.1",),
                log_level="WARNING",
            )
            container = Container(settings)
            container.start()
            try:
                return _measure(container, runs, hanging_share, ports, noisy)
            finally:
                stop = time.monotonic()
                container.stop()
                print(f"stopped in {time.monotonic() - stop:.1f} s (hanging requests time out)")
    finally:
        receivers.kill()
        receivers.wait()


def _measure(
    container: Container, runs: int, hanging_share: float, ports: list[int], noisy: bool
) -> dict[str, Any]:
    run_ids = _setup(container, runs, hanging_share, ports, noisy)
    store = container.store
    hanging_host = f"127.0.0.1:{ports[2]}"
    end = utcnow() + timedelta(seconds=95)

    def finish(run_id: str) -> None:
        container.tracker.finished(
            run_id,
            Outcome(
                status="failed", end_time=end, exit_code=1, error="1 model failed", results=[BROKEN]
            ),
        )

    started = time.monotonic()
    cpu_start = _cpu()
    with ThreadPoolExecutor(FINISHING_THREADS) as pool:
        list(pool.map(finish, run_ids))
    finished = time.monotonic() - started

    def deliverable_left() -> int:
        return int(
            store.database.scalar(
                "SELECT count(*) FROM notifications WHERE host != ? AND state != 'delivered'",
                (hanging_host,),
            )
        )

    deadline = started + 120
    while deliverable_left() and time.monotonic() < deadline:
        time.sleep(0.01)
    all_delivered = time.monotonic() - started
    cpu = _cpu() - cpu_start
    rows = store.database.rows(
        "SELECT n.kind, n.host, n.state, n.attempts, n.created_at, n.delivered_at,"
        " o.slug AS org FROM notifications n JOIN orgs o ON o.id = n.org_id"
    )
    latencies = [
        (
            datetime.fromisoformat(r["delivered_at"].replace("Z", "+00:00"))
            - datetime.fromisoformat(r["created_at"].replace("Z", "+00:00"))
        ).total_seconds()
        for r in rows
        if r["delivered_at"]
    ]
    deliverable = [r for r in rows if r["host"] != hanging_host]
    hanging = [r for r in rows if r["host"] == hanging_host]
    quiet = [
        _seconds(r["delivered_at"]) - _seconds(r["created_at"])
        for r in deliverable
        if r["org"].startswith("probe") and r["delivered_at"]
    ]
    fair = {}
    if noisy:
        fair = {
            "probe_alerts": len(quiet),
            "quiet_alert_delay_p50_seconds": round(statistics.median(quiet), 3),
            "quiet_alert_delay_max_seconds": round(max(quiet), 3),
            "fair_goal_seconds": FAIR_GOAL_SECONDS,
        }
    return {
        "runs": runs,
        "notifications": len(rows),
        "deliverable": len(deliverable),
        "delivered": sum(r["state"] == "delivered" for r in deliverable),
        "to_hanging_receiver": len(hanging),
        "hanging_attempted": sum(r["attempts"] > 0 for r in hanging),
        "finish_all_runs_seconds": round(finished, 3),
        "all_deliverable_delivered_seconds": round(all_delivered, 3),
        "delivered_after_last_finish_seconds": round(all_delivered - finished, 3),
        "deliveries_per_second": round(len(deliverable) / all_delivered, 1),
        "cpu_seconds": round(cpu, 1),
        **fair,
        "goal_seconds": GOAL_SECONDS,
        "met_goal": all_delivered < GOAL_SECONDS and deliverable_left() == 0,
        "delivery_latency_p50_seconds": round(statistics.median(latencies), 3),
        "delivery_latency_p95_seconds": round(_percentile(latencies, 0.95), 3),
        "delivery_latency_max_seconds": round(max(latencies), 3),
        "settings": {
            "notify_workers": container.notifications.workers,
            "notify_per_host": container.notifications.per_host,
            "notify_timeout_seconds": container.notifications.timeout,
        },
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--hanging-share", type=float, default=0.1)
    parser.add_argument(
        "--noisy-org",
        action="store_true",
        help="half the runs are one org's burst, finished first; the others are alone in "
        f"their org ({QUIET_ORGS} orgs) and finished after it",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    figures = bench(args.runs, args.hanging_share, args.noisy_org)
    print(json.dumps(figures, indent=2))
    print(
        f"{figures['delivered']} of {figures['deliverable']} deliverable notifications "
        f"delivered in {figures['all_deliverable_delivered_seconds']} s "
        f"(goal: under {GOAL_SECONDS:g} s); {figures['to_hanging_receiver']} went to the "
        "hanging receiver"
    )
    print(
        f"finishing the runs took {figures['finish_all_runs_seconds']} s; the last "
        f"notification was delivered {figures['delivered_after_last_finish_seconds']} s after "
        f"the last run finished; {figures['deliveries_per_second']} deliveries a second; "
        f"load average {figures['load_average'][0]:.1f}"
    )
    if args.noisy_org:
        print(
            f"{figures['probe_alerts']} alerts of {PROBES} orgs with one failure each, behind "
            f"one org's burst of {args.runs // 2}: delayed "
            f"{figures['quiet_alert_delay_p50_seconds']} s (median), "
            f"{figures['quiet_alert_delay_max_seconds']} s at most "
            f"(goal: under {FAIR_GOAL_SECONDS:g} s)"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
