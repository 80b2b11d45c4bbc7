"""``crm.segments``: named, saved filters over contacts whose membership is kept current from
contact events, not from a cron job.

Two paths compute the same membership:

* **rebuild** (on save, and ``crm.segments.rebuild(name)``): the condition compiled to a SQL
  ``WHERE`` clause finds, set-based, who enters and who leaves;
* **incremental** (the ``crmkit_handle_event`` subscriber): when a contact is created,
  updated, merged, erased or deleted, its row is read and the condition evaluated in Python
  against every segment.

Every change of membership emits ``segment.entered`` / ``segment.left`` in the transaction
that records it, so automation rules, webhooks and the audit log see it. The incremental path
reads the contact as stored, not the event's data, so events arriving late or out of order
still leave the membership right.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.domain import Contact, Event
from crmkit.domain.values import new_id, utcnow
from crmkit.errors import ConflictError, CRMError, FieldIssue, NotFound, ValidationFailed
from crmkit.segments.conditions import SegmentCondition, compile_condition
from crmkit.segments.tables import MEMBERS, SEGMENTS
from crmkit.storage.sql.mapping import from_row
from crmkit.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from crmkit.app import CRM

EVENT_TYPES = {
    "segment.saved": "a segment was created or its condition replaced (data: name, conditions)",
    "segment.removed": "a segment was deleted with its membership (data: name)",
    "segment.entered": "a contact started matching a segment (subject: the contact; data: segment, segment_id)",
    "segment.left": "a contact stopped matching a segment, or was merged away or deleted (subject: the contact; data: segment, segment_id)",
}
#: Events after which a contact's memberships are looked at again, and where its ids are.
CONTACT_EVENTS = frozenset({"contact.created", "contact.updated", "contact.deleted", "contact.erased", "contact.merged", "contact.merge_undone"})
_CHUNK = 500  # ids per IN (…) list or insert batch: far below every backend's parameter limit


@attrs.frozen(kw_only=True)
class Segment:
    id: str
    name: str
    description: str | None
    conditions: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    rebuilt_at: datetime | None
    version: int


@attrs.frozen
class MembershipChange:
    """What one rebuild or refresh changed: contact ids that entered and left, per segment name."""

    entered: dict[str, list[str]] = attrs.field(factory=dict)
    left: dict[str, list[str]] = attrs.field(factory=dict)

    def counts(self) -> dict[str, int]:
        return {"entered": sum(map(len, self.entered.values())), "left": sum(map(len, self.left.values()))}


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 100:
        raise ValidationFailed.single("name", "invalid", "a segment name is 1 to 100 characters")
    return value.strip()


class Segments:
    """Created at start-up by :mod:`crmkit.builtin.segments_plugin`."""

    def __init__(self, crm: CRM):
        self.crm = crm
        self._compiled: dict[tuple[str, int], SegmentCondition] = {}

    # --- wiring -------------------------------------------------------------------------

    def table(self, name: str) -> sa.Table:
        table = self.crm.backend.metadata.tables.get(name)
        if table is None:
            raise CRMError(f"segments are unavailable: table {name!r} is missing (is the built-in plugin crmkit.builtin.segments_plugin disabled?)")
        return table

    @property
    def dialect(self) -> str:
        return self.crm.backend.engine.dialect.name

    def _segment(self, row: Any) -> Segment:
        return Segment(id=row.id, name=row.name, description=row.description, conditions=row.conditions,
                       created_at=row.created_at, updated_at=row.updated_at, rebuilt_at=row.rebuilt_at, version=row.version)

    def condition(self, segment: Segment) -> SegmentCondition:
        """A segment's compiled condition (checked when saved; compiled once per version)."""
        key = (segment.id, segment.version)
        if key not in self._compiled:
            self._compiled[key] = compile_condition(segment.conditions)
        return self._compiled[key]

    # --- definitions --------------------------------------------------------------------

    def validate(self, conditions: Any) -> SegmentCondition:
        """Check a condition without saving anything."""
        return compile_condition(conditions)

    def save(self, name: str, conditions: Any, *, description: str | None = None, replace: bool = False,
             actor: str | None = None, now: datetime | None = None) -> Segment:
        """Create a segment (or, with ``replace``, change one's condition) and build its
        membership, all in one transaction.

        :raises ValidationFailed: a bad name or condition (every issue, each naming its
            place, e.g. ``where.all[1].field``), or the name exists and ``replace`` is false.
        """
        issues: list[FieldIssue] = []
        clean_name = condition = None
        try:
            clean_name = _name(name)
        except ValidationFailed as exc:
            issues.extend(exc.issues)
        try:
            condition = compile_condition(conditions)
        except ValidationFailed as exc:
            issues.extend(exc.issues)
        if description is not None and (not isinstance(description, str) or len(description) > 2000):
            issues.append(FieldIssue("description", "invalid", "a description is text of at most 2000 characters"))
        if issues:
            raise ValidationFailed(issues)
        assert clean_name is not None and condition is not None
        t, at = self.table(SEGMENTS), now or utcnow()
        with self.crm.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            existing = conn.execute(sa.select(t).where(t.c.name == clean_name)).first()
            values = {"description": description, "conditions": condition.as_data(), "updated_at": at}
            if existing is None:
                ident = new_id()
                conn.execute(sa.insert(t).values(id=ident, name=clean_name, created_at=at, version=1, **values))
            elif not replace:
                raise ValidationFailed.single("name", "exists", f"a segment named {clean_name!r} exists already (replace it to change its condition)")
            else:
                ident = existing.id
                done = conn.execute(sa.update(t).where(t.c.id == ident, t.c.version == existing.version)
                                    .values(version=existing.version + 1, **values)).rowcount
                if done != 1:
                    raise ConflictError("segment", clean_name, existing.version)
            uow.emit("segment.saved", ident, {"name": clean_name, "conditions": condition.as_data()})
            segment = self._segment(conn.execute(sa.select(t).where(t.c.id == ident)).one())
            self._rebuild_in(uow, segment, at)
        return self.get(clean_name)

    def get(self, name_or_id: str) -> Segment:
        t = self.table(SEGMENTS)
        with self.crm.read() as uow:
            row = uow.connection.execute(sa.select(t).where(sa.or_(t.c.name == name_or_id, t.c.id == name_or_id))).first()  # type: ignore[union-attr]
        if row is None:
            raise NotFound("segment", name_or_id)
        return self._segment(row)

    def list(self) -> list[Segment]:
        t = self.table(SEGMENTS)
        with self.crm.read() as uow:
            return [self._segment(row) for row in uow.connection.execute(sa.select(t).order_by(t.c.name))]  # type: ignore[union-attr]

    def remove(self, name_or_id: str, *, actor: str | None = None) -> Segment:
        """Delete a segment and its membership (no ``segment.left`` per member: the segment
        is gone, ``segment.removed`` says so)."""
        segment = self.get(name_or_id)
        t, m = self.table(SEGMENTS), self.table(MEMBERS)
        with self.crm.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            conn.execute(sa.delete(m).where(m.c.segment_id == segment.id))  # not left to the cascade: SQLite may run without it
            conn.execute(sa.delete(t).where(t.c.id == segment.id))
            uow.emit("segment.removed", segment.id, {"name": segment.name})
        return segment

    # --- membership ---------------------------------------------------------------------

    def members(self, name_or_id: str, *, limit: int | None = None) -> list[Contact]:
        """The contacts in a segment, in the order they entered."""
        segment = self.get(name_or_id)
        m = self.table(MEMBERS)
        with self.crm.read() as uow:
            c = uow.contacts.table
            stmt = (sa.select(c).join(m, m.c.contact_id == c.c.id).where(m.c.segment_id == segment.id)
                    .order_by(m.c.entered_at, m.c.contact_id).limit(limit))
            return [from_row(Contact, row) for row in uow.connection.execute(stmt)]  # type: ignore[union-attr]

    def member_ids(self, name_or_id: str) -> set[str]:
        """Ids held in the membership table (kept by events and rebuilds)."""
        segment = self.get(name_or_id)
        m = self.table(MEMBERS)
        with self.crm.read() as uow:
            return set(uow.connection.execute(sa.select(m.c.contact_id).where(m.c.segment_id == segment.id)).scalars())  # type: ignore[union-attr]

    def matching_ids(self, name_or_id: str) -> set[str]:
        """Ids of the contacts the condition selects right now, by SQL; writes nothing."""
        segment = self.get(name_or_id)
        with self.crm.read() as uow:
            c = uow.contacts.table
            return set(uow.connection.execute(sa.select(c.c.id).where(self.condition(segment).where(c, self.dialect))).scalars())  # type: ignore[union-attr]

    def segments_of(self, contact_id: str) -> list[str]:
        """Names of the segments a contact is a member of."""
        t, m = self.table(SEGMENTS), self.table(MEMBERS)
        with self.crm.read() as uow:
            stmt = sa.select(t.c.name).join(m, m.c.segment_id == t.c.id).where(m.c.contact_id == contact_id).order_by(t.c.name)
            return list(uow.connection.execute(stmt).scalars())  # type: ignore[union-attr]

    def rebuild(self, name_or_id: str, *, actor: str | None = None, now: datetime | None = None) -> MembershipChange:
        """Recompute a segment's membership from scratch with SQL; who entered and left."""
        segment = self.get(name_or_id)
        with self.crm.uow(actor) as uow:
            return self._rebuild_in(uow, segment, now or utcnow())

    def _rebuild_in(self, uow: UnitOfWork, segment: Segment, at: datetime) -> MembershipChange:
        conn = uow.connection
        assert conn is not None
        c, m, t = uow.contacts.table, self.table(MEMBERS), self.table(SEGMENTS)
        matches = self.condition(segment).where(c, self.dialect)
        is_member = sa.exists(sa.select(sa.literal(1)).where(m.c.segment_id == segment.id, m.c.contact_id == c.c.id))
        still_matches = sa.exists(sa.select(sa.literal(1)).select_from(c).where(c.c.id == m.c.contact_id, matches))
        entering = list(conn.execute(sa.select(c.c.id).where(matches, ~is_member).order_by(c.c.id)).scalars())
        leaving = list(conn.execute(sa.select(m.c.contact_id).where(m.c.segment_id == segment.id, ~still_matches)
                                    .order_by(m.c.contact_id)).scalars())
        self._apply(uow, segment, entering, leaving, at)
        conn.execute(sa.update(t).where(t.c.id == segment.id).values(rebuilt_at=at))
        return MembershipChange({segment.name: entering}, {segment.name: leaving})

    def _apply(self, uow: UnitOfWork, segment: Segment, entering: Sequence[str], leaving: Sequence[str], at: datetime) -> None:
        conn = uow.connection
        assert conn is not None
        m = self.table(MEMBERS)
        for start in range(0, len(leaving), _CHUNK):
            conn.execute(sa.delete(m).where(m.c.segment_id == segment.id, m.c.contact_id.in_(leaving[start:start + _CHUNK])))
        for start in range(0, len(entering), _CHUNK):
            conn.execute(sa.insert(m), [{"segment_id": segment.id, "contact_id": ident, "entered_at": at}
                                        for ident in entering[start:start + _CHUNK]])
        # contact_id in the data too: automation finds a non-contact event's contact there.
        for ident in entering:
            uow.emit("segment.entered", ident, {"segment": segment.name, "segment_id": segment.id, "contact_id": ident})
        for ident in leaving:
            uow.emit("segment.left", ident, {"segment": segment.name, "segment_id": segment.id, "contact_id": ident})

    def refresh(self, contact_ids: Iterable[str], *, now: datetime | None = None) -> MembershipChange:
        """Evaluate every segment for these contacts (in Python, on their stored rows) and
        record who entered and left. A contact that no longer exists leaves everything."""
        ids = sorted(set(contact_ids))
        change = MembershipChange()
        if not ids:
            return change
        with self.crm.read() as uow:  # most contact changes move no membership: no write transaction then
            if not self._plan(uow, ids):
                return change
        with self.crm.uow() as uow:  # decided again under the write, so racing handlers agree
            for segment, entering, leaving in self._plan(uow, ids):
                self._apply(uow, segment, entering, leaving, now or utcnow())
                change.entered[segment.name] = entering
                change.left[segment.name] = leaving
        return change

    def _plan(self, uow: UnitOfWork, ids: list[str]) -> list[tuple[Segment, list[str], list[str]]]:
        """Per segment whose membership of ``ids`` is wrong: who should enter and who leave."""
        conn = uow.connection
        assert conn is not None
        t, m, c = self.table(SEGMENTS), self.table(MEMBERS), uow.contacts.table
        segments = [self._segment(row) for row in conn.execute(sa.select(t).order_by(t.c.name))]
        if not segments:
            return []
        rows = {row.id: row._mapping for row in conn.execute(sa.select(c).where(c.c.id.in_(ids)))}
        held = {(r.segment_id, r.contact_id) for r in conn.execute(sa.select(m.c.segment_id, m.c.contact_id).where(m.c.contact_id.in_(ids)))}
        plan = []
        for segment in segments:
            condition = self.condition(segment)
            should = {i for i in ids if i in rows and condition.holds(rows[i])}
            entering = [i for i in ids if i in should and (segment.id, i) not in held]
            leaving = [i for i in ids if i not in should and (segment.id, i) in held]
            if entering or leaving:
                plan.append((segment, entering, leaving))
        return plan

    def handle(self, event: Event) -> MembershipChange:
        """The event subscriber: refresh the contacts a contact event concerns."""
        if event.type not in CONTACT_EVENTS:
            return MembershipChange()
        data = event.data or {}
        ids = [i for i in (event.subject_id, data.get("survivor_id"), data.get("duplicate_id")) if isinstance(i, str)]
        return self.refresh(ids)

    def forget(self, uow: UnitOfWork, contact_id: str) -> None:
        """Drop a contact's memberships (personal-data erasure; they are rebuilt from the
        anonymised record on its next change or rebuild)."""
        m = self.table(MEMBERS)
        uow.connection.execute(sa.delete(m).where(m.c.contact_id == contact_id))  # type: ignore[union-attr]


def segments(crm: CRM) -> Segments:
    """``crm.segments`` (set at start-up), or a new one for a CRM still starting."""
    existing = getattr(crm, "segments", None)
    return existing if isinstance(existing, Segments) else Segments(crm)
