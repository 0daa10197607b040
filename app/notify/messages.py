"""What a notification says: the webhook body, its signature, and the Slack message.

Pure functions of a run record (and its log text). Slack rejects a message that breaks a
Block Kit limit (``invalid_blocks``, ``msg_blocks_too_long``) and retrying would not help,
so every string is cut to its limit here, however long a dbt error or a log line is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

import msgspec

from app.engines.results import dbt_log_text, failed_nodes, first_error_line
from app.models import (
    FailedStep,
    NodeSummary,
    ProjectKind,
    Run,
    RunOut,
    RunRecord,
    WebhookEvent,
    failed_step,
)

# Block Kit limits (docs.slack.dev, "Blocks" and "chat.postMessage"). The whole-message
# budget is below the documented 40,000 characters of ``text``: Slack answers
# msg_blocks_too_long for blocks totalling about 13,000 characters.
MAX_BLOCKS = 50
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_FIELDS = 10
CONTEXT_LIMIT = 2000
BLOCKS_BUDGET = 12_000
TEXT_LIMIT = 3000  # the fallback text is a notification preview: a short one reads better
# How the budget is shared, so a long run error or many failed models never crowd out the
# rest: about 1,000 for the header and fields, then these (12,000 in all).
FIELD_VALUE_CHARS = 150
ERROR_CHARS = 1500
NODES_CHARS = 6000
MAX_NODE_SECTIONS = 8
MORE_NODES_CHARS = 1000
LOG_LINES = 25
LOG_CHARS = 2500

_HEADLINES: dict[str, tuple[str, str]] = {
    "success": (":white_check_mark:", "succeeded"),
    "failed": (":x:", "failed"),
    "timed_out": (":hourglass:", "timed out"),
    "lost": (":grey_question:", "was lost"),
    "cancelled": (":no_entry_sign:", "was cancelled"),
    "running": (":arrow_forward:", "started"),
    "pending": (":arrow_forward:", "started"),
}
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}$")


# --- webhooks --------------------------------------------------------------------------


class ProjectRef(msgspec.Struct, kw_only=True):
    id: str
    name: str
    kind: ProjectKind


class JobRef(msgspec.Struct, kw_only=True):
    id: str
    name: str


class FailedNode(msgspec.Struct, kw_only=True):
    unique_id: str
    name: str
    resource_type: str
    status: str
    message: str | None
    # The index of the step that reported it (a run of steps), else None.
    step: int | None = None


class WebhookBody(msgspec.Struct, kw_only=True):
    """The documented webhook body (docs/notifications.md); add fields, never rename."""

    event: WebhookEvent
    delivery_id: str
    occurred_at: datetime
    project: ProjectRef
    job: JobRef
    run: RunOut
    failed_nodes: list[FailedNode]
    run_url: str | None
    # A run of steps: the step that failed it (docs/steps.md); None otherwise.
    failed_step: FailedStep | None = None


def run_out(run: Run) -> RunOut:
    """The API's run shape, built here too so notify does not import the web layer."""
    fields = {name: getattr(run, name) for name in Run.__struct_fields__}
    return RunOut(
        **fields,
        is_terminal=run.is_terminal,
        is_success=run.is_success,
        is_failed=run.is_failed,
        failed_step=failed_step(run.steps),
    )


def run_url(public_url: str | None, run_id: str) -> str | None:
    """The run's page in the web UI (docs/ui.md): what a person opens from an alert. It
    asks for a sign-in first when the browser has no session, then comes back here."""
    return f"{public_url.rstrip('/')}/ui/runs/{run_id}" if public_url else None


def occurred_at(run: Run, event: WebhookEvent) -> datetime:
    """When the event happened: the end of a finished run, the start of a started one."""
    moment = run.start_time if event == "started" else run.end_time
    return moment or run.updated_at


def webhook_body(
    run: RunRecord, event: WebhookEvent, delivery_id: str, public_url: str | None
) -> bytes:
    """The raw body, encoded once when the notification is written: every retry sends the
    same bytes, so receivers see one stable document per delivery id."""
    body = WebhookBody(
        event=event,
        delivery_id=delivery_id,
        occurred_at=occurred_at(run, event),
        project=ProjectRef(
            id=run.project_id, name=run.snapshot.project_name, kind=run.snapshot.project_kind
        ),
        job=JobRef(id=run.job_id, name=run.snapshot.job.name),
        run=run_out(run),
        failed_nodes=[
            FailedNode(
                unique_id=n.unique_id,
                name=n.name,
                resource_type=n.resource_type,
                status=n.status,
                message=n.message,
                step=n.step,
            )
            for n in failed_nodes(run.results)
        ],
        run_url=run_url(public_url, run.id),
        failed_step=failed_step(run.steps),
    )
    return msgspec.json.encode(body)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` keyed by the secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# --- Slack -----------------------------------------------------------------------------


class SlackMessage(msgspec.Struct, kw_only=True):
    text: str  # the plain fallback: notifications, screen readers, clients without blocks
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any]


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters (links, mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending with an ellipsis when cut (and never in the
    middle of an escaped character)."""
    if len(text) <= limit:
        return text
    head = _PARTIAL_ENTITY.sub("", text[: max(0, limit - 1)])
    return head + "…"


def _code(text: str, limit: int, *, keep_end: bool = False) -> str:
    """A mrkdwn code block of at most ``limit`` characters: the start of an error message
    (where it says what went wrong) or, with ``keep_end``, the end of a log. Backtick
    fences inside would close the block early."""
    raw = text.replace("```", "'''").strip("\n")
    room = limit - 8  # the fences and their newlines
    if room <= 10:
        return ""
    body = escape(raw)
    if len(body) > room:
        # Cut the raw text, not the escaped one (which could split "&amp;"), until its
        # escaped form fits beside the ellipsis.
        piece = raw[-(room - 1) :] if keep_end else raw[: room - 1]
        while len(escape(piece)) > room - 1:
            excess = len(escape(piece)) - (room - 1)
            piece = piece[excess:] if keep_end else piece[:-excess]
        body = "…" + escape(piece) if keep_end else escape(piece) + "…"
    return f"```\n{body}\n```"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def log_tail(log_text: str, lines: int = LOG_LINES) -> str:
    """The last lines of a run's log, dbt JSON events shown as dbt would print them."""
    kept = [dbt_log_text(line) for line in log_text.splitlines()[-lines:]]
    return "\n".join(line for line in kept if line.strip())


def node_label(node: NodeSummary) -> str:
    if node.resource_type == "audit" and node.unique_id.startswith("audit:"):
        return "audit " + node.unique_id.removeprefix("audit:")
    return f"{node.resource_type} {node.name}"


class _Blocks:
    """Collects blocks while keeping the message within Slack's limits."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.used = 0

    @property
    def room(self) -> int:
        return BLOCKS_BUDGET - self.used

    def add(self, block: dict[str, Any], size: int) -> bool:
        # Two blocks are kept free for the context footer added last.
        if len(self.blocks) >= MAX_BLOCKS - 2 or size > self.room:
            return False
        self.blocks.append(block)
        self.used += size
        return True

    def section(self, text: str) -> bool:
        text = cut(text, min(SECTION_LIMIT, self.room))
        if not text:
            return False
        return self.add({"type": "section", "text": {"type": "mrkdwn", "text": text}}, len(text))


def slack_message(
    run: RunRecord,
    event: WebhookEvent,
    delivery_id: str,
    log_text: str,
    public_url: str | None,
) -> SlackMessage:
    project, job = run.snapshot.project_name, run.snapshot.job.name
    status = "running" if event == "started" else run.status
    emoji, verb = _HEADLINES.get(status, (":grey_question:", status))
    link = run_url(public_url, run.id)
    failed = failed_nodes(run.results)
    stopped_at = failed_step(run.steps) if event != "started" else None
    out = _Blocks()

    header = cut(f"{emoji} {project} / {job} {verb}", HEADER_LIMIT)
    out.add({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}, 150)
    exit_text = f" (exit code {run.exit_code})" if run.exit_code not in (None, 0) else ""
    field_values = [
        ("Project", escape(cut(project, FIELD_VALUE_CHARS))),
        ("Job", escape(cut(job, FIELD_VALUE_CHARS))),
        ("Status", escape(run.status) + exit_text),
        ("Trigger", escape(run.triggered_by)),
        ("Duration", duration_text(run.duration_seconds)),
        ("Run", f"<{link}|{run.id}>" if link else f"`{run.id}`"),
    ]
    if stopped_at is not None:
        # A run of steps: which step failed it, ahead of the optional fields.
        where = f"{stopped_at.index + 1} of {len(run.steps)}: {stopped_at.name}"
        field_values.insert(3, ("Failed step", escape(cut(where, FIELD_VALUE_CHARS))))
    fields = [
        {"type": "mrkdwn", "text": cut(f"*{name}*\n{value}", FIELD_LIMIT)}
        for name, value in field_values[:MAX_FIELDS]
    ]
    out.add({"type": "section", "fields": fields}, sum(len(f["text"]) for f in fields))
    if run.error:
        out.section(cut("*Error*\n" + escape(run.error), ERROR_CHARS))
    shown = 0
    per_node = NODES_CHARS // max(1, min(len(failed), MAX_NODE_SECTIONS))
    for node in failed[:MAX_NODE_SECTIONS]:
        title = cut(f"*{escape(node_label(node))}* {escape(node.status)}", 300)
        message = node.message or ""
        code = _code(message, min(SECTION_LIMIT, per_node) - len(title) - 1) if message else ""
        if not out.section(f"{title}\n{code}" if code else title):
            break
        shown += 1
    if len(failed) > shown:
        rest = ", ".join(escape(node_label(n)) for n in failed[shown:])
        out.section(cut(f"*And {len(failed) - shown} more failed:* {rest}", MORE_NODES_CHARS))
    tail = log_tail(log_text)
    if tail and event != "started" and out.room > 200:
        title = "*Last lines of the log*"
        room = min(SECTION_LIMIT, LOG_CHARS, out.room) - len(title) - 1
        code = _code(tail, room, keep_end=True)
        if code:
            out.section(f"{title}\n{code}")
    footer = cut(f"runyard · delivery `{delivery_id}` · run `{run.id}`", CONTEXT_LIMIT)
    out.blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})

    text = f"{project} / {job} {verb}"
    if stopped_at is not None:
        text += f" at step {stopped_at.index + 1} ({stopped_at.name})"
    if failed:
        text += ": " + "; ".join(
            f"{node_label(n)}: {first_error_line(n.message)}".rstrip(": ") for n in failed[:3]
        )
        if len(failed) > 3:
            text += f"; and {len(failed) - 3} more"
    elif run.error and event != "success":
        text += ": " + run.error
    if link:
        text += f" ({link})"
    metadata = {
        "event_type": f"runyard_run_{event}",
        "event_payload": {
            "delivery_id": delivery_id,
            "run_id": run.id,
            "project_id": run.project_id,
            "job_id": run.job_id,
            "status": run.status,
        },
    }
    return SlackMessage(text=cut(escape(text), TEXT_LIMIT), blocks=out.blocks, metadata=metadata)


# --- silence alerts (missed, overdue) -----------------------------------------------------


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """A silence alert (app/services/silence.py): a scheduled slot that produced no running
    run in time (``missed``), or a run running longer than its job allows (``overdue``)."""

    event: WebhookEvent  # "missed" or "overdue"
    project: ProjectRef
    job: JobRef
    threshold_minutes: int
    reason: str  # what runyard knows of why (runyard down, queued, launch failed, ...)
    detected_at: datetime
    slot: datetime | None = None  # missed: the scheduled fire time
    run: Run | None = None  # the slot's run (missed, when there is one) or the long run


class AlertBody(msgspec.Struct, kw_only=True):
    """The webhook body of a silence alert (docs/notifications.md); add fields, never
    rename. ``run`` is null for a missed slot that has no run at all."""

    event: WebhookEvent
    delivery_id: str
    occurred_at: datetime
    project: ProjectRef
    job: JobRef
    slot: datetime | None
    threshold_minutes: int
    reason: str
    run: RunOut | None
    run_url: str | None


def alert_webhook_body(alert: Alert, delivery_id: str, public_url: str | None) -> bytes:
    body = AlertBody(
        event=alert.event,
        delivery_id=delivery_id,
        occurred_at=alert.detected_at,
        project=alert.project,
        job=alert.job,
        slot=alert.slot,
        threshold_minutes=alert.threshold_minutes,
        reason=alert.reason,
        run=run_out(alert.run) if alert.run else None,
        run_url=run_url(public_url, alert.run.id) if alert.run else None,
    )
    return msgspec.json.encode(body)


def alert_headline(alert: Alert) -> str:
    """One line naming the job, the slot or run, and the threshold."""
    where = f"{alert.project.name} / {alert.job.name}"
    if alert.event == "missed":
        slot = alert.slot.strftime("%Y-%m-%d %H:%M UTC") if alert.slot else "a slot"
        return (
            f"{where}: the run scheduled for {slot} was not running within "
            f"{alert.threshold_minutes} min"
        )
    run = f"run {alert.run.id}" if alert.run else "a run"
    return f"{where}: {run} is running longer than {alert.threshold_minutes} min"


def alert_slack_message(alert: Alert, delivery_id: str, public_url: str | None) -> SlackMessage:
    emoji = ":alarm_clock:" if alert.event == "missed" else ":hourglass_flowing_sand:"
    verb = "did not start" if alert.event == "missed" else "is running long"
    title = f"{emoji} {alert.project.name} / {alert.job.name} {verb}"
    link = run_url(public_url, alert.run.id) if alert.run else None
    run_text = "none"
    if alert.run is not None:
        run_text = f"<{link}|{alert.run.id}>" if link else f"`{alert.run.id}`"
    field_values = [
        ("Project", escape(cut(alert.project.name, FIELD_VALUE_CHARS))),
        ("Job", escape(cut(alert.job.name, FIELD_VALUE_CHARS))),
        ("Slot", alert.slot.strftime("%Y-%m-%d %H:%M UTC") if alert.slot else "n/a"),
        ("Threshold", f"{alert.threshold_minutes} min"),
        ("Run", run_text),
    ]
    out = _Blocks()
    header = cut(title, HEADER_LIMIT)
    out.add({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}, 150)
    fields = [
        {"type": "mrkdwn", "text": cut(f"*{name}*\n{value}", FIELD_LIMIT)}
        for name, value in field_values
    ]
    out.add({"type": "section", "fields": fields}, sum(len(f["text"]) for f in fields))
    out.section(cut("*Reason*\n" + escape(alert.reason), ERROR_CHARS))
    footer = cut(f"runyard · delivery `{delivery_id}`", CONTEXT_LIMIT)
    out.blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    text = f"{alert_headline(alert)}: {alert.reason}" + (f" ({link})" if link else "")
    metadata = {
        "event_type": f"runyard_job_{alert.event}",
        "event_payload": {
            "delivery_id": delivery_id,
            "run_id": alert.run.id if alert.run else None,
            "project_id": alert.project.id,
            "job_id": alert.job.id,
            "status": alert.event,
        },
    }
    return SlackMessage(text=cut(escape(text), TEXT_LIMIT), blocks=out.blocks, metadata=metadata)
