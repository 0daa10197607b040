"""Artifact uploads: a dbt-like manifest.json of 10 MB and of 50 MB sent to
``POST /api/v1/runs/{id}/artifacts/manifest.json`` of a runyard server running in its own
process (uvicorn, real HTTP), with the run's upload credential, then read back.

Prints, per size, the seconds the upload took (streamed to disk, hashed, compressed and
checked to be one JSON object) and the server's peak memory during it: the growth of its
peak RSS (VmHWM, reset before each upload through /proc/<pid>/clear_refs) over its RSS
before. The goal is streaming: the peak does not grow with the file (50 MB within 1.5 x
the 10 MB figure plus 16 MB). Writes bench/results/artifacts.json; exits 1 when missed.

    python bench/artifacts.py [--sizes 10,50]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.ids import utcnow
from app.store import Store
from tests.factories import run_record

RESULTS = Path(__file__).parent / "results" / "artifacts.json"
MB = 1024 * 1024


def manifest_bytes(size: int) -> bytes:
    """JSON shaped like a big project's manifest.json: many nodes, SQL text, graph edges."""
    parts = [b'{"metadata": {"invocation_id": "bench", "dbt_version": "1.11.0"}, "nodes": {']
    total, i = len(parts[0]), 0
    while total < size:
        node = json.dumps(
            {
                "unique_id": f"model.analytics.m{i}",
                # dbt model SQL as text in the document, never run.
                "raw_code": f"select * from {{{{ ref('m{max(0, i - 1)}') }}}} where id > {i}\n"  # noqa: S608
                * 12,
                "depends_on": {"nodes": [f"model.analytics.m{j}" for j in range(max(0, i - 3), i)]},
                "config": {"materialized": "table", "tags": ["nightly"], "meta": {}},
                "columns": {"id": {"name": "id", "description": "the id"}},
                "checksum": {
                    "name": "sha256",
                    "checksum": hashlib.sha256(str(i).encode()).hexdigest(),
                },
            }
        ).encode()
        piece = (b"," if i else b"") + f'"model.analytics.m{i}": '.encode() + node
        parts.append(piece)
        total += len(piece)
        i += 1
    parts.append(b"}}")
    return b"".join(parts)


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} for {pid}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def measure(sizes_mb: list[int]) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="runyard-bench-artifacts-"))
    database = folder / "runyard.db"
    store = Store(database)
    store.migrate()
    org = store.orgs.get_or_create("bench")
    port = _free_port()
    env = {
        **os.environ,
        "RUNYARD_DATABASE": str(database),
        "RUNYARD_EXECUTOR": "local",
        "RUNYARD_ARTIFACT_MAX_FILE_BYTES": str(200 * MB),
        "RUNYARD_ARTIFACT_MAX_RUN_BYTES": str(500 * MB),
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, uvicorn; sys.path.insert(0, '.');"
            "from app.main import create_app;"
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')",
        ],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        # Warm-up: the first upload loads code paths (and the tokenizer) once.
        sizes = [1, *sizes_mb]
        for size_mb in sizes:
            body = manifest_bytes(size_mb * MB)
            record = run_record(org_id=org.id, status="running", executor="kubernetes")
            store.runs.insert(record)
            token = store.artifacts.upload_token(org.id, record.id, utcnow() + timedelta(hours=1))
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # reset the peak RSS
            before = _status(server.pid, "VmRSS")
            started = time.perf_counter()
            response = httpx.post(
                f"{url}/api/v1/runs/{record.id}/artifacts/manifest.json",
                content=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,
            )
            seconds = time.perf_counter() - started
            peak = _status(server.pid, "VmHWM")
            assert response.status_code == 201, response.text
            assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
            assert store.artifacts.read(record.id, "manifest.json") == body
            if size_mb == 1:
                continue
            stored = sum(p.stat().st_size for p in store.artifacts.root.rglob("*.gz"))
            figures[f"{size_mb}MB"] = {
                "bytes": len(body),
                "upload_seconds": round(seconds, 2),
                "mb_per_second": round(len(body) / MB / seconds, 1),
                "server_peak_rss_growth_mb": round((peak - before) / MB, 1),
                "server_rss_before_mb": round(before / MB, 1),
                "stored_compressed_mb_total": round(stored / MB, 1),
            }
            print(f"{size_mb} MB: {figures[f'{size_mb}MB']}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        store.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,50", help="manifest sizes in MB, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    figures = measure(sizes)
    small, large = figures[f"{min(sizes)}MB"], figures[f"{max(sizes)}MB"]
    limit = small["server_peak_rss_growth_mb"] * 1.5 + 16
    met = large["server_peak_rss_growth_mb"] <= limit
    result = {
        "sizes": figures,
        "goal": "server peak RSS growth flat in the file size: "
        f"{max(sizes)} MB <= 1.5 x {min(sizes)} MB + 16 MB",
        "goal_limit_mb": round(limit, 1),
        "goal_met": met,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
