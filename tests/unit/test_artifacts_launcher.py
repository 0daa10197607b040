"""The launcher is standalone (stdlib only, Python 3.8 syntax, runyard's artifact names),
and a rendered one-off dbt Job with it is pinned by a golden file."""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import yaml

from app.executors.k8s import launcher
from app.executors.k8s.gateway import shape_overrides
from app.executors.k8s.render import Launcher, Manifests, Templates
from app.services.commands import CommandChecker
from app.store.artifacts import ARTIFACT_NAMES
from tests.unit.test_k8s_render import run_of

GOLDEN = Path(__file__).parent / "golden" / "job_dbt_launcher.yaml"


def test_the_launcher_keeps_runyards_artifact_names() -> None:
    assert launcher.ARTIFACT_NAMES == ARTIFACT_NAMES


def test_the_launcher_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(launcher.__file__).read_text(), feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported, "the walk found the imports"
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_install_copies_a_readable_launcher(tmp_path: Path) -> None:
    destination = tmp_path / "launcher.py"
    assert launcher.main(["--install", str(destination)]) == 0
    assert destination.read_bytes() == Path(launcher.__file__).read_bytes()
    assert destination.stat().st_mode & 0o444 == 0o444
    assert launcher.main([]) == 2  # no command: usage


def test_golden_job_with_the_launcher() -> None:
    manifests = Manifests(
        Templates.load(),
        CommandChecker(),
        lambda org: f"org-{org}",
        shape_overrides,
        Launcher(
            image="ghcr.io/example/runyard:0.1.0",
            api_url="http://runyard.runyard.svc:8080",
            credential=lambda run: f"rya1.1777777777.credential-of-{run.id}",
        ),
    )
    manifest = manifests.job(run_of("dbt"), "acme")
    text = yaml.safe_dump(manifest, sort_keys=False, width=100)
    if os.environ.get("RUNYARD_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert GOLDEN.read_text() == text, "job_dbt_launcher.yaml differs (see test_k8s_render.py)"
    # SQLMesh leaves no artifacts: its Jobs run the command directly.
    sqlmesh = manifests.job(run_of("sqlmesh"), "acme")["spec"]["template"]["spec"]
    assert "initContainers" not in sqlmesh
    assert sqlmesh["containers"][0]["command"] == ["sqlmesh"]
