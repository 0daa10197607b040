"""Pytest fixtures for the fake cluster; import them into a conftest.py:

from tests.harness.fixtures import fake_cluster, fake_kubeconfig  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.k8s import FakeCluster


@pytest.fixture
def fake_cluster() -> Iterator[FakeCluster]:
    """A started FakeCluster (no auto-completion); stopped after the test."""
    with FakeCluster() as cluster:
        yield cluster


@pytest.fixture
def fake_kubeconfig(
    fake_cluster: FakeCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A kubeconfig pointing at ``fake_cluster``, exported as ``KUBECONFIG`` for the test."""
    path = fake_cluster.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    yield path
