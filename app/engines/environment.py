"""The environment dbt and SQLMesh need under runyard, on both executors: telemetry off,
unbuffered output, and the log and home settings that let runyard read their results."""

from __future__ import annotations

from pathlib import Path

from app.models import ProjectKind

# What the engines need; a project's or job's environment cannot change these (the API
# rejects them, and they are applied last here as well).
ENGINE_ENV = {
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "DO_NOT_TRACK": "1",
    "SQLMESH__DISABLE_ANONYMIZED_ANALYTICS": "1",
    # Output goes to a file; unbuffered, it reaches the run's log while the run goes on.
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "utf-8",
}


def engine_env(kind: ProjectKind, cwd: Path, dbt_log_dir: Path) -> dict[str, str]:
    """Variables the engines need so runyard can read their results, and plain output."""
    env = {"DBT_USE_COLORS": "false", "NO_COLOR": "1"}
    if kind == "dbt":
        # Info level: every node's result and error, a tenth of the debug log's size (dbt
        # spends measurable time writing debug events as JSON).
        env["DBT_LOG_FORMAT_FILE"] = "json"
        env["DBT_LOG_LEVEL_FILE"] = "info"
        env["DBT_LOG_PATH"] = str(dbt_log_dir)
    else:
        # SQLMesh writes a user file under $HOME otherwise, shared by every project.
        env["SQLMESH_HOME"] = str(cwd / ".sqlmesh")
    return env
