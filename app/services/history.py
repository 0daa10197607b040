"""Model history, a run's timeline and source freshness, read from dbt's artifacts.

A run's node results are stored (``store.history``) when it finishes: from the
``run_results.json`` runyard kept for it when there is one (every node, with its timing,
rows affected and adapter response), else from what its log said (``Run.results``). An
artifact that arrives after the run's end (a Kubernetes pod's upload) replaces the log's
rows through ``artifact_stored``.

Everything read from an artifact is hostile input (a run's process wrote it): each value is
type-checked, strings are cut, and a file that is not what dbt writes yields nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from app.engines.results import FAILED_STATUSES, trim_message
from app.models import NodeSummary, Run, RunRecord
from app.store import Store
from app.store.history import FAILED, NOT_RUN, NodeRow, Window

log = logging.getLogger("runyard.history")

RUN_RESULTS = "run_results.json"
SOURCES = "sources.json"
MAX_NODES = 200_000  # a run_results.json listing more is not one of dbt's
_ADAPTER_RESPONSE_LIMIT = 4000
_NAME_LIMIT = 500
# Node types the models endpoint accepts (dbt's resource types and SQLMesh's audit).
RESOURCE_TYPES = frozenset(
    {"model", "seed", "snapshot", "test", "unit_test", "source", "function", "audit"}
)


# --- parsing dbt's artifacts --------------------------------------------------------------


def _text(value: Any, limit: int = _NAME_LIMIT) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _document(raw: bytes) -> dict[str, Any] | None:
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return document if isinstance(document, dict) else None


def _split_id(unique_id: str) -> tuple[str, str]:
    """(resource_type, name) of dbt's ``model.pkg.name``, ``test.pkg.name.hash``, ...; of
    SQLMesh's ``"catalog"."schema"."model"`` (model, ``schema.model``) and
    ``audit:<audit> on <model>`` (audit, the model)."""
    if unique_id.startswith("audit:") and " on " in unique_id:
        return "audit", unique_id.rsplit(" on ", 1)[1]
    if unique_id.startswith('"'):
        names = [part.strip('"') for part in unique_id.split('"."')]
        return "model", ".".join(names[1:] if len(names) > 2 else names)
    parts = unique_id.split(".")
    if len(parts) >= 3:
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "node", unique_id


def _status(value: Any) -> str:
    status = (_text(value, 40) or "").strip().lower()
    return "success" if status == "ok" else status


def _results(raw: bytes) -> list[tuple[dict[str, Any], str]] | None:
    """The ``results`` entries of a dbt artifact that name a node, with its unique id; None
    when the document is not one (or names more nodes than runyard keeps)."""
    document = _document(raw)
    entries = document.get("results") if document else None
    if not isinstance(entries, list) or len(entries) > MAX_NODES:
        return None
    found = []
    for entry in entries:
        unique_id = _text(entry.get("unique_id")) if isinstance(entry, dict) else None
        if unique_id:
            found.append((entry, unique_id))
    return found


def parse_run_results(raw: bytes) -> list[NodeRow] | None:
    """The nodes of a dbt ``run_results.json``; None when it is not one."""
    entries = _results(raw)
    if entries is None:
        return None
    rows: list[NodeRow] = []
    for entry, unique_id in entries:
        resource_type, name = _split_id(unique_id)
        timing = entry.get("timing")
        starts: list[datetime] = []
        ends: list[datetime] = []
        for phase in timing if isinstance(timing, list) else []:
            if isinstance(phase, dict):
                start, end = _moment(phase.get("started_at")), _moment(phase.get("completed_at"))
                if start is not None and end is not None and end >= start:
                    starts.append(start)
                    ends.append(end)
        response = entry.get("adapter_response")
        response = response if isinstance(response, dict) else {}
        encoded = msgspec.json.encode(response).decode() if response else None
        rows_affected = response.get("rows_affected")
        status = _status(entry.get("status"))
        rows.append(
            NodeRow(
                unique_id=unique_id,
                name=name,
                resource_type=resource_type,
                status=status or "unknown",
                started_at=_stamp(min(starts)) if starts else None,
                completed_at=_stamp(max(ends)) if ends else None,
                execution_time=_number(entry.get("execution_time")),
                rows_affected=rows_affected
                if isinstance(rows_affected, int) and not isinstance(rows_affected, bool)
                else None,
                adapter_response=encoded
                if encoded and len(encoded) <= _ADAPTER_RESPONSE_LIMIT
                else None,
                message=None
                if status in ("success", "pass", "no-op")
                else trim_message(_text(entry.get("message"), 100_000)),
                thread_id=_text(entry.get("thread_id"), 100),
            )
        )
    return rows


# What ``dbt retry`` runs again (dbt/task/retry.py RETRYABLE_STATUSES).
RETRYABLE_STATUSES = frozenset({"error", "fail", "skipped", "runtime error", "partial success"})


def retried_command(raw: bytes) -> str | None:
    """The dbt command a run_results.json records (``args.which``: build, run, ...)."""
    document = _document(raw)
    args = document.get("args") if document else None
    return _text(args.get("which"), 40) if isinstance(args, dict) else None


def retryable_nodes(raw: bytes) -> list[str] | None:
    """The unique ids ``dbt retry`` would run from this run_results.json (None: not one)."""
    rows = parse_run_results(raw)
    if rows is None:
        return None
    return [
        r.unique_id
        for r in rows
        if r.status in RETRYABLE_STATUSES and not r.unique_id.startswith("operation.")
    ]


def rows_of(results: Iterable[NodeSummary]) -> list[NodeRow]:
    """The log's results (status, duration, message) as history rows."""
    return [
        NodeRow(
            unique_id=r.unique_id,
            name=r.name,
            resource_type=r.resource_type,
            status=r.status,
            execution_time=r.execution_time,
            message=r.message,
        )
        for r in results
    ]


class SourceFreshness(msgspec.Struct, kw_only=True):
    unique_id: str
    source_name: str
    table_name: str
    status: str  # pass, warn, error, runtime error
    max_loaded_at: datetime | None
    snapshotted_at: datetime | None
    # How old the newest row was when dbt checked, and how old it is now.
    age_seconds: float | None
    age_now_seconds: float | None
    warn_after: dict[str, Any] | None = None
    error_after: dict[str, Any] | None = None
    error: str | None = None


def _criteria(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    count, period = value.get("count"), _text(value.get("period"), 20)
    if _number(count) is None or period is None:
        return None
    return {"count": count, "period": period}


def parse_sources(raw: bytes, now: datetime) -> list[SourceFreshness] | None:
    """The sources of a dbt ``sources.json`` (``dbt source freshness``); None when it is
    not one."""
    entries = _results(raw)
    if entries is None:
        return None
    found: list[SourceFreshness] = []
    for entry, unique_id in entries:
        parts = unique_id.split(".")
        source_name, table_name = (parts[2], ".".join(parts[3:])) if len(parts) >= 4 else ("", "")
        loaded = _moment(entry.get("max_loaded_at"))
        criteria = entry.get("criteria")
        criteria = criteria if isinstance(criteria, dict) else {}
        status = _status(entry.get("status")) or "unknown"
        found.append(
            SourceFreshness(
                unique_id=unique_id,
                source_name=source_name,
                table_name=table_name,
                status=status,
                max_loaded_at=loaded,
                snapshotted_at=_moment(entry.get("snapshotted_at")),
                age_seconds=_number(entry.get("max_loaded_at_time_ago_in_s")),
                age_now_seconds=max(0.0, (now - loaded).total_seconds()) if loaded else None,
                warn_after=_criteria(criteria.get("warn_after")),
                error_after=_criteria(criteria.get("error_after")),
                error=trim_message(_text(entry.get("error"), 100_000))
                if status in FAILED_STATUSES
                else None,
            )
        )
    return found


# --- answers ------------------------------------------------------------------------------


class ModelStats(msgspec.Struct, kw_only=True):
    unique_id: str
    name: str
    resource_type: str
    runs: int
    failures: int
    last_status: str
    last_run_at: datetime
    # Over the runs in which the node ran (not skipped), in seconds.
    p50_duration_seconds: float | None
    p95_duration_seconds: float | None
    # p50 of the window's last third against its first third: +0.25 is 25 % slower.
    p50_first_third_seconds: float | None
    p50_last_third_seconds: float | None
    trend: float | None


class ModelsReport(msgspec.Struct, kw_only=True):
    job_id: str
    window: str
    since: datetime
    resource_types: list[str]
    models: list[ModelStats]
    total: int


class TimelineNode(msgspec.Struct, kw_only=True):
    unique_id: str
    name: str
    resource_type: str
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    # Seconds from the timeline's origin to the node's start (None: it did not run or its
    # timing is unknown) and how long it took.
    offset_seconds: float | None
    duration_seconds: float | None
    thread_id: str | None
    rows_affected: int | None
    adapter_response: dict[str, Any] | None
    message: str | None


class Timeline(msgspec.Struct, kw_only=True):
    run_id: str
    source: str | None  # "artifacts" (run_results.json), "log", or None: nothing reported
    origin: datetime | None  # the run's start, else its first node's
    duration_seconds: float | None
    nodes: list[TimelineNode]
    failed: list[str]  # unique ids of the failed nodes


class FreshnessReport(msgspec.Struct, kw_only=True):
    job_id: str
    run_id: str | None  # the latest run that kept a sources.json
    checked_at: datetime | None
    sources: list[SourceFreshness]


def _percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _median(values: list[float]) -> float | None:
    values.sort()
    return _percentile(values, 0.5)


def model_stats(
    window: Window,
    statuses: Callable[[dict[int, int]], dict[int, str]],
    since: datetime,
    now: datetime,
) -> list[ModelStats]:
    """Per node: runs, failures, last status, p50/p95 duration and trend over the window.
    ``statuses`` gives the status text of nodes at their newest run (node -> run_at)."""
    third = (now - since).total_seconds() / 3
    first_end = since.timestamp() + third
    last_start = now.timestamp() - third
    # node -> [runs, failures, newest run_at, durations, first third's, last third's]
    grouped: dict[int, list[Any]] = {}
    for node, run_at, outcome, seconds in window.rows:
        entry = grouped.get(node)
        if entry is None:
            entry = grouped[node] = [0, 0, run_at, [], [], []]
        entry[0] += 1
        if outcome == FAILED:
            entry[1] += 1
        if run_at > entry[2]:
            entry[2] = run_at
        if seconds is None or outcome == NOT_RUN:
            continue
        entry[3].append(seconds)
        if run_at < first_end:
            entry[4].append(seconds)
        elif run_at >= last_start:
            entry[5].append(seconds)
    last_status = statuses({node: entry[2] for node, entry in grouped.items()})
    stats: list[ModelStats] = []
    for node, (runs, failures, newest, durations, first, recent) in grouped.items():
        durations.sort()
        early, late = _median(first), _median(recent)
        unique_id = window.names.get(node, "")
        resource_type, name = _split_id(unique_id)
        stats.append(
            ModelStats(
                unique_id=unique_id,
                name=name,
                resource_type=resource_type,
                runs=runs,
                failures=failures,
                last_status=last_status.get(node, "unknown"),
                last_run_at=datetime.fromtimestamp(newest, UTC),
                p50_duration_seconds=_percentile(durations, 0.5),
                p95_duration_seconds=_percentile(durations, 0.95),
                p50_first_third_seconds=early,
                p50_last_third_seconds=late,
                trend=round(late / early - 1, 4) if early and late is not None else None,
            )
        )
    # Slowest first: what someone looking for a slow model reads first.
    stats.sort(key=lambda s: (-(s.p95_duration_seconds or 0.0), s.unique_id))
    return stats


def _decoded_response(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) else None


def timeline_of(run: Run, source: str | None, rows: Sequence[NodeRow]) -> Timeline:
    starts = [_moment(r.started_at) for r in rows]
    known = [s for s in starts if s is not None]
    origin = run.start_time
    if known and (origin is None or min(known) < origin):
        origin = min(known)  # clocks disagree (a pod's): never a negative offset
    nodes: list[TimelineNode] = []
    ends: list[datetime] = []
    for row, start in zip(rows, starts, strict=True):
        end = _moment(row.completed_at)
        if end is not None:
            ends.append(end)
        duration = (end - start).total_seconds() if start and end else row.execution_time
        nodes.append(
            TimelineNode(
                unique_id=row.unique_id,
                name=row.name,
                resource_type=row.resource_type,
                status=row.status,
                started_at=start,
                completed_at=end,
                offset_seconds=(start - origin).total_seconds() if start and origin else None,
                duration_seconds=duration,
                thread_id=row.thread_id,
                rows_affected=row.rows_affected,
                adapter_response=_decoded_response(row.adapter_response),
                message=row.message,
            )
        )
    span = None
    if origin is not None:
        finish = max(ends) if ends else run.end_time
        span = (finish - origin).total_seconds() if finish else None
    return Timeline(
        run_id=run.id,
        source=source,
        origin=origin,
        duration_seconds=span,
        nodes=nodes,
        failed=[r.unique_id for r in rows if r.status in FAILED_STATUSES],
    )


class ModelHistory:
    """Writes a run's node results when it finishes (or when its run_results.json arrives)
    and answers the models, timeline and freshness reads."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def run_finished(self, record: RunRecord) -> None:
        """A tracker hook after the commit: the run's nodes, from its artifacts if stored."""
        if self._from_artifacts(record):
            return
        if record.results:
            self._store.history.record(
                record.id, record.job_id, _run_at(record), rows_of(record.results), "log"
            )

    def artifact_stored(self, run_id: str, name: str) -> None:
        """Call after storing an artifact of a run: a run_results.json that arrives after
        the run's end replaces the rows its log gave."""
        if name != RUN_RESULTS:
            return
        record = self._store.runs.record(run_id)
        if record is not None and record.is_terminal:
            self._from_artifacts(record)

    def _from_artifacts(self, record: RunRecord) -> bool:
        raw = self._store.artifacts.read(record.id, RUN_RESULTS)
        if raw is None:
            return False
        rows = parse_run_results(raw)
        if rows is None:
            log.warning("a stored run_results.json is not dbt's", extra={"run_id": record.id})
            return False
        self._store.history.record(record.id, record.job_id, _run_at(record), rows, "artifacts")
        return True

    def models(
        self,
        job_id: str,
        window: timedelta,
        window_text: str,
        resource_types: Sequence[str],
        now: datetime,
    ) -> ModelsReport:
        since = now - window
        found = self._store.history.window(job_id, since, resource_types)
        stats = model_stats(
            found,
            lambda newest: self._store.history.statuses_at(job_id, resource_types, newest),
            since,
            now,
        )
        return ModelsReport(
            job_id=job_id,
            window=window_text,
            since=since,
            resource_types=list(resource_types),
            models=stats,
            total=len(stats),
        )

    def timeline(self, run: Run) -> Timeline:
        source, rows = self._store.history.for_run(run.id)
        if source is None and run.results:
            # Finished before history was kept, or still being written: the log's view.
            source, rows = "log", rows_of(run.results)
        return timeline_of(run, source, rows)

    def freshness(self, job_id: str, now: datetime) -> FreshnessReport:
        found = self._store.history.latest_with_artifact(job_id, SOURCES)
        if found is None:
            return FreshnessReport(job_id=job_id, run_id=None, checked_at=None, sources=[])
        run_id, checked_at = found
        raw = self._store.artifacts.read(run_id, SOURCES)
        sources = parse_sources(raw, now) if raw is not None else None
        return FreshnessReport(
            job_id=job_id, run_id=run_id, checked_at=checked_at, sources=sources or []
        )


def _run_at(run: Run) -> datetime:
    return run.start_time or run.created_at
