"""Test harnesses shared by runyard's tests and benchmarks.

``tests.harness.k8s.FakeCluster``: a fake Kubernetes API server over real HTTP (kmock-based),
playing the Job, CronJob and TTL controllers and the kubelet. Benchmarks run as plain scripts
need the repository root on ``sys.path`` (``PYTHONPATH=. python bench/x.py``).
"""

from tests.harness.k8s import (
    CronJobSkipped,
    FakeCluster,
    HarnessError,
    JobBehaviour,
    JobOutcome,
    RequestRecord,
    job_finished,
)

__all__ = [
    "CronJobSkipped",
    "FakeCluster",
    "HarnessError",
    "JobBehaviour",
    "JobOutcome",
    "RequestRecord",
    "job_finished",
]
