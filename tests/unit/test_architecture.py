"""The shape docs/architecture.md promises, read from the import graph (grimp, the library
import-linter is built on). The layer contracts live in pyproject.toml and run as
`lint-imports` in ./dev test; these checks are the ones a contract cannot state."""

from __future__ import annotations

import functools

import grimp
import pytest


@functools.cache
def graph() -> grimp.ImportGraph:
    # Every import counts: those inside functions and under TYPE_CHECKING too, since a lazy
    # import hides a cycle rather than removing it.
    return grimp.build_graph("app", "validators", include_external_packages=True, cache_dir=None)


def app_modules() -> list[str]:
    return sorted(m for m in graph().modules if m == "app" or m.startswith("app."))


def test_no_module_of_app_imports_one_that_imports_it_back() -> None:
    g = graph()
    cycles = []
    for module in app_modules():
        for imported in g.find_modules_directly_imported_by(module):
            if imported.startswith("app.") and imported != module:
                back = g.find_shortest_chain(importer=imported, imported=module)
                if back:
                    cycles.append(f"{module} -> {' -> '.join(back)}")
    assert cycles == []


@pytest.mark.parametrize(
    ("client", "gateway"),
    [("kubernetes", "app.executors.k8s.gateway"), ("slack_sdk", "app.notify.slack")],
)
def test_exactly_one_module_imports_each_third_party_client(client: str, gateway: str) -> None:
    importers = {
        m for m in graph().find_modules_that_directly_import(client) if m.startswith("app")
    }
    assert importers == {gateway}


def test_only_the_entry_points_build_the_container() -> None:
    """Handlers get services by dependency injection; nothing below the entry points reaches
    back into the container."""
    importers = graph().find_modules_that_directly_import("app.container")
    # The CLI is a package (app/cli/): its serve, reconcile and token commands build one.
    assert {m for m in importers if not m.startswith("app.cli.")} <= {"app.main", "app.demo"}
