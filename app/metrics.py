"""Prometheus metrics (prometheus_client). Labels stay bounded: the org's slug, project and
job names and statuses, never run or job ids, never secrets. Run metrics carry the org, so
two orgs' projects of the same name stay apart and a scrape can be split by tenant. HTTP
request metrics come from Litestar's Prometheus middleware (route templates, not raw paths).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.models import RunRecord

RUNS_STARTED = Counter(
    "runyard_runs_started_total",
    "Runs that started running",
    ["org", "project", "job", "triggered_by"],
)
RUNS_FINISHED = Counter(
    "runyard_runs_finished_total",
    "Runs that reached a terminal status",
    ["org", "project", "job", "status"],
)
RUN_DURATION = Histogram(
    "runyard_run_duration_seconds",
    "Duration of finished runs",
    ["org", "project", "status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)

log = logging.getLogger("runyard.metrics")

# Gauges read at scrape time from whatever sources are bound (the database, the outbox, the
# Kubernetes tracker): name -> (help, callable returning (labels, value) pairs).
GaugeSource = Callable[[], Iterable[tuple[dict[str, str], float]]]


class _BoundGauges(Collector):
    def __init__(self) -> None:
        self._sources: dict[str, tuple[str, GaugeSource]] = {}
        self._lock = threading.Lock()

    def bind(self, name: str, help_text: str, source: GaugeSource) -> None:
        with self._lock:
            self._sources[name] = (help_text, source)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            sources = dict(self._sources)
        for name, (help_text, source) in sorted(sources.items()):
            try:
                samples = list(source())
            except Exception:  # a source that fails must not break the whole scrape
                log.warning("metric source %s failed", name, exc_info=True)
                continue
            labels = sorted({k for sample_labels, _ in samples for k in sample_labels})
            family = GaugeMetricFamily(name, help_text, labels=labels)
            for sample_labels, value in samples:
                family.add_metric([sample_labels.get(k, "") for k in labels], value)
            yield family


GAUGES = _BoundGauges()
REGISTRY.register(GAUGES)


class _OrgNames:
    """Org id -> slug for labels. Slugs never change, so each is looked up once; until a
    lookup is bound (or when it finds nothing) the label is the org id, still one value
    per org."""

    def __init__(self) -> None:
        self._lookup: Callable[[str], str | None] | None = None
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def bind(self, lookup: Callable[[str], str | None]) -> None:
        with self._lock:
            self._lookup = lookup
            self._known.clear()

    def __call__(self, org_id: str) -> str:
        known = self._known.get(org_id)
        if known is not None:
            return known
        lookup = self._lookup
        try:
            slug = lookup(org_id) if lookup else None
        except Exception:  # a metric must never break the run it counts
            log.warning("could not look up an org's slug for metrics", exc_info=True)
            slug = None
        if slug is None:
            return org_id
        with self._lock:
            if len(self._known) > 10_000:  # orgs are few; bound memory anyway
                self._known.clear()
            self._known[org_id] = slug
        return slug


ORG_NAMES = _OrgNames()


def run_started(record: RunRecord) -> None:
    RUNS_STARTED.labels(
        ORG_NAMES(record.org_id),
        record.snapshot.project_name,
        record.snapshot.job.name,
        record.triggered_by,
    ).inc()


def run_finished(record: RunRecord) -> None:
    org = ORG_NAMES(record.org_id)
    project, job = record.snapshot.project_name, record.snapshot.job.name
    RUNS_FINISHED.labels(org, project, job, record.status).inc()
    if record.duration_seconds is not None:
        RUN_DURATION.labels(org, project, record.status).observe(record.duration_seconds)
