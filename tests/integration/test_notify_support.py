"""Shared pieces of the notification tests: real HTTP receivers on local ports, a Slack
Web API stand-in, an independent signature check, and runs driven through the tracker.

It lives in a ``test_notify_*`` module (imported by the others) and tests its own
receivers and verifier, so the pieces the other tests trust are checked too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import msgspec

from app.container import Container
from app.ids import new_id, utcnow
from app.models import Job, JobConfig, NodeSummary, Project, RunRecord, RunSnapshot, RunStatus
from app.notify.deliver import RetryPolicy
from app.ports import Outcome
from app.store.jobs import config_of
from app.store.outbox import Notification

FAST_RETRIES = RetryPolicy(max_attempts=5, base_seconds=0.05, factor=2.0, jitter=0.1)


class Received(msgspec.Struct, kw_only=True):
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.body)


class Reply(msgspec.Struct, kw_only=True):
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    hang: bool = False  # never answer (until the receiver closes)


Responder = Callable[["Receiver", Received], Reply]


def always(status: int = 200, body: bytes = b"ok", **headers: str) -> Responder:
    return lambda _receiver, _request: Reply(status=status, body=body, headers=headers)


def scripted(*replies: Reply) -> Responder:
    """The first replies in order, then the last one again and again."""

    def respond(receiver: Receiver, _request: Received) -> Reply:
        index = min(len(receiver.requests) - 1, len(replies) - 1)
        return replies[index]

    return respond


def slack_api(receiver: Receiver, request: Received) -> Reply:
    """Answers like Slack's chat.postMessage."""
    if not request.path.endswith("/chat.postMessage"):
        return Reply(status=404, body=b'{"ok": false, "error": "unknown_method"}')
    sent = request.json()
    answer = {"ok": True, "channel": sent["channel"], "ts": f"{time.time():.6f}"}
    answer["message"] = {"text": sent.get("text"), "blocks": sent.get("blocks")}
    return Reply(body=json.dumps(answer).encode(), headers={"Content-Type": "application/json"})


class Receiver:
    """A threaded HTTP server on a local port that records every request."""

    def __init__(self, respond: Responder | None = None, host: str = "127.0.0.1") -> None:
        self.respond = respond or always()
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else small writes wait for delayed ACKs (40 ms)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                    at=time.monotonic(),
                )
                with outer._lock:
                    outer.requests.append(request)
                reply = outer.respond(outer, request)
                if reply.hang:
                    outer._closing.wait(60)
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"{self.url()} got {len(self.requests)} requests, wanted {count}")

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver(respond: Responder | None = None, host: str = "127.0.0.1") -> Iterator[Receiver]:
    found = Receiver(respond, host)
    try:
        yield found
    finally:
        found.close()


def notifying_container(container_factory: Callable[..., Container], slack: Receiver) -> Container:
    """A started container whose Slack is the local stand-in and whose webhooks may reach
    127.0.0.1 (and nothing else that is private), with retries in milliseconds."""
    container = container_factory(
        slack_token="xoxb-test-token",
        slack_base_url=slack.url("/api/"),
        slack_default_channel="#runyard-default",
        public_url="https://runyard.example.com",
        webhook_allowed_hosts=("127.0.0.1",),
        notify_timeout_seconds=1.0,
    )
    container.notifications.retry_policy = FAST_RETRIES
    return container


def verify_signature(header: str, body: bytes, secret: str, *, tolerance: float = 300) -> bool:
    """What a receiver does, written from docs/notifications.md, not from app code."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields["v1"])


# --- runs driven through the tracker -----------------------------------------------------


def make_project(container: Container, **config: Any) -> Project:
    """A project of org "acme" written through the store (send-time checks are the point
    of these tests, so save-time validation is deliberately not in the way)."""
    org = container.store.orgs.get_or_create("acme")
    now = utcnow()
    project = Project(
        id=new_id("proj"),
        org_id=org.id,
        org_slug=org.slug,
        name=config.pop("name", "analytics"),
        kind=config.pop("kind", "dbt"),
        created_at=now,
        updated_at=now,
        **config,
    )
    container.store.projects.save(project)
    return project


def make_job(
    container: Container, project: Project, *, secret: str | None = None, **config: Any
) -> Job:
    """A job row (through the store, like make_project); ``config`` as JobConfig fields,
    the name unique unless given."""
    now = utcnow()
    job = Job(
        **msgspec.structs.asdict(
            JobConfig(**{"name": new_id("job", 6), "command": "dbt build"} | config)
        ),
        id=new_id("job"),
        project_id=project.id,
        org_id=project.org_id,
        version=1,
        webhook_secret=secret,
        webhook_secret_set=bool(secret),
        created_at=now,
        updated_at=now,
    )
    container.store.jobs.insert(job)
    return job


def make_run(container: Container, project: Project, job: Job | JobConfig) -> RunRecord:
    """A pending run of ``job``; a bare JobConfig stands for a job deleted since."""
    now = utcnow()
    config = config_of(job) if isinstance(job, Job) else job
    run = RunRecord(
        id=new_id("run"),
        org_id=project.org_id,
        project_id=project.id,
        job_id=job.id if isinstance(job, Job) else new_id("job"),
        job_name=f"{project.name}-{job.name}",
        cronjob_name=None,
        namespace=None,
        job_type="build",
        status="pending",
        start_time=None,
        end_time=None,
        duration_seconds=None,
        triggered_by="manual",
        command=job.command,
        job_version=1,
        executor="local",
        created_at=now,
        updated_at=now,
        snapshot=RunSnapshot(
            project_name=project.name,
            project_kind=project.kind,
            image=None,
            path=None,
            service_account=None,
            template_overrides={},
            project_environment={},
            project_resources={},
            job=config,
            job_version=1,
            argv=job.command.split(),
        ),
    )
    assert container.store.runs.insert(run)
    return run


def finish(
    container: Container,
    run: RunRecord,
    status: RunStatus,
    *,
    error: str | None = None,
    exit_code: int | None = None,
    results: list[NodeSummary] | None = None,
    log: str = "",
) -> None:
    start = utcnow()
    container.tracker.started(run.id, start)
    if log:
        container.tracker.log(run.id, log)
    outcome = Outcome(
        status=status,
        end_time=start + timedelta(seconds=83),
        exit_code=exit_code,
        error=error,
        results=results or [],
    )
    assert container.tracker.finished(run.id, outcome)


def wait_settled(
    container: Container, run_id: str, count: int, timeout: float = 15.0
) -> list[Notification]:
    """The run's notifications once ``count`` exist and each is delivered or failed."""
    deadline = time.monotonic() + timeout
    found: list[Notification] = []
    while time.monotonic() < deadline:
        found = container.store.outbox.for_run(run_id)
        if len(found) >= count and all(n.state in ("delivered", "failed") for n in found):
            return found
        time.sleep(0.02)
    raise AssertionError(f"notifications did not settle: {found}")


# --- self-tests of the pieces above -----------------------------------------------------


def test_receiver_records_and_answers() -> None:
    with receiver(scripted(Reply(status=500), Reply(status=201, body=b"made"))) as target:
        first = httpx.post(target.url("/a"), content=b"one", headers={"X-Test": "1"})
        second = httpx.post(target.url("/a"), content=b"two")
        third = httpx.post(target.url("/a"), content=b"three")
    assert [first.status_code, second.status_code, third.status_code] == [500, 201, 201]
    assert [r.body for r in target.requests] == [b"one", b"two", b"three"]
    assert target.requests[0].headers["x-test"] == "1"


def test_independent_verifier_rejects_tampering_and_old_timestamps() -> None:
    secret, body = "s3cret-s3cret-s3cret", b'{"event": "failure"}'
    now = int(time.time())
    good = hmac.new(secret.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert verify_signature(f"t={now},v1={good}", body, secret)
    assert not verify_signature(f"t={now},v1={good}", body + b" ", secret)
    assert not verify_signature(f"t={now},v1={good}", body, secret + "x")
    old = now - 600
    stale = hmac.new(secret.encode(), f"{old}.".encode() + body, hashlib.sha256).hexdigest()
    assert not verify_signature(f"t={old},v1={stale}", body, secret)
