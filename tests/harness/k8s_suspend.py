"""Job suspension (``spec.suspend``) in the emulator, as the Job controller does it.

A suspended Job gets no pod and does not run: ``start_job``/``finish_job`` refuse it and
``run_job`` (the test playing the kubelet) waits until it is resumed. Patching
``spec.suspend`` to false resumes it: with ``auto_complete`` the Job then runs by itself,
like a Job created running. (A real controller also resets ``startTime`` on resume; a Job
here has none before its first pod.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.harness.k8s_objects import HarnessError, name_of, ns_of, uid_of

Obj = dict[str, Any]

RESUME_WAIT_SECONDS = 30.0


def is_suspended(job: Obj | None) -> bool:
    return bool(job is not None and (job.get("spec") or {}).get("suspend") is True)


def refuse_if_suspended(job: Obj) -> None:
    if is_suspended(job):
        raise HarnessError(
            f"Job {ns_of(job)}/{name_of(job)} is suspended (spec.suspend): it has no pod until "
            "it is resumed"
        )


def resumed(before: Obj | None, after: Obj) -> bool:
    """Whether an update let a suspended Job run."""
    return is_suspended(before) and not is_suspended(after)


async def wait_resumed(find: Callable[[], Obj | None], uid: str) -> None:
    """Wait while the Job (same uid) is suspended; returns at once when it is gone."""
    deadline = time.monotonic() + RESUME_WAIT_SECONDS
    while True:
        job = find()
        if job is None or uid_of(job) != uid or not is_suspended(job):
            return
        if time.monotonic() > deadline:
            raise HarnessError(
                f"Job {ns_of(job)}/{name_of(job)} stayed suspended for {RESUME_WAIT_SECONDS:.0f}s"
            )
        await asyncio.sleep(0.02)
