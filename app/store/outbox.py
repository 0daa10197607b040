"""The notification outbox: one row per notification a run calls for, written in the
transaction that changes the run's status, and each delivery attempt beside it.

A row is ``pending`` until a worker claims it: claiming makes it ``delivering``, counts the
attempt and sets ``due_at`` to the end of the claim's lease. A worker that dies keeps the
row ``delivering`` only until then; after that any worker may claim it again. The final
states are ``delivered`` and ``failed`` (permanently; an admin can retry it).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from app.ids import from_text, to_text
from app.models import WebhookEvent
from app.store.db import Database

# A registered channel's kind (app/notify/registry.py): the registry decides which are
# valid, not the database, so adding a channel needs no migration.
NotificationKind = str
NotificationState = Literal["pending", "delivering", "delivered", "failed"]
AttemptOutcome = Literal["delivered", "retry", "failed"]

_COLUMNS = (
    "id, org_id, run_id, job_id, kind, event, target, host, state, attempts, throttled,"
    " budget_start, due_at, last_status_code, last_error, created_at, updated_at, delivered_at"
)
_CLAIMABLE = "state IN ('pending', 'delivering') AND due_at <= ?"


class NewNotification(msgspec.Struct, kw_only=True):
    id: str  # also the delivery id receivers use to drop duplicates
    org_id: str
    run_id: str | None  # None: a silence alert about a slot without a run
    job_id: str
    kind: NotificationKind
    event: WebhookEvent
    target: str | None
    host: str
    payload: bytes | None = None  # the webhook body, encoded once
    secret: str | None = None  # the job's webhook secret when the row was written


class Notification(msgspec.Struct, kw_only=True):
    id: str
    org_id: str
    run_id: str | None
    job_id: str
    kind: NotificationKind
    event: WebhookEvent
    target: str | None
    host: str
    state: NotificationState
    attempts: int
    throttled: int  # attempts answered with 429: they do not use up the retry budget
    budget_start: int  # attempts made before the last manual retry (a fresh budget)
    due_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class JobNotification(Notification, kw_only=True):
    """A notification as a job's list shows it: with the slot of a ``missed`` alert."""

    slot: datetime | None


class Claimed(Notification, kw_only=True):
    """A row a worker holds: with what it needs to send."""

    payload: bytes | None
    secret: str | None


class AttemptRecord(msgspec.Struct, kw_only=True):
    """What a worker learnt from one attempt, and when the next one is due."""

    started_at: datetime
    finished_at: datetime
    outcome: AttemptOutcome
    status_code: int | None
    error: str | None
    next_due: datetime | None = None
    throttled: bool = False


class Attempt(msgspec.Struct, kw_only=True):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    outcome: AttemptOutcome


def _notification(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: row[k] for k in ("id", "org_id", "run_id", "job_id", "kind", "event", "target")},
        **{k: row[k] for k in ("host", "state", "attempts", "throttled", "budget_start")},
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "due_at": from_text(row["due_at"]),
        "created_at": from_text(row["created_at"]),
        "updated_at": from_text(row["updated_at"]),
        "delivered_at": from_text(row["delivered_at"]) if row["delivered_at"] else None,
    }


class OutboxRepo:
    def __init__(self, database: Database) -> None:
        self._db = database
        # Delivery workers take this before their write transactions: they then queue here,
        # handed over at once, instead of in SQLite's busy handler, which sleeps 1, 2, 5,
        # 10 ... ms between tries and, with a dozen senders, made each write cost ~25 ms.
        # ``add`` never takes it: it runs inside the tracker's transaction, which already
        # holds SQLite's lock, and waiting here with that held could stall a worker.
        self._workers = threading.RLock()

    # --- writing notifications ----------------------------------------------------------

    def add(self, rows: Iterable[NewNotification], now: datetime) -> int:
        """Insert new notifications; inside a caller's transaction they commit with it."""
        stamp = to_text(now)
        count = 0
        with self._db.write() as db:
            for row in rows:
                db.conn.execute(
                    "INSERT INTO notifications (id, org_id, run_id, job_id, kind, event, target,"
                    " host, payload, secret, state, due_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                    (
                        row.id,
                        row.org_id,
                        row.run_id,
                        row.job_id,
                        row.kind,
                        row.event,
                        row.target,
                        row.host,
                        row.payload,
                        self._db.box.seal(row.secret),  # sealed at rest like every secret
                        stamp,
                        stamp,
                        stamp,
                    ),
                )
                count += 1
        return count

    # --- workers ------------------------------------------------------------------------

    def due(
        self, now: datetime, *, limit: int, skip_hosts: Collection[str] = ()
    ) -> list[tuple[str, str]]:
        """(id, host) of claimable rows, oldest due first, leaving out hosts that are busy
        (so a backlog for one slow host never hides the work for the others)."""
        sql = f"SELECT id, host FROM notifications WHERE {_CLAIMABLE}"
        params: list[Any] = [to_text(now)]
        if skip_hosts:
            sql += f" AND host NOT IN ({','.join('?' * len(skip_hosts))})"
            params += list(skip_hosts)
        rows = self._db.rows(sql + " ORDER BY due_at, seq LIMIT ?", [*params, limit])
        return [(r["id"], r["host"]) for r in rows]

    def _claim(
        self, condition: str, params: list[Any], owner: str, now: datetime, lease_until: datetime
    ) -> list[Claimed]:
        # One statement that both claims and returns: no window between choosing a row and
        # taking it, and one write per batch however many rows.
        with self._workers, self._db.write() as db:
            rows = db.conn.execute(
                "UPDATE notifications SET state = 'delivering', lease_owner = ?, due_at = ?,"
                f" attempts = attempts + 1, updated_at = ? WHERE {_CLAIMABLE} AND {condition}"
                f" RETURNING {_COLUMNS}, payload, secret",
                [owner, to_text(lease_until), to_text(now), to_text(now), *params],
            )
            names = [d[0] for d in rows.description]
            found = [dict(zip(names, row, strict=True)) for row in rows.fetchall()]
        return [
            Claimed(
                **_notification(row),
                payload=row["payload"],
                secret=self._db.box.open(row["secret"]),
            )
            for row in found
        ]

    def claim(
        self, ids: Collection[str], *, owner: str, now: datetime, lease_until: datetime
    ) -> list[Claimed]:
        """Claim these rows if still claimable (another worker may have been first)."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._claim(f"id IN ({marks})", list(ids), owner, now, lease_until)

    def claim_next(
        self, host: str, *, owner: str, now: datetime, lease_until: datetime
    ) -> Claimed | None:
        """Claim the row of ``host`` that has been due longest, if any."""
        found = self._claim(
            "seq = (SELECT seq FROM notifications WHERE host = ? AND"
            f" {_CLAIMABLE} ORDER BY due_at, seq LIMIT 1)",
            [host, to_text(now)],
            owner,
            now,
            lease_until,
        )
        return found[0] if found else None

    def due_hosts(self, now: datetime) -> list[str]:
        """Hosts with at least one claimable row."""
        rows = self._db.rows(
            f"SELECT DISTINCT host FROM notifications WHERE {_CLAIMABLE}", [to_text(now)]
        )
        return [r["host"] for r in rows]

    def claim_fair(
        self, host: str, *, limit: int, owner: str, now: datetime, lease_until: datetime
    ) -> list[Claimed]:
        """Claim up to ``limit`` due rows of ``host``, taking orgs in turn: each org's
        oldest row, then each org's second oldest, and so on. One org's burst of thousands
        then takes one place in each round, not the whole claim, and an alert of another
        org written after the burst is in the very next claim. Returned oldest first within
        each org."""
        found = self._claim(
            "seq IN (SELECT seq FROM (SELECT seq, due_at, ROW_NUMBER() OVER"
            " (PARTITION BY org_id ORDER BY due_at, seq) AS turn FROM notifications"
            f" WHERE host = ? AND {_CLAIMABLE}) ORDER BY turn, due_at, seq LIMIT ?)",
            [host, to_text(now), limit],
            owner,
            now,
            lease_until,
        )
        return sorted(found, key=lambda c: (c.created_at, c.id))

    def finish_many(self, done: Sequence[tuple[Claimed, AttemptRecord]], *, owner: str) -> int:
        """Record many attempts in one transaction (a burst delivers thousands a second;
        one write each would make SQLite's lock the limit). Returns how many rows this
        worker still held (the others' leases were lost; their attempts are recorded)."""
        if not done:
            return 0
        held = 0
        with self._workers, self._db.write():
            for claimed, attempt in done:
                held += self._finish(claimed, attempt, owner)
        return held

    def release(self, ids: Collection[str], *, owner: str, due_at: datetime) -> int:
        """Give back claimed rows that were never sent (a host asked to wait, or delivery
        stops): due again at ``due_at``, their claim not counted as an attempt."""
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        with self._workers, self._db.write() as db:
            cursor = db.conn.execute(
                "UPDATE notifications SET state = 'pending', due_at = ?, lease_owner = NULL,"
                " attempts = max(0, attempts - 1)"
                f" WHERE id IN ({marks}) AND lease_owner = ? AND state = 'delivering'",
                [to_text(due_at), *ids, owner],
            )
            return cursor.rowcount

    def finish_attempt(self, claimed: Claimed, attempt: AttemptRecord, *, owner: str) -> bool:
        """Record an attempt and move the row on. False when this worker's lease was lost
        (it expired and another worker claimed the row): the attempt is still recorded."""
        with self._workers, self._db.write():
            return self._finish(claimed, attempt, owner)

    def finish_and_claim_next(
        self, claimed: Claimed, attempt: AttemptRecord, *, owner: str, lease_until: datetime
    ) -> Claimed | None:
        """finish_attempt, then claim_next for the same host, in one transaction."""
        with self._workers, self._db.write():
            self._finish(claimed, attempt, owner)
            return self.claim_next(
                claimed.host, owner=owner, now=attempt.finished_at, lease_until=lease_until
            )

    def _finish(self, claimed: Claimed, attempt: AttemptRecord, owner: str) -> bool:
        conn = self._db.db.conn
        state = {"delivered": "delivered", "retry": "pending", "failed": "failed"}[attempt.outcome]
        now = attempt.finished_at
        conn.execute(
            "INSERT OR REPLACE INTO notification_attempts (notification_id, attempt,"
            " started_at, duration_ms, status_code, error, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                claimed.id,
                claimed.attempts,
                to_text(attempt.started_at),
                max(0, int((now - attempt.started_at).total_seconds() * 1000)),
                attempt.status_code,
                attempt.error,
                attempt.outcome,
            ),
        )
        cursor = conn.execute(
            "UPDATE notifications SET state = ?, due_at = ?, lease_owner = NULL,"
            " last_status_code = ?, last_error = ?, throttled = throttled + ?,"
            " updated_at = ?, delivered_at = ?,"
            # A delivered notification needs its copy of the secret no more.
            " secret = CASE WHEN ? = 'delivered' THEN NULL ELSE secret END"
            " WHERE id = ? AND lease_owner = ? AND state = 'delivering'",
            (
                state,
                to_text(attempt.next_due or now),
                attempt.status_code,
                attempt.error,
                1 if attempt.throttled else 0,
                to_text(now),
                to_text(now) if attempt.outcome == "delivered" else None,
                state,
                claimed.id,
                owner,
            ),
        )
        return cursor.rowcount == 1

    def next_due(self) -> datetime | None:
        """When the next row becomes claimable (pending or with a lease that ends)."""
        found = self._db.scalar(
            "SELECT min(due_at) FROM notifications WHERE state IN ('pending', 'delivering')"
        )
        return from_text(found) if found else None

    # --- reading and retrying -----------------------------------------------------------

    def for_run(self, run_id: str) -> list[Notification]:
        rows = self._db.rows(
            f"SELECT {_COLUMNS} FROM notifications WHERE run_id = ? ORDER BY seq", (run_id,)
        )
        return [Notification(**_notification(r)) for r in rows]

    def for_job(
        self, org_id: str, job_id: str, *, before: int | None, limit: int
    ) -> tuple[list[JobNotification], int | None]:
        """A page of the job's notifications, newest first: its runs' and its run-less
        silence alerts'. Returns the page and the position (seq) to continue before, if
        more remain. ``org_id`` too, though job ids are unique: a row is only ever read
        for its own organization."""
        sql = (
            f"SELECT seq, {_COLUMNS}, CASE WHEN event = 'missed' THEN payload END AS body"
            " FROM notifications WHERE org_id = ? AND job_id = ?"
        )
        params: list[Any] = [org_id, job_id]
        if before is not None:
            sql += " AND seq < ?"
            params.append(before)
        rows = self._db.rows(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit + 1])
        page = [JobNotification(**_notification(r), slot=_slot(r["body"])) for r in rows[:limit]]
        more = len(rows) > limit
        return page, (int(rows[limit - 1]["seq"]) if more else None)

    def get(self, run_id: str, notification_id: str) -> Notification | None:
        row = self._db.row(
            f"SELECT {_COLUMNS} FROM notifications WHERE id = ? AND run_id = ?",
            (notification_id, run_id),
        )
        return Notification(**_notification(row)) if row else None

    def attempts(self, notification_ids: Collection[str]) -> dict[str, list[Attempt]]:
        found: dict[str, list[Attempt]] = {i: [] for i in notification_ids}
        if not notification_ids:
            return found
        marks = ",".join("?" * len(notification_ids))
        for row in self._db.rows(
            "SELECT notification_id, attempt, started_at, duration_ms, status_code, error,"
            f" outcome FROM notification_attempts WHERE notification_id IN ({marks})"
            " ORDER BY notification_id, attempt",
            list(notification_ids),
        ):
            found[row["notification_id"]].append(
                Attempt(
                    attempt=row["attempt"],
                    started_at=from_text(row["started_at"]),
                    duration_ms=row["duration_ms"],
                    status_code=row["status_code"],
                    error=row["error"],
                    outcome=row["outcome"],
                )
            )
        return found

    def retry(self, notification_id: str, now: datetime) -> bool:
        """Make a permanently failed notification due again with a fresh retry budget
        (attempts keep counting, so its history stays readable)."""
        with self._db.write() as db:
            cursor = db.conn.execute(
                "UPDATE notifications SET state = 'pending', due_at = ?, updated_at = ?,"
                " budget_start = attempts, throttled = 0 WHERE id = ? AND state = 'failed'",
                (to_text(now), to_text(now), notification_id),
            )
            return cursor.rowcount == 1

    # --- retention (app/services/retention.py) ------------------------------------------

    def old_runless(self, cutoff: datetime, limit: int) -> list[int]:
        """Run-less notifications (silence alerts about a slot without a run) created
        before ``cutoff`` and done with (delivered or failed for good), oldest first, at
        most ``limit`` (their seq). A run's notifications go with the run (ON DELETE
        CASCADE); these have no run, so retention deletes them itself."""
        rows = self._db.rows(
            "SELECT seq FROM notifications WHERE run_id IS NULL AND created_at < ?"
            " AND state IN ('delivered', 'failed') ORDER BY seq LIMIT ?",
            (to_text(cutoff), limit),
        )
        return [int(r["seq"]) for r in rows]

    def delete_runless(self, seqs: Sequence[int]) -> int:
        """Delete these (still run-less and done) in one short transaction; their attempts
        go with them (ON DELETE CASCADE)."""
        if not seqs:
            return 0
        marks = ",".join("?" * len(seqs))
        with self._db.write() as db:
            return db.conn.execute(
                f"DELETE FROM notifications WHERE seq IN ({marks}) AND run_id IS NULL"
                " AND state IN ('delivered', 'failed')",
                list(seqs),
            ).rowcount

    def prune_alert_records(
        self, cutoff: datetime, never_checked_before: datetime, limit: int
    ) -> int:
        """Delete up to ``limit`` rows of ``silence_alerts`` (the once-per-slot records of
        app/store/silence.py) written before ``cutoff`` that can never be needed again.

        Those rows are what makes an alert go out once: the checker inserts one before
        writing the alert and sends nothing when it is already there. So a row may go only
        when the checker can never look at its slot or run again:

        * ``missed`` (key: the slot): the checker looks only at slots after the job's
          watermark (``silence_state.checked_until``), which only moves forward; when the
          job stops being watched the watermark is dropped, and watching it again starts
          at now minus the threshold (a week at most). A slot at or before the watermark
          and older than ``never_checked_before`` (now minus the longest threshold) is
          never looked at again.
        * ``overdue`` (key: the run): only running runs are checked, and a run that ended
          (or was deleted) never runs again.

        The same module as the run-less notifications, as both are retention's and pruned
        together; the rows are small, so a batch is one short statement."""
        with self._db.write() as db:
            return db.conn.execute(
                "DELETE FROM silence_alerts WHERE (job_id, event, key) IN ("
                " SELECT a.job_id, a.event, a.key FROM silence_alerts AS a"
                " LEFT JOIN silence_state AS s ON s.job_id = a.job_id"
                " LEFT JOIN runs AS r ON r.id = a.key"
                " WHERE a.created_at < ? AND ("
                "  (a.event = 'missed' AND a.key < ?"
                "   AND (s.checked_until IS NULL OR a.key <= s.checked_until))"
                "  OR (a.event = 'overdue' AND (r.id IS NULL OR r.status != 'running')))"
                " LIMIT ?)",
                (to_text(cutoff), to_text(never_checked_before), limit),
            ).rowcount

    def counts_by_kind(self) -> list[tuple[str, str, int]]:
        """(kind, state, count) over every notification, for the metrics."""
        rows = self._db.rows(
            "SELECT kind, state, count(*) AS n FROM notifications GROUP BY kind, state"
        )
        return [(r["kind"], r["state"], int(r["n"])) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db.rows("SELECT state, count(*) AS n FROM notifications GROUP BY state")
        return {r["state"]: r["n"] for r in rows}


class _AlertBody(msgspec.Struct):
    """What a stored alert payload tells of its slot: a webhook body has it (``slot``);
    a Slack message shows it in a field, to the minute, which is exact, as schedules have
    no seconds (app/cron.py)."""

    slot: datetime | None = None
    blocks: list[dict[str, Any]] = []


_SLOT_FIELD = "*Slot*\n"


def _slot(body: bytes | None) -> datetime | None:
    """The slot of a ``missed`` alert, from its stored payload (the notifications table
    has no column of its own for it); None when there is none to read."""
    if not body:
        return None
    try:
        decoded = msgspec.json.decode(body, type=_AlertBody)
    except msgspec.DecodeError:
        return None
    if decoded.slot is not None:
        return decoded.slot.astimezone(UTC)
    for block in decoded.blocks:
        fields = block.get("fields")
        for field in fields if isinstance(fields, list) else []:
            text = field.get("text") if isinstance(field, dict) else None
            if isinstance(text, str) and text.startswith(_SLOT_FIELD):
                try:
                    found = datetime.strptime(text[len(_SLOT_FIELD) :], "%Y-%m-%d %H:%M UTC")
                except ValueError:
                    return None
                return found.replace(tzinfo=UTC)
    return None
