"""Test harnesses shared by runyard's tests and benchmarks.

``tests.harness.k8s.FakeCluster``: a fake Kubernetes API server over real HTTP (aiohttp),
playing the Job, CronJob and TTL controllers and the kubelet. Benchmarks run as plain scripts
need the repository root on ``sys.path`` (``PYTHONPATH=. python bench/x.py``).

Modules: ``k8s`` (the facade), ``k8s_api`` (HTTP routes, watches, logs), ``k8s_store`` (objects
and the API server's write semantics), ``k8s_state`` (the controllers), ``k8s_objects`` (resource
types, errors, validation, defaults), ``k8s_selectors`` (label selectors), ``k8s_server`` (the
same cluster in a child process).
"""

from tests.harness.k8s import (
    CronJobSkipped,
    FakeCluster,
    HarnessError,
    JobBehaviour,
    RequestRecord,
    job_finished,
)

__all__ = [
    "CronJobSkipped",
    "FakeCluster",
    "HarnessError",
    "JobBehaviour",
    "RequestRecord",
    "job_finished",
]
