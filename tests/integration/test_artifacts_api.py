"""Artifacts over real HTTP: a pod's upload with its run's credential, the reads of an
org, the latest successful copy of a job's artifact, and every refusal of a hostile upload
(forged, expired or another run's credential, oversized, not JSON, a traversal name)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.container import Container
from app.ids import utcnow
from app.models import JobConfig
from app.store.artifacts import TOKEN_PREFIX
from tests.conftest import LiveServer
from tests.factories import run_record, snapshot
from tests.integration.api_helpers import assert_problem

MANIFEST = json.dumps({"metadata": {"invocation_id": "inv-1"}, "nodes": {"a": {"b": [1, 2]}}})


@pytest.fixture
def server(container_factory: Any) -> Iterator[LiveServer]:
    container: Container = container_factory(
        artifact_max_file_bytes=4096, artifact_max_run_bytes=6000
    )
    live = LiveServer(container).start()
    yield live
    live.stop()


def _token(container: Container, org: str, role: str = "admin") -> dict[str, str]:
    token, _ = container.tokens.create(org, role)
    return {"Authorization": f"Bearer {token}"}


def _run(container: Container, org: str, status: str = "running", **fields: Any) -> str:
    org_id = container.store.orgs.get_or_create(org).id
    record = run_record(
        org_id=org_id,
        status=status,
        executor="kubernetes",
        snapshot_=snapshot(job=JobConfig(name="nightly", command="dbt build", timeout_seconds=600)),
        **fields,
    )
    container.store.runs.insert(record)
    return record.id


def _credential(container: Container, run_id: str) -> dict[str, str]:
    record = container.store.runs.record(run_id)
    assert record is not None
    expires = utcnow() + timedelta(hours=1)
    token = container.store.artifacts.upload_token(record.org_id, run_id, expires)
    return {"Authorization": f"Bearer {token}"}


def _upload(server: LiveServer, run_id: str, name: str, body: Any, headers: dict[str, str]) -> Any:
    return httpx.post(
        f"{server.url}/api/v1/runs/{run_id}/artifacts/{name}",
        content=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    )


def test_upload_then_list_download_and_latest(server: LiveServer) -> None:
    container = server.container
    reader = _token(container, "acme", "viewer")
    run_id = _run(container, "acme")
    stored = _upload(
        server, run_id, "manifest.json", MANIFEST.encode(), _credential(container, run_id)
    )
    assert stored.status_code == 201, stored.text
    digest = hashlib.sha256(MANIFEST.encode()).hexdigest()
    assert stored.json()["sha256"] == digest

    listed = httpx.get(f"{server.url}/api/v1/runs/{run_id}/artifacts", headers=reader).json()
    assert [(a["name"], a["size"], a["sha256"]) for a in listed["artifacts"]] == [
        ("manifest.json", len(MANIFEST), digest)
    ]
    got = httpx.get(f"{server.url}/api/v1/runs/{run_id}/artifacts/manifest.json", headers=reader)
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/json")
    assert got.content == MANIFEST.encode()

    # The job's copy comes from its latest SUCCESSFUL run that kept it.
    admin = _token(container, "acme")
    project = httpx.post(
        f"{server.url}/api/v1/projects",
        json={"name": "analytics", "kind": "dbt"},
        headers=admin,
    ).json()
    job = httpx.post(
        f"{server.url}/api/v1/projects/{project['id']}/jobs",
        json={"name": "ci", "command": "dbt build"},
        headers=admin,
    ).json()
    latest_url = (
        f"{server.url}/api/v1/projects/{project['id']}/jobs/{job['id']}/artifacts/manifest.json"
    )
    assert_problem(httpx.get(latest_url, headers=reader), 404)
    ids = {"project_id": project["id"], "job_id": job["id"]}
    first = _run(container, "acme", status="success", **ids)
    second = _run(container, "acme", status="success", **ids)
    failed = _run(container, "acme", status="failed", **ids)
    for run, body in ((first, b'{"v": 1}'), (failed, b'{"v": 3}')):
        response = _upload(server, run, "manifest.json", body, _credential(container, run))
        assert response.status_code == 201
    assert second  # succeeded without a manifest: skipped
    latest = httpx.get(latest_url, headers=reader)
    assert latest.status_code == 200 and latest.content == b'{"v": 1}'
    assert latest.headers["x-runyard-run-id"] == first
    stranger = _token(container, "globex")
    assert_problem(httpx.get(latest_url, headers=stranger), 404)


def test_another_org_sees_nothing(server: LiveServer) -> None:
    container = server.container
    run_id = _run(container, "acme")
    assert (
        _upload(
            server, run_id, "run_results.json", b"{}", _credential(container, run_id)
        ).status_code
        == 201
    )
    stranger = _token(container, "globex")
    for path in (
        f"/api/v1/runs/{run_id}/artifacts",
        f"/api/v1/runs/{run_id}/artifacts/run_results.json",
    ):
        assert_problem(httpx.get(server.url + path, headers=stranger), 404)
    # An API token, even the run's org's admin token, is no upload credential.
    admin = _token(container, "acme")
    assert_problem(_upload(server, run_id, "manifest.json", b"{}", admin), 401)


def test_hostile_uploads_are_refused_and_store_nothing(server: LiveServer) -> None:
    container = server.container
    run_id = _run(container, "acme")
    other_run = _run(container, "acme")
    good = _credential(container, run_id)

    forged = {"Authorization": f"Bearer {TOKEN_PREFIX}9999999999." + "A" * 43}
    assert_problem(_upload(server, run_id, "manifest.json", b"{}", forged), 401)
    assert_problem(_upload(server, run_id, "manifest.json", b"{}", {}), 401)
    # Another run's credential, even of the same org.
    assert_problem(_upload(server, other_run, "manifest.json", b"{}", good), 401)
    # An expired credential.
    record = container.store.runs.record(run_id)
    assert record is not None
    old = container.store.artifacts.upload_token(
        record.org_id, run_id, utcnow() - timedelta(seconds=1)
    )
    assert_problem(
        _upload(server, run_id, "manifest.json", b"{}", {"Authorization": f"Bearer {old}"}), 401
    )
    # Names outside the allowlist, traversal included.
    for name in ("..%2F..%2Fetc%2Fpasswd", "notes.json", "..", "manifest.json.gz"):
        response = _upload(server, run_id, name, b"{}", good)
        # 400: not an artifact name; the client resolves ".." to another path (405).
        assert response.status_code in (400, 404, 405), (name, response.text)
    # Oversized: declared, and streamed without a length.
    big = b'{"a": "' + b"x" * 5000 + b'"}'
    assert_problem(_upload(server, run_id, "manifest.json", big, good), 413)

    def pieces() -> Iterator[bytes]:
        yield big[:3000]
        yield big[3000:]

    assert_problem(_upload(server, run_id, "manifest.json", pieces(), good), 413)
    # Not JSON, or JSON but not one object.
    for body in (b"{not json", b"[1, 2]", b'{"a": 1} {"b": 2}', b""):
        assert_problem(_upload(server, run_id, "manifest.json", body, good), 422)
    assert container.store.artifacts.list(run_id) == []

    # The per-run budget: 4000 + 3000 bytes is more than the run may keep (6000).
    part = b'{"a": "' + b"y" * 3990 + b'"}'
    assert _upload(server, run_id, "manifest.json", part, good).status_code == 201
    assert_problem(_upload(server, run_id, "catalog.json", part[:3000] + b"", good), 413)
    assert [a.name for a in container.store.artifacts.list(run_id)] == ["manifest.json"]


def test_uploads_close_after_the_run_has_ended_plus_grace(server: LiveServer) -> None:
    container = server.container
    now = utcnow()
    recent = _run(container, "acme", status="success", end_time=now - timedelta(seconds=30))
    long_ago = _run(container, "acme", status="failed", end_time=now - timedelta(minutes=11))
    assert (
        _upload(
            server, recent, "run_results.json", b"{}", _credential(container, recent)
        ).status_code
        == 201
    )
    refused = _upload(server, long_ago, "run_results.json", b"{}", _credential(container, long_ago))
    assert "ended" in assert_problem(refused, 401)["detail"]
