"""``crm.sequences``: drip sequences — save them, enroll contacts, and send each step when it
falls due through the channel layer.

Sending is time-driven: :meth:`Sequences.tick` (``crmkit sequences tick``, and the worker
through ``crmkit_worker_tick``) finds the enrollments whose ``next_step_at`` has passed,
checks the exit conditions, sends the step with ``crm.messages.send`` under the idempotency key
``seq:<enrollment id>:<step>`` and moves the enrollment on. Two ticks racing over one
enrollment therefore send its step once (the second send returns the first message) and only
one of them advances it (the update checks the version). Exit conditions are also applied as
soon as their events arrive (:meth:`Sequences.handle`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.automation.service import load_definitions
from crmkit.domain import Event
from crmkit.domain.values import new_id, utcnow
from crmkit.errors import ConflictError, CRMError, NotFound, ValidationFailed
from crmkit.sequences import exits
from crmkit.sequences.definition import Draft, Sequence, Step, parse_definition
from crmkit.sequences.tables import ENROLLMENTS, SEQUENCES
from crmkit.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

EVENT_TYPES = {
    "sequence.saved": "a sequence was created or replaced (data: name, steps)",
    "sequence.removed": "a sequence was deleted with its enrollments (data: name)",
    "sequence.enrolled": "a contact was enrolled in a sequence (subject: the enrollment; data: sequence, contact_id)",
    "sequence.step_sent": "a sequence step was handed to the channel layer (data: sequence, contact_id, step, message_id, status)",
    "sequence.completed": "an enrollment sent its last step (data: sequence, contact_id)",
    "sequence.exited": "an enrollment ended early: replied, converted, unsubscribed or undeliverable (data: reason, detail)",
    "sequence.unenrolled": "a contact was taken out of a sequence by hand (data: sequence, contact_id)",
}
STATUSES = ("active", "completed", "exited", "unenrolled")
#: Events the subscriber looks at; everything else passes by.
HANDLED_EVENTS = frozenset({"activity.logged", "contact.updated", "deal.won", "consent.recorded", "message.receipt",
                            "contact.merged", "contact.merge_undone"})
TICK_LIMIT = 500


@attrs.frozen(kw_only=True)
class Enrollment:
    id: str
    sequence_id: str
    sequence: str
    contact_id: str
    status: str
    step: int  # the next step to send (0-based); the number of steps sent so far
    next_step_at: datetime | None
    enrolled_at: datetime
    last_step_at: datetime | None
    ended_at: datetime | None
    exit_reason: str | None
    exit_detail: str | None
    version: int


@attrs.define
class TickReport:
    """What one tick did: enrollments found due, steps sent (or vetoed by a rule that does not
    end the sequence), enrollments exited and completed, and failures left for the next tick."""

    due: int = 0
    sent: int = 0
    vetoed: int = 0
    exited: int = 0
    completed: int = 0
    failed: int = 0


def load_definition(path: str | Path) -> Any:
    """A sequence definition from a TOML or JSON file (read like automation rule files)."""
    found = load_definitions(path)
    if len(found) != 1:
        raise ValidationFailed.single("file", "invalid", f"{path}: a sequence file holds one sequence, found {len(found)}")
    return found[0]


class Sequences:
    """Created at start-up by :mod:`crmkit.builtin.sequences_plugin`."""

    def __init__(self, crm: CRM):
        self.crm = crm

    def table(self, name: str) -> sa.Table:
        table = self.crm.backend.metadata.tables.get(name)
        if table is None:
            raise CRMError(f"sequences are unavailable: table {name!r} is missing (is the built-in plugin crmkit.builtin.sequences_plugin disabled?)")
        return table

    # --- definitions --------------------------------------------------------------------

    def validate(self, definition: Any) -> Draft:
        """Check a definition without saving anything."""
        return parse_definition(definition, self.crm)

    def save(self, definition: Any, *, replace: bool = False, actor: str | None = None) -> Sequence:
        """Save a sequence: its inline step messages as templates (through the channel layer),
        then the sequence. With ``replace`` an existing sequence of the name gets the new steps;
        its active enrollments carry on at the step they reached.

        :raises ValidationFailed: every problem with the definition (``steps[1].body`` …), or
            the name exists and ``replace`` is false. Nothing is saved then.
        """
        draft = self.validate(definition)
        t = self.table(SEQUENCES)
        with self.crm.read() as uow:
            existing = uow.connection.execute(sa.select(t).where(t.c.name == draft.name)).first()  # type: ignore[union-attr]
        if existing is not None and not replace:
            raise ValidationFailed.single("name", "exists", f"a sequence named {draft.name!r} exists already (replace it to change it)")
        for name, body, subject, channel in draft.new_templates:
            self.crm.messages.save_template(name, body, subject=subject, channel=channel, actor=actor)
        now = utcnow()
        values = {"description": draft.description, "steps": [attrs.asdict(s) for s in draft.steps], "exit_on": list(draft.exit_on),
                  "updated_at": now}
        with self.crm.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            if existing is None:
                ident = new_id()
                conn.execute(sa.insert(t).values(id=ident, name=draft.name, created_at=now, version=1, **values))
            else:
                ident = existing.id
                if conn.execute(sa.update(t).where(t.c.id == ident, t.c.version == existing.version)
                                .values(version=existing.version + 1, **values)).rowcount != 1:
                    raise ConflictError("sequence", draft.name, existing.version)
            uow.emit("sequence.saved", ident, {"name": draft.name, "steps": values["steps"]})
        return self.get(ident)

    def _sequence(self, row: Any) -> Sequence:
        return Sequence(id=row.id, name=row.name, description=row.description, steps=tuple(Step(**s) for s in row.steps),
                        exit_on=tuple(row.exit_on), created_at=row.created_at, updated_at=row.updated_at, version=row.version)

    def _find(self, conn: sa.Connection, name_or_id: str) -> Sequence:
        t = self.table(SEQUENCES)
        row = conn.execute(sa.select(t).where(sa.or_(t.c.name == name_or_id, t.c.id == name_or_id))).first()
        if row is None:
            raise NotFound("sequence", name_or_id)
        return self._sequence(row)

    def get(self, name_or_id: str) -> Sequence:
        with self.crm.read() as uow:
            return self._find(uow.connection, name_or_id)  # type: ignore[arg-type]

    def list(self) -> list[Sequence]:
        t = self.table(SEQUENCES)
        with self.crm.read() as uow:
            return [self._sequence(row) for row in uow.connection.execute(sa.select(t).order_by(t.c.name))]  # type: ignore[union-attr]

    def remove(self, name_or_id: str, *, actor: str | None = None) -> Sequence:
        """Delete a sequence and its enrollments (messages already sent stay in the log)."""
        sequence = self.get(name_or_id)
        t, e = self.table(SEQUENCES), self.table(ENROLLMENTS)
        with self.crm.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            conn.execute(sa.delete(e).where(e.c.sequence_id == sequence.id))
            conn.execute(sa.delete(t).where(t.c.id == sequence.id))
            uow.emit("sequence.removed", sequence.id, {"name": sequence.name})
        return sequence

    # --- enrollments --------------------------------------------------------------------

    def _enrollments(self, conn: sa.Connection, *conditions: sa.ColumnElement[bool], limit: int | None = None,
                     by: str = "enrolled_at") -> list[Enrollment]:
        e, t = self.table(ENROLLMENTS), self.table(SEQUENCES)
        stmt = (sa.select(e, t.c.name.label("sequence")).join(t, t.c.id == e.c.sequence_id).where(*conditions)
                .order_by(e.c[by], e.c.id).limit(limit))
        names = {f.name for f in attrs.fields(Enrollment)}
        return [Enrollment(**{k: v for k, v in row._mapping.items() if k in names}) for row in conn.execute(stmt)]

    def enrollment(self, enrollment_id: str) -> Enrollment:
        e = self.table(ENROLLMENTS)
        with self.crm.read() as uow:
            found = self._enrollments(uow.connection, e.c.id == enrollment_id)  # type: ignore[arg-type]
        if not found:
            raise NotFound("enrollment", enrollment_id)
        return found[0]

    def enrollments(self, *, sequence: str | None = None, contact_id: str | None = None, status: str | None = None,
                    limit: int | None = 100) -> list[Enrollment]:
        e = self.table(ENROLLMENTS)
        if status is not None and status not in STATUSES:
            raise ValidationFailed.single("status", "invalid", f"{status!r} is not one of {', '.join(STATUSES)}")
        with self.crm.read() as uow:
            conn = uow.connection
            assert conn is not None
            conditions = [e.c.sequence_id == self._find(conn, sequence).id] if sequence is not None else []
            conditions += [e.c.contact_id == contact_id] if contact_id is not None else []
            conditions += [e.c.status == status] if status is not None else []
            return self._enrollments(conn, *conditions, limit=limit)

    def enroll(self, sequence: str, contact_id: str, *, now: datetime | None = None, actor: str | None = None) -> Enrollment:
        """Enroll a contact; idempotent: while the contact has an active enrollment in the
        sequence, that one is returned and nothing changes. After it ended (completed,
        exited, unenrolled) a new enrollment starts from the first step."""
        try:
            with self.crm.uow(actor) as uow:
                ident = self.enroll_in(uow, sequence, contact_id, now=now)
        except sa.exc.IntegrityError:
            # Enrolled concurrently: the unique (sequence, active contact) refused the second.
            active = self.enrollments(sequence=sequence, contact_id=contact_id, status="active", limit=1)
            if not active:
                raise
            return active[0]
        return self.enrollment(ident)

    def enroll_in(self, uow: UnitOfWork, sequence: str, contact_id: str, *, now: datetime | None = None) -> str:
        """:meth:`enroll` inside the caller's unit of work (an automation action's); the
        enrollment's id."""
        conn = uow.connection
        assert conn is not None
        found = self._find(conn, sequence)
        if uow.contacts.find(contact_id) is None:
            raise ValidationFailed.single("contact_id", "not_found", f"no contact {contact_id!r}")
        e = self.table(ENROLLMENTS)
        active = conn.execute(sa.select(e.c.id).where(e.c.sequence_id == found.id, e.c.active_key == contact_id)).first()
        if active is not None:
            return str(active.id)
        at, ident = now or utcnow(), new_id()
        conn.execute(sa.insert(e).values(
            id=ident, sequence_id=found.id, contact_id=contact_id, active_key=contact_id, status="active", step=0,
            next_step_at=found.steps[0].due(at, None), enrolled_at=at, updated_at=at, version=1,
        ))
        uow.emit("sequence.enrolled", ident, {"sequence": found.name, "sequence_id": found.id, "contact_id": contact_id})
        return ident

    def unenroll(self, sequence: str, contact_id: str, *, actor: str | None = None, now: datetime | None = None) -> Enrollment:
        """End a contact's active enrollment by hand; NotFound when there is none."""
        active = self.enrollments(sequence=sequence, contact_id=contact_id, status="active", limit=1)
        if not active:
            raise NotFound("active enrollment", f"{contact_id} in {sequence}")
        with self.crm.uow(actor) as uow:
            self._end(uow, active[0], "unenrolled", None, None, now or utcnow())
        return self.enrollment(active[0].id)

    def _end(self, uow: UnitOfWork, enrollment: Enrollment, status: str, reason: str | None, detail: str | None, at: datetime,
             *, expected_version: int | None = None) -> bool:
        """End an active enrollment; False when it was not active (or not at the version)."""
        e = self.table(ENROLLMENTS)
        stmt = sa.update(e).where(e.c.id == enrollment.id, e.c.status == "active")
        if expected_version is not None:
            stmt = stmt.where(e.c.version == expected_version)
        done = uow.connection.execute(stmt.values(  # type: ignore[union-attr]
            status=status, active_key=None, next_step_at=None, ended_at=at, exit_reason=reason, exit_detail=detail,
            updated_at=at, version=e.c.version + 1,
        )).rowcount
        if done:
            event = {"completed": "sequence.completed", "exited": "sequence.exited", "unenrolled": "sequence.unenrolled"}[status]
            uow.emit(event, enrollment.id, {"sequence": enrollment.sequence, "sequence_id": enrollment.sequence_id,
                                            "contact_id": enrollment.contact_id, "reason": reason, "detail": detail})
        return bool(done)

    # --- sending ------------------------------------------------------------------------

    def tick(self, now: datetime | None = None, *, limit: int = TICK_LIMIT) -> TickReport:
        """Send every step due at ``now`` (at most ``limit`` enrollments; the rest next time).

        Safe to run from several processes at once and as often as wanted: a step is sent
        once per enrollment whatever happens.
        """
        at, report = now or utcnow(), TickReport()
        e = self.table(ENROLLMENTS)
        with self.crm.read() as uow:
            due = self._enrollments(uow.connection, e.c.next_step_at <= at, e.c.status == "active", limit=limit, by="next_step_at")  # type: ignore[arg-type]
        report.due = len(due)
        for enrollment in due:
            try:
                outcome = self._advance(enrollment, at)
            except Exception:
                # The database or a channel failing for one contact must not hold up the others;
                # the enrollment stays due and the next tick tries again.
                log.exception("sequence %r: step %d for contact %s failed", enrollment.sequence, enrollment.step + 1, enrollment.contact_id)
                outcome = "failed"
            if outcome:
                setattr(report, outcome, getattr(report, outcome) + 1)
        return report

    def _advance(self, enrollment: Enrollment, at: datetime) -> str | None:
        """Exit, send or complete one due enrollment; the outcome's TickReport field."""
        with self.crm.read() as uow:
            conn = uow.connection
            assert conn is not None
            sequence = self._find(conn, enrollment.sequence_id)
            reason = self._exit_reason(conn, sequence, enrollment)
        if reason is not None:
            return self._finish(enrollment, "exited", reason, None, at)
        if enrollment.step >= len(sequence.steps):  # the sequence was replaced by a shorter one
            return self._finish(enrollment, "completed", None, None, at)
        step = sequence.steps[enrollment.step]
        try:
            message = self.crm.messages.send(enrollment.contact_id, step.channel, template=step.template, purpose=step.purpose,
                                             idempotency_key=f"seq:{enrollment.id}:{enrollment.step}", now=at)
        except (ValidationFailed, NotFound) as exc:  # no address on this channel, the template deleted …
            return self._finish(enrollment, "exited", "undeliverable", str(exc), at)
        veto = exits.unsubscribing_veto(message)
        if veto is not None and "unsubscribed" in sequence.exit_on:
            return self._finish(enrollment, "exited", "unsubscribed", veto, at)
        following = enrollment.step + 1
        e = self.table(ENROLLMENTS)
        with self.crm.uow() as uow:
            values: dict[str, Any] = {"step": following, "last_step_at": at, "updated_at": at, "version": e.c.version + 1}
            if following < len(sequence.steps):
                values["next_step_at"] = sequence.steps[following].due(enrollment.enrolled_at, at)
            moved = uow.connection.execute(sa.update(e).where(  # type: ignore[union-attr]
                e.c.id == enrollment.id, e.c.status == "active", e.c.version == enrollment.version).values(**values)).rowcount
            if not moved:
                return None  # another tick advanced it (and sent the same message: same key)
            uow.emit("sequence.step_sent", enrollment.id, {
                "sequence": sequence.name, "sequence_id": sequence.id, "contact_id": enrollment.contact_id, "step": following,
                "message_id": message["id"], "status": message["status"],
            })
            if following >= len(sequence.steps):
                self._end(uow, attrs.evolve(enrollment, version=enrollment.version + 1), "completed", None, None, at)
        return "vetoed" if message["status"] == "vetoed" else "sent"

    def _finish(self, enrollment: Enrollment, status: str, reason: str | None, detail: str | None, at: datetime) -> str | None:
        with self.crm.uow() as uow:
            ended = self._end(uow, enrollment, status, reason, detail, at, expected_version=enrollment.version)
        return ("exited" if status == "exited" else "completed") if ended else None

    def _exit_reason(self, conn: sa.Connection, sequence: Sequence, enrollment: Enrollment) -> str | None:
        tables = self.crm.backend.metadata.tables
        if "replied" in sequence.exit_on and exits.replied(conn, tables, enrollment.contact_id, enrollment.enrolled_at):
            return "replied"
        if "converted" in sequence.exit_on and exits.converted(conn, tables, enrollment.contact_id):
            return "converted"
        return None

    # --- events -------------------------------------------------------------------------

    def handle(self, event: Event) -> int:
        """Exit enrollments as soon as a reply, conversion or unsubscribe is recorded, and
        reconcile enrollments a merge moved; how many enrollments ended."""
        if event.type not in HANDLED_EVENTS:
            return 0
        data: Mapping[str, Any] = event.data if isinstance(event.data, Mapping) else {}
        if event.type in ("contact.merged", "contact.merge_undone"):
            self.reconcile([i for i in (data.get("survivor_id"), data.get("duplicate_id")) if isinstance(i, str)])
            return 0
        if event.type == "activity.logged":
            if not exits.is_reply(data.get("kind"), data.get("direction")) or not isinstance(data.get("contact_id"), str):
                return 0
            occurred = _when(data.get("occurred_at"))
            return self._exit_where(data["contact_id"], "replied", f"{data.get('kind')} activity {event.subject_id}",
                                    lambda s, e: occurred is None or occurred >= e.enrolled_at)
        if event.type == "contact.updated" and isinstance(event.subject_id, str):
            return self._exit_if_converted(event.subject_id, "lifecycle stage reached")
        if event.type == "deal.won" and isinstance(event.subject_id, str):
            deal = self.crm.deals.find(event.subject_id)
            return 0 if deal is None or deal.contact_id is None else self._exit_if_converted(deal.contact_id, f"deal {deal.id} won")
        if event.type == "consent.recorded" and data.get("status") == "withdrawn" and isinstance(event.subject_id, str):
            channel, purpose = data.get("channel"), data.get("purpose")
            return self._exit_where(event.subject_id, "unsubscribed", f"consent withdrawn for {channel} / {purpose}",
                                    lambda s, e: s.uses(str(channel), str(purpose)))
        if event.type == "message.receipt" and data.get("receipt") in exits.UNSUBSCRIBING_RECEIPTS and isinstance(data.get("contact_id"), str):
            channel = str(data.get("channel"))
            return self._exit_where(data["contact_id"], "unsubscribed", f"{channel}: {data.get('receipt')}", lambda s, e: s.uses(channel))
        return 0

    def _exit_if_converted(self, contact_id: str, detail: str) -> int:
        tables = self.crm.backend.metadata.tables
        return self._exit_where(contact_id, "converted", detail, lambda s, e: True,
                                precondition=lambda conn: exits.converted(conn, tables, contact_id))

    def _exit_where(self, contact_id: str, reason: str, detail: str, applies: Callable[[Sequence, Enrollment], bool],
                    precondition: Callable[[sa.Connection], bool] | None = None) -> int:
        """End the contact's active enrollments whose sequence exits on ``reason`` and for
        which ``applies(sequence, enrollment)``. ``precondition`` is only checked when the
        contact has an active enrollment (most events concern contacts in no sequence)."""
        e, at, ended = self.table(ENROLLMENTS), utcnow(), 0
        with self.crm.read() as uow:  # no write transaction for the many contacts in no sequence
            if not self._enrollments(uow.connection, e.c.contact_id == contact_id, e.c.status == "active", limit=1):  # type: ignore[arg-type]
                return 0
        with self.crm.uow() as uow:
            conn = uow.connection
            assert conn is not None
            active = self._enrollments(conn, e.c.contact_id == contact_id, e.c.status == "active")
            if not active or (precondition is not None and not precondition(conn)):
                return 0
            for enrollment in active:
                sequence = self._find(conn, enrollment.sequence_id)
                if reason in sequence.exit_on and applies(sequence, enrollment):
                    ended += self._end(uow, enrollment, "exited", reason, detail, at)
        return ended

    def reconcile(self, contact_ids: Iterable[str]) -> None:
        """After a merge (or its undo) moved enrollments between contacts, keep one active
        enrollment per contact and sequence: a moved one whose contact already had its own
        ends as ``merged``, the others are re-keyed to their contact."""
        e, at = self.table(ENROLLMENTS), utcnow()
        with self.crm.uow() as uow:
            conn = uow.connection
            assert conn is not None
            rows = conn.execute(sa.select(e.c.id, e.c.sequence_id, e.c.contact_id, e.c.active_key).where(
                e.c.contact_id.in_(list(contact_ids)), e.c.status == "active").order_by(e.c.enrolled_at, e.c.id)).all()
            keyed = {(r.sequence_id, r.contact_id) for r in rows if r.active_key == r.contact_id}
            for row in rows:
                if row.active_key == row.contact_id:
                    continue
                if (row.sequence_id, row.contact_id) in keyed:
                    enrollment = self._enrollments(conn, e.c.id == row.id)[0]
                    self._end(uow, enrollment, "exited", "merged", "the contact was merged with one already enrolled", at)
                else:
                    conn.execute(sa.update(e).where(e.c.id == row.id).values(active_key=row.contact_id, version=e.c.version + 1, updated_at=at))
                    keyed.add((row.sequence_id, row.contact_id))

    # --- personal data ------------------------------------------------------------------

    def forget(self, uow: UnitOfWork, contact_id: str) -> None:
        e = self.table(ENROLLMENTS)
        uow.connection.execute(sa.delete(e).where(e.c.contact_id == contact_id))  # type: ignore[union-attr]


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def sequences(crm: CRM) -> Sequences:
    """``crm.sequences`` (set at start-up), or a new one for a CRM still starting."""
    existing = getattr(crm, "sequences", None)
    return existing if isinstance(existing, Sequences) else Sequences(crm)
