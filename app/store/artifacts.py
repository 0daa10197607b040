"""Run artifacts (dbt's ``run_results.json``, ``manifest.json``, ...): compressed,
content-addressed files under the data directory, their metadata in SQLite.

Interface (``store.artifacts``, an ``ArtifactRepo``; every call blocks):

- ``put(run_id, name, source, *, limit_bytes) -> ArtifactInfo``: streams ``source`` (a
  binary file object or bytes) in chunks, hashing and gzip-compressing as it goes, into
  ``<database>.artifacts/<sha[:2]>/<sha>.gz`` (files 0600, folders 0700), then records the
  row ``(run_id, name)``; a second put of the same name replaces the row. More than
  ``limit_bytes`` of uncompressed content raises ``ArtifactTooLarge`` and keeps nothing.
  ``check`` (optional) reads the content just written (a decompressed stream) before
  the row is recorded; raising from it aborts the put (uploads are checked to be JSON).
- ``list(run_id) -> list[ArtifactInfo]`` (name, size, sha256, created_at), by name.
- ``open(run_id, name) -> BinaryIO | None``: the decompressed content as a stream (close
  it); ``read(run_id, name) -> bytes | None`` the whole content.
- ``latest_successful(job_id, name) -> (run_id, bytes) | None``: the content from the
  newest successful run of the job that has that artifact; ``latest_successful_run`` gives
  only the run id.
- ``total_size(run_id)``: uncompressed bytes a run already holds (the per-run limit).
- ``upload_token(org_id, run_id, expires_at)`` mints the credential a pod uploads with
  (HMAC-SHA256 over org, run and expiry, keyed by ``box.derive(b"artifact uploads")``);
  ``token_matches(token, org_id, run_id, now)`` checks it (signature and expiry only: the
  service also closes uploads once the run has ended). ``job_token`` and
  ``job_token_matches``: a scheduled job's credential (its CronJob's pods), with
  ``run_of_k8s_job`` finding the run an upload from such a pod is for.
- ``delete(run_id, name)`` and ``delete_runs(run_ids)`` remove rows; rows also go with
  their run (ON DELETE CASCADE).
  ``sweep()`` deletes the files no row references any more (retention calls it after it
  has pruned runs); a file younger than ``SWEEP_GRACE_SECONDS`` is kept, since a put
  writes its file before its row.

Names are not checked here (the services hold the allowlist): the name is only a key in
SQLite, never part of a path, so no name can reach the file system.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import hmac
import logging
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import msgspec
from json_stream_rs_tokenizer import RustTokenizer

from app.ids import from_text, to_text, utcnow
from app.store.db import Database

log = logging.getLogger("runyard.store.artifacts")

CHUNK_BYTES = 1 << 20
# What dbt writes to its target folder that users need after the run: results per node
# (run_results.json), the project graph (manifest.json, for deferral and docs), source
# freshness (sources.json), docs (catalog.json) and the semantic layer's graph. The
# Kubernetes launcher (app/executors/k8s/launcher.py) keeps its own copy of this list.
ARTIFACT_NAMES: tuple[str, ...] = (
    "run_results.json",
    "manifest.json",
    "sources.json",
    "catalog.json",
    "semantic_manifest.json",
)
# The pod's environment variable with its upload credential (redacted wherever shown).
UPLOAD_TOKEN_ENV = "RUNYARD_ARTIFACT_TOKEN"  # noqa: S105 - a variable name
JOB_TOKEN_PREFIX = "ryj1."  # noqa: S105 - a scheduled job's pods, format 1
TOKEN_PREFIX = "rya1."  # noqa: S105 - a format marker, not a secret
SWEEP_GRACE_SECONDS = 3600.0
_HEX = frozenset("0123456789abcdef")

Check = Callable[[BinaryIO], None]


class ArtifactInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    size: int  # uncompressed bytes
    sha256: str  # of the uncompressed content
    created_at: datetime


class ArtifactTooLarge(ValueError):
    """The content exceeds the limit given to put; nothing was kept."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


def artifacts_folder(database_path: str) -> Path:
    """``<database>.artifacts`` beside the database; an in-memory database gets a private
    temporary folder (its artifacts live as long as the process, like the database)."""
    if database_path == ":memory:" or database_path.startswith("file:"):
        return Path(tempfile.mkdtemp(prefix="runyard-artifacts-"))
    path = Path(database_path).expanduser()
    return path.with_name(path.name + ".artifacts")


def _private_dir(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)  # mkdir's mode goes through the umask


def _chunks(source: BinaryIO | bytes) -> Iterable[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for start in range(0, len(view), CHUNK_BYTES):
            yield bytes(view[start : start + CHUNK_BYTES])
        return
    while True:
        chunk = source.read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk


class NotJson(ValueError):
    """The content is not one JSON object; nothing was kept."""


_OPERATOR, _STRING = 0, 1
_VALUE, _VALUE_OR_CLOSE, _KEY_OR_CLOSE, _KEY, _COLON, _NEXT, _END = range(7)


def check_json_object(stream: BinaryIO) -> None:
    """Raise NotJson unless ``stream`` holds exactly one JSON object. The tokenizer reads the
    stream in pieces, so memory does not grow with the size; this walks the grammar over its
    tokens (the tokenizer alone would accept ``[1 2]`` or two documents in a row)."""
    stack: list[str] = []
    state = _VALUE
    count = 0
    try:
        tokens = cast("Iterable[tuple[int, Any]]", RustTokenizer(stream))
        for kind, value in tokens:
            count += 1
            if state == _END:
                raise ValueError("more after the end of the document")
            if kind == _OPERATOR:
                if value in "{[":
                    if state not in (_VALUE, _VALUE_OR_CLOSE):
                        raise ValueError(f"unexpected {value!r}")
                    if not stack and value != "{":
                        raise ValueError("the document must be a JSON object")
                    stack.append(value)
                    state = _KEY_OR_CLOSE if value == "{" else _VALUE_OR_CLOSE
                    continue
                if value in "}]":
                    opener = "{" if value == "}" else "["
                    allowed = _KEY_OR_CLOSE if value == "}" else _VALUE_OR_CLOSE
                    if not stack or stack[-1] != opener or state not in (allowed, _NEXT):
                        raise ValueError(f"unexpected {value!r}")
                    stack.pop()
                    state = _NEXT if stack else _END
                    continue
                if value == ":":
                    if state != _COLON:
                        raise ValueError("unexpected ':'")
                    state = _VALUE
                    continue
                if value == ",":
                    if state != _NEXT:
                        raise ValueError("unexpected ','")
                    state = _KEY if stack[-1] == "{" else _VALUE
                    continue
                raise ValueError("unexpected character")
            if state in (_KEY_OR_CLOSE, _KEY):
                if kind != _STRING:
                    raise ValueError("an object key must be a string")
                state = _COLON
                continue
            if state not in (_VALUE, _VALUE_OR_CLOSE) or not stack:
                raise ValueError("unexpected value")
            state = _NEXT
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, NotJson):
            raise
        raise NotJson(
            f"The artifact is not valid JSON ({_short(exc)}, near token {count})."
        ) from None
    if state != _END:
        raise NotJson("The artifact is not valid JSON (it ends early, or is empty).")


def _short(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0]
    return text[:120]


class ArtifactRepo:
    def __init__(self, db: Database, root: Path | None = None) -> None:
        self._db = db
        self.root = root if root is not None else artifacts_folder(db.path)

    # --- upload credentials -----------------------------------------------------------

    def _mac(self, org_id: str, run_id: str, expires: int) -> str:
        key = self._db.box.derive(b"artifact uploads")
        message = f"{org_id}\n{run_id}\n{expires}".encode()
        digest = hmac.new(key, message, "sha256").digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def upload_token(self, org_id: str, run_id: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        return f"{TOKEN_PREFIX}{expires}.{self._mac(org_id, run_id, expires)}"

    def run_token(
        self, org_id: str, run_id: str, timeout_seconds: int, grace_seconds: int, now: datetime
    ) -> str:
        """A run's upload credential: it expires after the run's timeout plus the grace
        period plus an hour for a pod that waits for its node and image before its
        deadline starts counting (uploads also close once the run has ended)."""
        lifetime = timeout_seconds + grace_seconds + 3600
        return self.upload_token(org_id, run_id, now + timedelta(seconds=lifetime))

    def job_token(self, org_id: str, job_id: str) -> str:
        """The credential of a scheduled job's pods (its CronJob is rendered once, before
        any run exists): it uploads only to a run of this job of this org, found by its
        Kubernetes Job, and only while that run is active or within the grace period."""
        return f"{JOB_TOKEN_PREFIX}{self._mac(org_id, 'job:' + job_id, 0)}"

    def job_token_matches(self, token: str, org_id: str, job_id: str) -> bool:
        if not token.startswith(JOB_TOKEN_PREFIX) or len(token) > 200:
            return False
        expected = self.job_token(org_id, job_id)
        return hmac.compare_digest(token.encode(), expected.encode())

    def run_of_k8s_job(self, namespace: str, job_name: str) -> str | None:
        """The run recorded for a Kubernetes Job (one per Job, runs_one_per_k8s_job)."""
        found = self._db.scalar(
            "SELECT id FROM runs WHERE namespace = ? AND job_name = ?", (namespace, job_name)
        )
        return None if found is None else str(found)

    def token_matches(self, token: str, org_id: str, run_id: str, now: datetime) -> bool:
        """Whether ``token`` was minted for this org's run and has not expired."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return False
        expires_text, _, mac = token[len(TOKEN_PREFIX) :].partition(".")
        if not expires_text.isdigit() or len(expires_text) > 12:
            return False
        expires = int(expires_text)
        expected = self._mac(org_id, run_id, expires)
        return hmac.compare_digest(mac.encode(), expected.encode()) and now.timestamp() < expires

    # --- files --------------------------------------------------------------------------

    def _file(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError("not a sha256 digest")  # rows are ours, but never trust a path
        return self.root / sha256[:2] / f"{sha256}.gz"

    def _write_blob(
        self, source: BinaryIO | bytes, limit_bytes: int, check: Check | None
    ) -> tuple[str, int]:
        _private_dir(self.root)
        scratch = self.root / "incoming"
        _private_dir(scratch)
        fd, tmp_name = tempfile.mkstemp(dir=scratch, suffix=".gz")  # 0600
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with (
                os.fdopen(fd, "wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as packed,
            ):
                for chunk in _chunks(source):
                    size += len(chunk)
                    if size > limit_bytes:
                        raise ArtifactTooLarge(limit_bytes)
                    digest.update(chunk)
                    packed.write(chunk)
            if check is not None:
                with gzip.open(tmp, "rb") as written:
                    check(written)  # type: ignore[arg-type]
            sha = digest.hexdigest()
            final = self._file(sha)
            _private_dir(final.parent)
            if final.exists():
                # Same content already kept: refresh its mtime so a concurrent sweep,
                # which spares young files, cannot take it before our row exists.
                os.utime(final)
                tmp.unlink()
            else:
                tmp.replace(final)
            return sha, size
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    # --- writes -------------------------------------------------------------------------

    def put(
        self,
        run_id: str,
        name: str,
        source: BinaryIO | bytes,
        *,
        limit_bytes: int,
        check: Check | None = None,
    ) -> ArtifactInfo:
        sha, size = self._write_blob(source, limit_bytes, check)
        created = utcnow()
        with self._db.write() as db:
            db.conn.execute(
                "INSERT INTO run_artifacts (run_id, name, sha256, size, created_at)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, name) DO UPDATE SET sha256 = excluded.sha256,"
                " size = excluded.size, created_at = excluded.created_at",
                (run_id, name, sha, size, to_text(created)),
            )
        return ArtifactInfo(name=name, size=size, sha256=sha, created_at=created)

    def delete(self, run_id: str, name: str) -> None:
        with self._db.write() as db:
            db.conn.execute(
                "DELETE FROM run_artifacts WHERE run_id = ? AND name = ?", (run_id, name)
            )

    def delete_runs(self, run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        if not ids:
            return
        marks = ",".join("?" * len(ids))
        with self._db.write() as db:
            db.conn.execute(f"DELETE FROM run_artifacts WHERE run_id IN ({marks})", ids)

    def sweep(self, now: float | None = None) -> int:
        """Delete the files no row references; returns how many went."""
        if not self.root.is_dir():
            return 0
        moment = time.time() if now is None else now
        referenced = {
            r["sha256"] for r in self._db.rows("SELECT DISTINCT sha256 FROM run_artifacts")
        }
        removed = 0
        for folder in self.root.iterdir():
            if folder.is_symlink() or not folder.is_dir():
                continue
            for file in folder.iterdir():
                sha = file.name.removesuffix(".gz")
                if sha in referenced:
                    continue
                with contextlib.suppress(OSError):
                    if moment - file.lstat().st_mtime < SWEEP_GRACE_SECONDS:
                        continue
                    file.unlink()
                    removed += 1
        return removed

    # --- reads --------------------------------------------------------------------------

    def list(self, run_id: str) -> list[ArtifactInfo]:
        return [
            ArtifactInfo(
                name=r["name"],
                size=r["size"],
                sha256=r["sha256"],
                created_at=from_text(r["created_at"]),
            )
            for r in self._db.rows(
                "SELECT name, size, sha256, created_at FROM run_artifacts"
                " WHERE run_id = ? ORDER BY name",
                (run_id,),
            )
        ]

    def info(self, run_id: str, name: str) -> ArtifactInfo | None:
        r = self._db.row(
            "SELECT name, size, sha256, created_at FROM run_artifacts"
            " WHERE run_id = ? AND name = ?",
            (run_id, name),
        )
        if r is None:
            return None
        return ArtifactInfo(
            name=r["name"],
            size=r["size"],
            sha256=r["sha256"],
            created_at=from_text(r["created_at"]),
        )

    def total_size(self, run_id: str) -> int:
        return int(
            self._db.scalar(
                "SELECT COALESCE(SUM(size), 0) FROM run_artifacts WHERE run_id = ?", (run_id,)
            )
        )

    def open(self, run_id: str, name: str) -> BinaryIO | None:
        found = self.info(run_id, name)
        if found is None:
            return None
        try:
            return gzip.open(self._file(found.sha256), "rb")  # type: ignore[return-value]
        except FileNotFoundError:
            log.warning("an artifact's file is missing", extra={"run_id": run_id, "artifact": name})
            return None

    def read(self, run_id: str, name: str) -> bytes | None:
        stream = self.open(run_id, name)
        if stream is None:
            return None
        with stream:
            try:
                return stream.read()
            except (OSError, EOFError, zlib.error):
                log.warning("an artifact's file is corrupt", extra={"run_id": run_id})
                return None

    def latest_successful_run(self, job_id: str, name: str) -> str | None:
        found = self._db.scalar(
            "SELECT r.id FROM runs r JOIN run_artifacts a ON a.run_id = r.id"
            " WHERE r.job_id = ? AND r.status = 'success' AND a.name = ?"
            " ORDER BY r.seq DESC LIMIT 1",
            (job_id, name),
        )
        return None if found is None else str(found)

    def latest_successful(self, job_id: str, name: str) -> tuple[str, bytes] | None:
        run_id = self.latest_successful_run(job_id, name)
        if run_id is None:
            return None
        content = self.read(run_id, name)
        return None if content is None else (run_id, content)


__all__ = [
    "ARTIFACT_NAMES",
    "UPLOAD_TOKEN_ENV",
    "ArtifactInfo",
    "ArtifactRepo",
    "ArtifactTooLarge",
    "NotJson",
    "artifacts_folder",
    "check_json_object",
]
