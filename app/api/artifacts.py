"""Run artifacts over HTTP: the list and content of a run's artifacts, the latest successful
copy of a job's, the upload a run's pod makes with its own credential, and the download of
the run's dbt state (retry, deferral) by its pod with the same credential.

Neither the upload nor the state download is authenticated by an API token: the handler's
opt ``own_credential`` takes it out of the token middleware and the role guard
(app/api/auth.py), and the service checks the run's upload credential instead. An upload's
body is streamed from the socket to a scratch file on a worker thread, so memory does not
grow with the artifact.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any, BinaryIO

import anyio.from_thread
import msgspec
from anyio import to_thread
from litestar import Controller, Request, get, post
from litestar.response import Stream

from app.api.auth import OWN_CREDENTIAL
from app.ids import utcnow
from app.models import Principal
from app.services.artifacts import ArtifactService, Limits
from app.settings import Settings
from app.store import Store
from app.store.artifacts import ArtifactInfo

JSON = "application/json"
READ_CHUNK = 1 << 16


class ArtifactOut(msgspec.Struct, kw_only=True):
    name: str
    size: int
    sha256: str
    created_at: str


class ArtifactList(msgspec.Struct, kw_only=True):
    run_id: str
    artifacts: list[ArtifactOut]
    # Set when a finished dbt run kept none: why (docs/artifacts.md).
    note: str | None = None


def _out(info: ArtifactInfo) -> ArtifactOut:
    return ArtifactOut(
        name=info.name,
        size=info.size,
        sha256=info.sha256,
        created_at=info.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


@functools.lru_cache(maxsize=8)
def _service_for(store: Store, settings: Settings) -> ArtifactService:
    limits = Limits(
        file_bytes=settings.artifact_max_file_bytes,
        run_bytes=settings.artifact_max_run_bytes,
        grace=timedelta(seconds=settings.artifact_upload_grace_seconds),
    )
    return ArtifactService(store, limits, utcnow)


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    """The decompressed content in pieces (Litestar iterates it on a worker thread)."""
    with stream:
        while chunk := stream.read(READ_CHUNK):
            yield chunk


def _download(info: ArtifactInfo, stream: BinaryIO, run_id: str) -> Stream:
    return Stream(
        _chunks(stream),
        media_type=JSON,
        headers={
            "Content-Length": str(info.size),
            "ETag": f'"{info.sha256}"',
            "X-Runyard-Run-Id": run_id,
            "Content-Disposition": f'attachment; filename="{info.name}"',
        },
    )


class _BodyReader:
    """A blocking ``read()`` over the request body, for a worker thread: each call waits on
    the event loop for the next piece the client sent (back-pressure included)."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._done = False

    async def _next(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            piece = anyio.from_thread.run(self._next)
            if not piece:
                self._done = True
                break
            self._buffer += piece
            if size >= 0:
                break  # a short read is fine: the store reads until b""
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _declared_length(request: Request[Any, Any, Any]) -> int | None:
    text = request.headers.get("content-length")
    return int(text) if text and text.isdigit() else None


def _bearer(request: Request[Any, Any, Any]) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class ArtifactController(Controller):
    tags = ["artifacts"]

    @get(
        "/api/v1/runs/{run_id:str}/artifacts",
        sync_to_thread=True,
        summary="The artifacts a run kept (name, size, sha256)",
    )
    def list_artifacts(
        self, principal: Principal, store: Store, settings: Settings, run_id: str
    ) -> ArtifactList:
        launcher = bool(settings.launcher_image and settings.internal_url)
        found, note = _service_for(store, settings).listing(principal, run_id, launcher)
        return ArtifactList(run_id=run_id, artifacts=[_out(info) for info in found], note=note)

    @get(
        "/api/v1/runs/{run_id:str}/artifacts/{name:str}",
        sync_to_thread=True,
        media_type=JSON,
        summary="One artifact of a run, as dbt wrote it",
    )
    def download(
        self, principal: Principal, store: Store, settings: Settings, run_id: str, name: str
    ) -> Stream:
        info, stream = _service_for(store, settings).open(principal, run_id, name)
        return _download(info, stream, run_id)

    @get(
        "/api/v1/projects/{project_id:str}/jobs/{job_id:str}/artifacts/{name:str}",
        sync_to_thread=True,
        media_type=JSON,
        summary="The artifact from the job's latest successful run that kept it",
    )
    def latest(
        self,
        principal: Principal,
        store: Store,
        settings: Settings,
        project_id: str,
        job_id: str,
        name: str,
    ) -> Stream:
        run_id, info, stream = _service_for(store, settings).open_latest(
            principal, project_id, job_id, name
        )
        return _download(info, stream, run_id)

    @post(
        "/api/v1/runs/{run_id:str}/artifacts/{name:str}",
        status_code=201,
        # The body is streamed to disk and limited by the artifact settings instead.
        request_max_body_size=None,
        opt={OWN_CREDENTIAL: True},
        security=[{"artifactUpload": []}],
        summary="Upload an artifact from the run's pod (the launcher), with the run's "
        "upload credential",
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        store: Store,
        settings: Settings,
        run_id: str,
        name: str,
    ) -> ArtifactOut:
        service = _service_for(store, settings)
        reader = _BodyReader(request.stream().__aiter__())
        info = await to_thread.run_sync(
            lambda: service.upload(
                run_id,
                name,
                _bearer(request),
                reader,  # type: ignore[arg-type]
                _declared_length(request),
            )
        )
        return _out(info)

    @get(
        "/api/v1/runs/{run_id:str}/state/{name:str}",
        sync_to_thread=True,
        media_type=JSON,
        opt={OWN_CREDENTIAL: True},
        security=[{"artifactUpload": []}],
        summary="A file of the run's dbt state (retry, deferral), for the run's pod (the "
        "launcher), with the run's upload credential",
    )
    def state_file(
        self,
        request: Request[Any, Any, Any],
        store: Store,
        settings: Settings,
        run_id: str,
        name: str,
    ) -> Stream:
        size, stream = _service_for(store, settings).state_file(run_id, name, _bearer(request))
        headers = {"Cache-Control": "no-store"}
        if size is not None:
            headers["Content-Length"] = str(size)
        return Stream(_chunks(stream), media_type=JSON, headers=headers)
