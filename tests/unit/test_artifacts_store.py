"""The artifact store: streamed, compressed, content-addressed, private files; rows with the
run; the latest successful copy of a job's artifact; retention deletes rows and orphan files."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from app.services.retention import RetentionWorker
from app.store import Store
from app.store.artifacts import SWEEP_GRACE_SECONDS, ArtifactTooLarge
from tests.factories import run_record


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "db.sqlite")
    store.migrate()
    with store.database.write() as db:
        db.conn.execute("INSERT INTO orgs VALUES ('org_a', 'acme', '2026-01-01T00:00:00Z')")
    return store


def _run(store: Store, run_id: str, status: str = "success", **fields: Any) -> None:
    store.runs.insert(run_record(org_id="org_a", run_id=run_id, status=status, **fields))


def test_put_streams_compresses_and_reads_back(store: Store, tmp_path: Path) -> None:
    _run(store, "run_a")
    content = (
        b'{"metadata": {"invocation_id": "x"}, "nodes": {' + b'"n": 1,' * 400_000 + b'"z": 2}}'
    )
    info = store.artifacts.put("run_a", "manifest.json", io.BytesIO(content), limit_bytes=10**8)
    sha = hashlib.sha256(content).hexdigest()
    assert (info.name, info.size, info.sha256) == ("manifest.json", len(content), sha)
    file = tmp_path / "db.sqlite.artifacts" / sha[:2] / f"{sha}.gz"
    assert file.stat().st_size < len(content) // 10  # compressed
    assert gzip.decompress(file.read_bytes()) == content
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "db.sqlite.artifacts").stat().st_mode) == 0o700
    assert store.artifacts.read("run_a", "manifest.json") == content
    stream = store.artifacts.open("run_a", "manifest.json")
    assert stream is not None
    with stream:
        assert stream.read(10) == content[:10]
    assert [a.name for a in store.artifacts.list("run_a")] == ["manifest.json"]
    assert store.artifacts.read("run_a", "catalog.json") is None
    assert store.artifacts.open("run_b", "manifest.json") is None


def test_over_the_limit_keeps_nothing(store: Store, tmp_path: Path) -> None:
    _run(store, "run_a")
    with pytest.raises(ArtifactTooLarge):
        store.artifacts.put("run_a", "manifest.json", b"x" * 5000, limit_bytes=4999)
    assert store.artifacts.list("run_a") == []
    folder = tmp_path / "db.sqlite.artifacts"
    assert [p for p in folder.rglob("*") if p.is_file()] == []


def test_check_failure_keeps_nothing(store: Store) -> None:
    _run(store, "run_a")

    def refuse(written: BinaryIO) -> None:
        assert written.read() == b"{"
        raise ValueError("not JSON")

    with pytest.raises(ValueError, match="not JSON"):
        store.artifacts.put("run_a", "manifest.json", b"{", limit_bytes=100, check=refuse)
    assert store.artifacts.list("run_a") == []


def test_latest_successful_copy_of_a_job(store: Store) -> None:
    _run(store, "run_1", job_id="job_x")
    _run(store, "run_2", job_id="job_x")
    _run(store, "run_3", status="failed", job_id="job_x")
    _run(store, "run_4", job_id="job_y")
    store.artifacts.put("run_1", "manifest.json", b'{"v": 1}', limit_bytes=100)
    store.artifacts.put("run_2", "manifest.json", b'{"v": 2}', limit_bytes=100)
    store.artifacts.put("run_3", "manifest.json", b'{"v": 3}', limit_bytes=100)
    store.artifacts.put("run_4", "manifest.json", b'{"v": 4}', limit_bytes=100)
    assert store.artifacts.latest_successful("job_x", "manifest.json") == ("run_2", b'{"v": 2}')
    assert store.artifacts.latest_successful("job_x", "catalog.json") is None
    assert store.artifacts.total_size("run_2") == 8


def test_retention_deletes_rows_and_unreferenced_files(store: Store, tmp_path: Path) -> None:
    old = datetime(2026, 1, 1, tzinfo=UTC)
    _run(store, "run_old", created_at=old)
    _run(store, "run_new", created_at=old + timedelta(days=100))
    store.artifacts.put("run_old", "manifest.json", b'{"shared": true}', limit_bytes=100)
    store.artifacts.put("run_new", "manifest.json", b'{"shared": true}', limit_bytes=100)
    only_old = store.artifacts.put("run_old", "run_results.json", b'{"old": 1}', limit_bytes=100)
    folder = tmp_path / "db.sqlite.artifacts"
    ancient = old.timestamp()
    for file in folder.rglob("*.gz"):
        os.utime(file, (ancient, ancient))  # past the sweep's grace
    worker = RetentionWorker(store, days=30, clock=lambda: old + timedelta(days=100))
    assert worker.prune_once() == 1
    assert store.artifacts.list("run_old") == []
    assert not (folder / only_old.sha256[:2] / f"{only_old.sha256}.gz").exists()
    assert store.artifacts.read("run_new", "manifest.json") == b'{"shared": true}'


def test_sweep_spares_young_files(store: Store) -> None:
    _run(store, "run_a")
    info = store.artifacts.put("run_a", "manifest.json", b"{}", limit_bytes=100)
    store.artifacts.delete_runs(["run_a"])
    assert store.artifacts.sweep() == 0  # a put in flight writes its file before its row
    file = store.artifacts.root / info.sha256[:2] / f"{info.sha256}.gz"
    assert file.exists()
    assert store.artifacts.sweep(now=file.stat().st_mtime + SWEEP_GRACE_SECONDS + 1) == 1
    assert not file.exists()
