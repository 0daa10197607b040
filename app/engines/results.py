"""Pure parsers of what dbt and SQLMesh report about a run: which models, tests and audits
ran, which failed, and why.

No framework imports and no I/O except reading the files these functions are given. The
formats were checked against dbt-core 1.11 (with dbt-duckdb) and SQLMesh 0.236; the unit
tests in ``tests/unit/test_results.py`` run on outputs captured from the example projects
(``tests/unit/fixtures/capture.sh`` regenerates them).

dbt, three sources, best first:

- JSON log events (``DBT_LOG_FORMAT=json`` on stdout, or ``DBT_LOG_FORMAT_FILE=json``
  for ``logs/dbt.log`` while stdout stays text): ``parse_dbt_log`` /
  ``parse_dbt_log_line``. The log file also holds the debug-level ``NodeFinished`` events,
  which carry each node's full result (status, timing, message).
- ``target/run_results.json``: ``read_dbt_run_results``. dbt leaves the previous file in
  place when an invocation fails before running nodes (compile errors, exit 2), so it is
  only trusted when its invocation id is the run's (``dbt_invocation_id``) or, when the id
  is unknown, when it was generated after the run started.
- The text on stdout (the default format): ``parse_dbt_text_output`` reads the summary dbt
  prints at the end ("Failure in model x (path)" and the message under it). Text has no
  package name: its unique ids are ``<resource_type>.<name>``.

SQLMesh prints failures only as text: ``parse_sqlmesh_output``.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from app.models import NodeSummary

MESSAGE_LIMIT = 2000
SUMMARY_LIMIT = 1000
# Lines of the end of a run's output that both executors give summarise_failure.
SUMMARY_TAIL_LINES = 100

# Statuses that make a node count as failed. dbt: "error" (models, seeds, snapshots, tests
# that could not run), "fail" (tests whose query returned rows), "runtime error"
# (source freshness), "partial success" (microbatch models with failed batches).
# SQLMesh (as reported here): "error" (a model's query failed), "failed" (an audit failed).
FAILED_STATUSES = frozenset({"error", "fail", "failed", "runtime error", "partial success"})


# --- shared helpers ------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour and cursor sequences."""
    return _ANSI.sub("", text)


def trim_message(message: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    """The message without colour codes and surrounding blank lines, cut to ``limit``
    characters (with an ellipsis). None and blank messages give None."""
    if message is None:
        return None
    text = strip_ansi(message).strip("\n").rstrip()
    if not text.strip():
        return None
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def failed_nodes(results: Sequence[NodeSummary]) -> list[NodeSummary]:
    """The results whose status is a failure (error, fail, failed, ...); not warnings,
    not skipped nodes."""
    return [r for r in results if r.status.lower() in FAILED_STATUSES]


_AUDIT_ID = re.compile(r"^audit:(?P<audit>.+?) on (?P<model>.+)$")


def describe(result: NodeSummary) -> str:
    """How to name a result to users: ``model broken_orders``, ``test not_null_x``,
    ``audit assert_positive_revenue on shop.daily_revenue``."""
    if result.resource_type == "audit":
        match = _AUDIT_ID.match(result.unique_id)
        if match:
            return f"audit {match['audit']} on {match['model']}"
    return f"{result.resource_type} {result.name}"


# --- dbt: JSON log events ------------------------------------------------------------------

# Events that report a node's outcome. LogBatchResult (one microbatch batch) is left out:
# its node's own result follows.
_DBT_RESULT_EVENTS = frozenset(
    {
        "LogModelResult",
        "LogTestResult",
        "LogSeedResult",
        "LogSnapshotResult",
        "LogFreshnessResult",
        "LogFunctionResult",
        "LogNodeResult",
        "LogNodeNoOpResult",
        "LogSkipBecauseError",
        "SkippingDetails",
        "NodeFinished",
    }
)
# Events of the end-of-run summary that carry a node's error or warning message.
_DBT_MESSAGE_EVENTS = frozenset({"RunResultError", "RunResultWarningMessage"})
# node_info.node_status values that are not an outcome yet.
_DBT_PENDING = frozenset({"", "none", "started", "compiling", "executing"})


def _json_event(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    if not isinstance(event, dict):
        return None
    info, data = event.get("info"), event.get("data")
    if not isinstance(info, dict) or not isinstance(data, dict):
        return None
    return event


def _text(value: Any) -> str | None:
    """``value`` if it is a string (JSON from a log is not trusted to have the right types)."""
    return value if isinstance(value, str) else None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _normalise_dbt_status(status: str) -> str:
    lowered = status.strip().lower()
    return "success" if lowered == "ok" else lowered


def _name_from_unique_id(unique_id: str) -> tuple[str, str]:
    """(resource_type, name) from ``model.pkg.name``, ``test.pkg.name.hash``, ...."""
    parts = unique_id.split(".")
    if len(parts) >= 3:
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    return "node", unique_id


def parse_dbt_log_line(line: str) -> NodeSummary | None:
    """One line of dbt's JSON log (``--log-format json``, ``DBT_LOG_FORMAT=json`` or the
    ``DBT_LOG_FORMAT_FILE=json`` log file). Returns a result for the events that report a
    node's outcome (LogModelResult, LogTestResult, LogSeedResult, LogSnapshotResult,
    SkippingDetails, NodeFinished, ...), None for every other line, JSON or not.

    Only NodeFinished (debug level: in the log file, not on stdout by default) carries the
    error message; on stdout it comes later in a RunResultError event, which
    ``parse_dbt_log`` joins to the node's result.
    """
    event = _json_event(line)
    if event is None:
        return None
    info, data = event["info"], event["data"]
    kind = _text(info.get("name"))
    if kind not in _DBT_RESULT_EVENTS:
        return None
    node = data.get("node_info")
    if not isinstance(node, dict) or not node.get("unique_id"):
        return None
    unique_id = str(node["unique_id"])
    fallback_type, fallback_name = _name_from_unique_id(unique_id)
    run_result = data.get("run_result") if kind == "NodeFinished" else None
    run_result = run_result if isinstance(run_result, dict) else {}

    status = ""
    if run_result.get("status"):
        status = str(run_result["status"])
    if _normalise_dbt_status(status) in _DBT_PENDING:
        status = str(node.get("node_status") or "")
    if _normalise_dbt_status(status) in _DBT_PENDING:
        status = str(data.get("status") or "")
    if kind == "SkippingDetails" and _normalise_dbt_status(status) in _DBT_PENDING:
        status = "skipped"
    status = _normalise_dbt_status(status)
    if status in _DBT_PENDING:
        return None

    message = None
    if status not in ("success", "pass", "no-op"):
        message = trim_message(_text(run_result.get("message")))
    execution_time = _as_float(run_result.get("execution_time"))
    if execution_time is None:
        execution_time = _as_float(data.get("execution_time"))
    return NodeSummary(
        unique_id=unique_id,
        name=str(node.get("node_name") or fallback_name),
        resource_type=str(node.get("resource_type") or fallback_type),
        status=status,
        execution_time=execution_time,
        message=message,
    )


def parse_dbt_log(lines: Iterable[str]) -> list[NodeSummary]:
    """All node results of a JSON log, one per node in the order they finished, with the
    error and warning messages of the end-of-run summary (RunResultError,
    RunResultWarningMessage) joined to their node. Non-JSON lines are ignored, so a log
    with other text mixed in is fine. For a log file that several invocations appended
    to, pass only the lines of the invocation wanted (``dbt_invocation_id``)."""
    results: dict[str, NodeSummary] = {}
    for line in lines:
        result = parse_dbt_log_line(line)
        if result is not None:
            earlier = results.get(result.unique_id)
            if earlier is not None and result.message is None and earlier.message:
                result = msgspec.structs.replace(result, message=earlier.message)
            if earlier is not None and result.execution_time is None:
                result = msgspec.structs.replace(result, execution_time=earlier.execution_time)
            results[result.unique_id] = result
            continue
        event = _json_event(line)
        if event is None or _text(event["info"].get("name")) not in _DBT_MESSAGE_EVENTS:
            continue
        node = event["data"].get("node_info")
        if not isinstance(node, dict) or not node.get("unique_id"):
            continue
        message = trim_message(_text(event["data"].get("msg")) or _text(event["info"].get("msg")))
        unique_id = str(node["unique_id"])
        earlier = results.get(unique_id)
        if earlier is None:
            resource_type, name = _name_from_unique_id(unique_id)
            warning = event["info"]["name"] == "RunResultWarningMessage"
            results[unique_id] = NodeSummary(
                unique_id=unique_id,
                name=str(node.get("node_name") or name),
                resource_type=str(node.get("resource_type") or resource_type),
                status="warn" if warning else "error",
                message=message,
            )
        elif not earlier.message and message:
            results[unique_id] = msgspec.structs.replace(earlier, message=message)
    return list(results.values())


def dbt_invocation_id(lines: Iterable[str]) -> str | None:
    """The invocation id of dbt's JSON log events: the last one seen, so for a log file
    that several invocations appended to (``logs/dbt.log``), the latest invocation's.
    None when no line is a JSON event (text logs)."""
    found: str | None = None
    for line in lines:
        event = _json_event(line)
        if event is not None:
            value = event["info"].get("invocation_id")
            if isinstance(value, str) and value:
                found = value
    return found


def dbt_log_text(line: str) -> str:
    """A JSON log line as the human text dbt would have printed (``HH:MM:SS  message``),
    for showing JSON logs to people; any other line unchanged (without colour codes)."""
    event = _json_event(line)
    if event is None:
        return strip_ansi(line.rstrip("\n"))
    msg = strip_ansi(_text(event["info"].get("msg")) or "")
    ts = event["info"].get("ts")
    stamp = ""
    if isinstance(ts, str) and len(ts) >= 19 and ts[10:11] == "T":
        stamp = ts[11:19]
    return f"{stamp}  {msg}" if stamp else msg


def dbt_invocation_lines(lines: Iterable[str], invocation_id: str) -> list[str]:
    """The JSON log lines of one invocation (for a ``logs/dbt.log`` shared by several)."""
    kept = []
    for line in lines:
        event = _json_event(line)
        if event is not None and event["info"].get("invocation_id") == invocation_id:
            kept.append(line)
    return kept


# --- dbt: target/run_results.json ------------------------------------------------------------


def _parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def read_dbt_run_results(
    project_dir: Path,
    invocation_id: str | None,
    *,
    target_path: str | Path = "target",
    not_before: datetime | None = None,
) -> list[NodeSummary] | None:
    """The results in ``<project_dir>/<target_path>/run_results.json``, or None when the
    file is missing or unreadable, or not the run's own:

    - with ``invocation_id``: None unless the file's ``metadata.invocation_id`` is that id
      (dbt leaves the previous file in place when an invocation fails before running nodes,
      e.g. compile errors, exit 2);
    - without it (text logs): None unless ``not_before`` is given and the file's
      ``metadata.generated_at`` is not earlier (pass the run's start time).

    ``target_path`` is relative to ``project_dir`` unless absolute (``DBT_TARGET_PATH``).
    """
    if invocation_id is None and not_before is None:
        return None
    path = Path(target_path)
    if not path.is_absolute():
        path = project_dir / path
    try:
        raw = (path / "run_results.json").read_bytes()
        document = msgspec.json.decode(raw)
    except (OSError, msgspec.DecodeError):
        return None
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if invocation_id is not None:
        if metadata.get("invocation_id") != invocation_id:
            return None
    elif not_before is not None:
        generated = _parse_timestamp(metadata.get("generated_at"))
        since = not_before if not_before.tzinfo else not_before.replace(tzinfo=UTC)
        if generated is None or generated < since:
            return None
    entries = document.get("results")
    if not isinstance(entries, list):
        return None
    results = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("unique_id"):
            continue
        unique_id = str(entry["unique_id"])
        resource_type, name = _name_from_unique_id(unique_id)
        status = _normalise_dbt_status(str(entry.get("status") or ""))
        message = None
        if status not in ("success", "pass", "no-op"):
            message = trim_message(_text(entry.get("message")))
        results.append(
            NodeSummary(
                unique_id=unique_id,
                name=name,
                resource_type=resource_type,
                status=status,
                execution_time=_as_float(entry.get("execution_time")),
                message=message,
            )
        )
    return results


# --- dbt: text output ----------------------------------------------------------------------

_DBT_TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d(?:\.\d+)?  ")
_DBT_SUMMARY_HEADER = re.compile(
    r"^(?P<kind>Failure|Warning|Error) in (?P<type>[a-z_]+) (?P<name>\S+)(?: \((?P<path>.*)\))?\s*$"
)
_DBT_SECTION_END = re.compile(r"^(Done\. |compiled code at |Finished running )")
_DBT_ERROR_HEADER = re.compile(r"^(Runtime|Database|Compilation|Parsing|Dependency) Error\b")


def parse_dbt_text_output(text: str) -> list[NodeSummary]:
    """The failed and warned nodes named in the summary dbt prints at the end of a text log
    ("Failure in model broken_orders (models/...)" and the message under it). Skipped and
    successful nodes are not listed there, so they are not returned."""
    results: list[NodeSummary] = []
    current: dict[str, Any] | None = None
    body: list[str] = []

    def close() -> None:
        if current is None:
            return
        message = trim_message(_dedent(body))
        kind, resource_type = current["kind"], current["type"]
        if kind == "Warning":
            status = "warn"
        elif resource_type in ("test", "unit_test") and not (
            message and _DBT_ERROR_HEADER.match(message)
        ):
            status = "fail"
        else:
            status = "error"
        results.append(
            NodeSummary(
                unique_id=f"{resource_type}.{current['name']}",
                name=current["name"],
                resource_type=resource_type,
                status=status,
                message=message,
            )
        )

    for raw in strip_ansi(text).splitlines():
        stamped = bool(_DBT_TIMESTAMP.match(raw))
        line = _DBT_TIMESTAMP.sub("", raw, count=1)
        header = _DBT_SUMMARY_HEADER.match(line) if stamped else None
        if header:
            close()
            current = {"kind": header["kind"], "type": header["type"], "name": header["name"]}
            body = []
            continue
        if current is None:
            continue
        content = line.strip()
        if stamped and (not content or _DBT_SECTION_END.match(content)):
            close()
            current, body = None, []
            continue
        body.append(line)
    close()
    return results


def _dedent(lines: list[str]) -> str:
    """Lines joined, without the indentation of the first non-blank one (removed from each
    line as far as it has it: lines a terminal wrapped start at column 0)."""
    first = next((line for line in lines if line.strip()), "")
    cut = len(first) - len(first.lstrip(" "))
    kept = []
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        kept.append(line[min(cut, indent) :].rstrip())
    return "\n".join(kept)


def parse_dbt_output(text: str) -> list[NodeSummary]:
    """The node results in dbt's output, whatever its format: JSON events when there are
    any (``parse_dbt_log``), else the text summary (``parse_dbt_text_output``)."""
    lines = text.splitlines()
    if dbt_invocation_id(lines) is not None:
        return parse_dbt_log(lines)
    return parse_dbt_text_output(text)


# --- SQLMesh -------------------------------------------------------------------------------

_SM_SECTION = re.compile(r"^\*\*(?P<title>[^*]+)\*\*\s*$")
_SM_ITEM = re.compile(r"^\* `(?P<name>[^`]+)`")
_SM_FENCE = re.compile(r"^\s*```")
_SM_AUDIT_ERROR = re.compile(r"^'?(?P<audit>[^'\s]+)'? audit error: (?P<detail>.*)$")
_SM_AUDIT_LINE = re.compile(
    r"^(?P<audit>\S+) on model (?P<model>\S+) .*?\bFAIL\b(?: \[(?P<count>\d+)\])?"
)
_SM_AUDIT_FAILURE = re.compile(r"^Failure in audit (?P<audit>\S+)")
_SM_AUDIT_END = re.compile(r"^(Done\.|Failure in audit |Finished with )")
_IDENT = re.compile(r'"((?:[^"]|"")*)"|([^."]+)')


def _short_model_name(name: str) -> str:
    """``shop.daily_orders`` from ``"demo"."shop"."daily_orders"`` (catalog dropped)."""
    parts = [
        (quoted.replace('""', '"') if quoted is not None and quoted != "" else plain)
        for quoted, plain in _IDENT.findall(name)
    ]
    parts = [p for p in parts if p]
    if len(parts) >= 3:
        parts = parts[-2:]
    return ".".join(parts) if parts else name


def _sqlmesh_result(model: str, message: str | None) -> NodeSummary:
    short = _short_model_name(model)
    first = (message or "").strip().splitlines()[0].strip() if message and message.strip() else ""
    audit = _SM_AUDIT_ERROR.match(first)
    if audit:
        return NodeSummary(
            unique_id=f"audit:{audit['audit']} on {short}",
            name=short,
            resource_type="audit",
            status="failed",
            message=message,
        )
    return NodeSummary(
        unique_id=model, name=short, resource_type="model", status="error", message=message
    )


def parse_sqlmesh_output(text: str) -> list[NodeSummary]:
    """The failed models and audits in SQLMesh's output, with their error.

    Reads the "**Failed models**" section that ``sqlmesh plan`` and ``sqlmesh run`` print
    (each model, then its error in a fenced block; a failed blocking audit shows there as
    "'name' audit error: N rows failed" and is returned as an audit), and the audit report
    of ``sqlmesh audit`` ("x on model y ... FAIL [n]" and "Failure in audit x ...").
    Skipped models are not returned. Errors that stop SQLMesh before it runs anything
    (a model that does not parse) name no model; ``summarise_failure`` reports them from
    the log.
    """
    lines = strip_ansi(text).splitlines()
    results: list[NodeSummary] = []
    results.extend(_sqlmesh_failed_models(lines))
    results.extend(_sqlmesh_audit_report(lines))
    return results


def _sqlmesh_failed_models(lines: list[str]) -> list[NodeSummary]:
    results: list[NodeSummary] = []
    section = ""
    model: str | None = None
    block: list[str] | None = None
    for line in lines:
        if block is not None:
            if _SM_FENCE.match(line):
                if model is not None:
                    results.append(_sqlmesh_result(model, trim_message(_dedent(block))))
                model, block = None, None
            else:
                block.append(line)
            continue
        title = _SM_SECTION.match(line.strip())
        if title:
            if model is not None:
                results.append(_sqlmesh_result(model, None))
                model = None
            section = title["title"].strip().lower()
            continue
        if section != "failed models":
            continue
        item = _SM_ITEM.match(line.strip())
        if item:
            if model is not None:
                results.append(_sqlmesh_result(model, None))
            model = item["name"]
        elif _SM_FENCE.match(line):
            block = []
        elif line.strip().startswith("Error:"):
            section = ""
    if model is not None:
        results.append(_sqlmesh_result(model, trim_message(_dedent(block or []))))
    return results


def _sqlmesh_audit_report(lines: list[str]) -> list[NodeSummary]:
    failed: dict[str, str] = {}  # audit name -> model, in report order
    order: list[tuple[str, str]] = []
    messages: dict[str, list[str]] = {}
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        match = _SM_AUDIT_LINE.match(stripped)
        if match:
            if match["audit"] not in failed:
                order.append((match["audit"], match["model"]))
            failed[match["audit"]] = match["model"]
            current = None
            continue
        start = _SM_AUDIT_FAILURE.match(stripped)
        if start:
            current = start["audit"]
            messages[current] = []
            continue
        if current is not None:
            if _SM_AUDIT_END.match(stripped):
                current = None
                continue
            messages[current].append(line)
    results = []
    for audit, model in order:
        body = messages.get(audit, [])
        # The header wraps "(path)." onto the next line on narrow terminals: drop it.
        while body and body[0].strip().startswith("(") and body[0].strip().endswith(")."):
            body = body[1:]
        short = _short_model_name(model)
        results.append(
            NodeSummary(
                unique_id=f"audit:{audit} on {short}",
                name=short,
                resource_type="audit",
                status="failed",
                message=trim_message(_dedent(body)) or "audit failed",
            )
        )
    return results


# --- summary -------------------------------------------------------------------------------

_NOISE = (
    re.compile(r"^(Runtime|Database|Compilation) Error in \S+ \S+ \(.*\)$"),  # dbt: repeats node
    re.compile(r"^[A-Za-z_.]*(Exception|Error):$"),  # SQLMesh: "ConversionException:"
)
_STOP = re.compile(r"^(LINE \d+:|Audit arguments$|compiled code at )")


def first_error_line(message: str | None) -> str:
    """The line of an error message that says what went wrong: dbt's "Runtime Error in
    model x (path)" and SQLMesh's "ConversionException:" headers are skipped, and so is
    everything from the SQL excerpt ("LINE 14: ...") on."""
    if not message:
        return ""
    lines = [line.strip() for line in strip_ansi(message).splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if _STOP.match(line):
            break
        if any(p.match(line) for p in _NOISE):
            continue
        audit = _SM_AUDIT_ERROR.match(line)  # "'name' audit error: 1 row failed"
        return audit["detail"] if audit else line
    return lines[0] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _exit_text(kind: str, exit_code: int | None) -> str:
    if exit_code is None:
        return f"{kind} ended without an exit code"
    if exit_code < 0:
        return f"{kind} was killed by {_signal_name(-exit_code)}"
    if exit_code > 128 and exit_code - 128 < 65:
        return f"{kind} exited with code {exit_code} (killed by {_signal_name(exit_code - 128)})"
    return f"{kind} exited with code {exit_code}"


_DBT_ENCOUNTERED = re.compile(r"^Encountered an error( while \w+)?:?\s*(?P<rest>.*)$")


def _log_error_line(kind: str, log_tail: str) -> str:
    """The error a log reports when no node failed (compile errors, load errors...)."""
    lines = [strip_ansi(line) for line in log_tail.splitlines()]
    if kind == "dbt":
        lines = "\n".join(dbt_log_text(line) for line in lines).splitlines()
        lines = [_DBT_TIMESTAMP.sub("", line, count=1) for line in lines]
    stripped = [line.strip() for line in lines]
    # dbt: "Encountered an error:" then the error's kind ("Compilation Error") and message.
    for index, line in enumerate(stripped):
        match = _DBT_ENCOUNTERED.match(line)
        if match:
            following = [x for x in stripped[index + 1 : index + 6] if x]
            parts = [match["rest"], *following[:1]] if match["rest"] else following[:2]
            return _join_error(parts)
    # SQLMesh: "Error: <what>", the first is the cause; the last is often "Run failed."
    errors = [i for i, line in enumerate(stripped) if line.startswith("Error:")]
    if errors:
        index = errors[0]
        first = stripped[index][len("Error:") :].strip()
        parts = [first]
        if first.endswith(":"):
            following = [x for x in stripped[index + 1 : index + 4] if x]
            parts += following[:1]
        return _join_error(parts)
    # Otherwise the last line that looks like an error, else the last line.
    for line in reversed(stripped):
        if re.search(r"\b(error|exception|failed|not found|traceback)\b", line, re.IGNORECASE):
            return line
    return next((line for line in reversed(stripped) if line), "")


def _join_error(parts: list[str]) -> str:
    text = ""
    for part in parts:
        if not text:
            text = part
        elif text.endswith(":"):
            text = f"{text} {part}"
        else:
            text = f"{text}: {part}"
    return text


def _cut(text: str, limit: int = SUMMARY_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summarise_failure(
    kind: str, results: Sequence[NodeSummary], exit_code: int | None, log_tail: str
) -> str:
    """A one-line error summary for a run record, naming the failed models, tests or audits
    and their error, e.g. ``model broken_orders failed: Conversion Error: Could not convert
    string 'abc' to INT32``. With no failed node: the exit code and the error the log
    reports (``dbt exited with code 2: Compilation Error: Model ... depends on a node
    named 'stg_orderz' which was not found``). An empty string for a clean success (exit
    code 0 and no failed node). ``kind`` is "dbt" or "sqlmesh"; ``log_tail`` the end of the
    run's output (text or dbt JSON lines)."""
    failed = failed_nodes(results)
    if failed:
        shown = failed[:3]
        parts = []
        for result in shown:
            reason = first_error_line(result.message)
            parts.append(f"{describe(result)} failed" + (f": {reason}" if reason else ""))
        summary = "; ".join(parts)
        if len(failed) > len(shown):
            summary += f"; and {len(failed) - len(shown)} more"
        if exit_code not in (None, 0, 1):
            summary += f" ({_exit_text(kind, exit_code)})"
        return _cut(summary)
    if exit_code == 0:
        return ""
    reason = _log_error_line(kind, log_tail)
    head = _exit_text(kind, exit_code)
    return _cut(f"{head}: {reason}" if reason else head)
