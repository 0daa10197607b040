"""Project paths are confined to the org's folder under the projects root."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from app.errors import Invalid
from app.executors.local.paths import ProjectPaths


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "projects"


@pytest.fixture
def paths(root: Path) -> ProjectPaths:
    return ProjectPaths(root)


@pytest.fixture
def acme(paths: ProjectPaths) -> Path:
    folder = paths.org_folder("acme")
    (folder / "analytics").mkdir()
    return folder


def refused(paths: ProjectPaths, path: str, org: str = "acme") -> Invalid:
    with pytest.raises(Invalid) as caught:
        paths.resolve(org, path)
    [error] = caught.value.errors
    assert error.field == "path"
    return caught.value


def test_relative_and_absolute_paths_inside_the_org_folder(paths: ProjectPaths, acme: Path) -> None:
    assert paths.resolve("acme", "analytics") == acme / "analytics"
    assert paths.resolve("acme", str(acme / "analytics")) == acme / "analytics"
    assert paths.resolve("acme", "analytics/../analytics/.") == acme / "analytics"
    assert paths.resolve("acme", ".") == acme  # a single project in the org's folder


@pytest.mark.parametrize("path", ["/", "..", "../..", "../../etc", "/etc", "analytics/../../"])
def test_paths_outside_the_org_folder_are_refused_naming_the_root(
    paths: ProjectPaths, acme: Path, root: Path, path: str
) -> None:
    problem = refused(paths, path)
    assert "outside your organization's folder" in problem.detail
    assert str(root) in problem.detail and str(acme) in problem.detail
    assert "RUNYARD_PROJECTS_ROOT" in problem.detail


def test_another_orgs_folder_is_refused(paths: ProjectPaths, acme: Path) -> None:
    other = paths.org_folder("globex")
    (other / "secret").mkdir()
    refused(paths, str(other / "secret"))
    refused(paths, "../globex/secret")
    # and the other way round
    refused(paths, str(acme / "analytics"), org="globex")


def test_a_symlink_pointing_out_is_refused(paths: ProjectPaths, acme: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (acme / "escape").symlink_to(outside)
    (acme / "to-globex").symlink_to(paths.org_folder("globex"))
    (acme / "inside").symlink_to(acme / "analytics")
    problem = refused(paths, "escape")
    assert str(outside) in problem.detail
    refused(paths, "to-globex")
    assert paths.resolve("acme", "inside") == acme / "analytics"


def test_missing_paths_and_files_are_refused(paths: ProjectPaths, acme: Path) -> None:
    assert "does not exist" in refused(paths, "nowhere").detail
    (acme / "file.txt").write_text("x")
    assert "is not a directory" in refused(paths, "file.txt").detail
    assert "empty" in refused(paths, "  ").detail


@pytest.mark.parametrize("path", ["analytics\0/x", "a" * 5000, "x/" * 3000])
def test_unusable_paths_are_a_422_not_an_exception(
    paths: ProjectPaths, acme: Path, path: str
) -> None:
    refused(paths, path)


def test_org_folders_are_created_private_whatever_the_umask(
    paths: ProjectPaths, root: Path
) -> None:
    old = os.umask(0)
    try:
        folder = paths.org_folder("acme")
    finally:
        os.umask(old)
    assert folder == root / "acme"
    for made in (root, folder):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700


@pytest.mark.parametrize("slug", ["", ".", "..", "a/b"])
def test_an_org_slug_cannot_name_another_folder(paths: ProjectPaths, slug: str) -> None:
    with pytest.raises(ValueError, match="slug"):
        paths.org_folder(slug)
