"""Kubernetes object names for CronJobs and one-off Jobs, shared by both executors so a
run's ``job_name`` looks the same wherever it ran."""

from __future__ import annotations

import hashlib
from datetime import datetime

CRONJOB_MAX = 52  # the CronJob controller appends an 11-character suffix to Job names
JOB_MAX = 63


def _fit(base: str, limit: int) -> str:
    """Cut ``base`` to ``limit`` characters, replacing the cut part with a short hash so
    two long names that share a prefix stay distinct."""
    if len(base) <= limit:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return base[: limit - 7].rstrip("-") + "-" + digest


def cronjob_name(project_name: str, job_name: str) -> str:
    return _fit(f"{project_name}-{job_name}", CRONJOB_MAX)


def run_job_name(project_name: str, job_name: str, when: datetime, suffix: str = "") -> str:
    """``<project>-<job>-<yyyymmdd-hhmmss>[-suffix]``, at most 63 characters."""
    stamp = when.strftime("%Y%m%d-%H%M%S") + (f"-{suffix}" if suffix else "")
    return _fit(f"{project_name}-{job_name}", JOB_MAX - len(stamp) - 1) + "-" + stamp
