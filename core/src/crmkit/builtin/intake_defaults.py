"""The core's own intake stages, registered as a plugin like any other.

They implement the *batch* forms of the stage hooks, so an import of a million rows costs one
hook call and a handful of queries per batch, and a single submission (a batch of one) goes
through exactly the same code. ``tryfirst``/``trylast`` place them so that house plugins run
around them: normalisation runs first (plugins then see tidy data); matching and persisting
run last (a plugin's matcher or writer wins when it answers).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.builtin.contact_rows import ContactRows
from crmkit.domain import Contact
from crmkit.domain.values import utcnow
from crmkit.intake import IntakeRecord, OnDuplicate
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable
from crmkit.storage.sql.mapping import from_row, to_row
from crmkit.storage.sql.repository import insert_rows
from crmkit.storage.uow import UnitOfWork

#: Field names often seen in inbound data, mapped onto crmkit's.
ALIASES = {
    "firstname": "first_name", "given_name": "first_name", "lastname": "last_name", "surname": "last_name",
    "family_name": "last_name", "e-mail": "email", "email_address": "email", "mobile": "phone", "phone_number": "phone",
}
#: Exact identifiers that say two records are the same person, strongest first.
MATCH_KEYS = ("email", "phone", "account_number")


def normalize_record(data: dict[str, Any]) -> None:
    for alias, name in ALIASES.items():
        if alias in data and name not in data:
            data[name] = data.pop(alias)
    # A single "name" (web forms love it) is split into first and last name.
    for key in ("name", "full_name"):
        if key in data and not data.get("first_name") and not data.get("last_name"):
            parts = str(data.pop(key) or "").split()
            if parts:
                data["first_name"] = " ".join(parts[:-1]) or parts[0]
                if len(parts) > 1:
                    data["last_name"] = parts[-1]
    for key, value in data.items():
        if isinstance(value, str):
            data[key] = " ".join(value.split())


@hookimpl(tryfirst=True)
def crmkit_normalize_batch(records: list[IntakeRecord]) -> None:
    for record in records:
        normalize_record(record.data)


def _lookup(uow: UnitOfWork, column: str, values: Iterable[str]) -> dict[str, str]:
    """``value -> contact id`` for contacts whose ``column`` is one of ``values`` (oldest wins)."""
    wanted = sorted(set(values))
    if not wanted:
        return {}
    table = uow.contacts.table
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):  # stay far below every backend's parameter limit
        chunk = wanted[start:start + 500]
        rows = uow.connection.execute(  # type: ignore[union-attr]
            sa.select(table.c[column], table.c.id).where(table.c[column].in_(chunk)).order_by(table.c.created_at.desc(), table.c.id.desc())
        )
        for value, ident in rows:
            found[value] = ident  # ordered newest first, so the oldest ends up kept
    return found


def _lookup_external(uow: UnitOfWork, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    table = uow.tables["external_ids"]
    found: dict[tuple[str, str], str] = {}
    for start in range(0, len(wanted), 250):
        chunk = wanted[start:start + 250]
        condition = sa.or_(*(sa.and_(table.c.system == system, table.c.value == value) for system, value in chunk))
        for row in uow.connection.execute(sa.select(table.c.system, table.c.value, table.c.contact_id).where(condition)):  # type: ignore[union-attr]
            found[(row.system, row.value)] = row.contact_id
    return found


@hookimpl(trylast=True)
def crmkit_match_batch(records: list[IntakeRecord], crm: CRM) -> None:
    """External ids first, then exact e-mail, phone and account number; one query per key."""
    records = [r for r in records if r.match_id is None]  # a plugin's matcher ran first and wins
    if not records:
        return
    with crm.read() as uow:
        by_external = _lookup_external(uow, (pair for r in records for pair in r.external_ids.items()))
        by_key = {key: _lookup(uow, key, (r.clean[key] for r in records if r.clean.get(key))) for key in MATCH_KEYS}
    for record in records:
        record.match_id = next((by_external[p] for p in record.external_ids.items() if p in by_external), None)
        for key in MATCH_KEYS:
            if record.match_id is None and record.clean.get(key):
                record.match_id = by_key[key].get(record.clean[key])


def merge_changes(existing: Any, clean: dict[str, Any]) -> dict[str, Any]:
    """Values from an inbound record that change ``existing``: non-empty values win, tags
    accumulate, custom fields and nested objects merge key by key."""
    changes: dict[str, Any] = {}
    for key, value in clean.items():
        current = getattr(existing, key)
        if key == "tags":
            merged = list(dict.fromkeys([*current, *(value or [])]))
            if merged != current:
                changes[key] = merged
        elif key == "custom":
            merged_custom = {**current, **(value or {})}
            if merged_custom != current:
                changes[key] = merged_custom
        elif attrs.has(type(value)):
            updates = {k: v for k, v in attrs.asdict(value, recurse=False).items() if v is not None}
            merged_obj = attrs.evolve(current, **updates)
            if merged_obj != current:
                changes[key] = merged_obj
        elif value is not None and value != current:
            changes[key] = value
    return changes


class _BatchWriter:
    """Writes one batch: creates new contacts in bulk, updates matched ones, and makes later
    records of the batch match contacts created by earlier ones (no duplicates within a file)."""

    def __init__(self, uow: UnitOfWork):
        self.uow = uow
        self.rows = ContactRows()
        self.created: dict[str, dict[str, Any]] = {}  # contact id → its row, in creation order
        self.created_by_key: dict[tuple[str, str], str] = {}
        self.matched: dict[str, Contact] = {}  # existing contacts the batch matched, loaded at once
        self.external_rows: list[dict[str, Any]] = []
        self.known_external: set[tuple[str, str]] = set()
        self.sources: dict[str, str] = {}

    def write(self, record: IntakeRecord) -> None:
        if record.match_id is None and record.on_duplicate != OnDuplicate.CREATE:
            record.match_id = self._created_match(record)
        if record.match_id and record.on_duplicate != OnDuplicate.CREATE:
            self._update(record)
        else:
            self._create(record)
        for system, value in record.external_ids.items():
            if (system, value) not in self.known_external:
                self.known_external.add((system, value))
                self.external_rows.append({"system": system, "value": value, "contact_id": record.contact_id, "created_at": utcnow()})

    def load_matched(self, ids: Iterable[str]) -> None:
        """Load the existing contacts a batch matched with one query per 500, not one each."""
        wanted = sorted(set(ids))
        table = self.uow.contacts.table
        for start in range(0, len(wanted), 500):
            for contact in self.uow.contacts.list([table.c.id.in_(wanted[start:start + 500])], limit=None):
                self.matched[contact.id] = contact

    def _created_match(self, record: IntakeRecord) -> str | None:
        for system, value in record.external_ids.items():
            if ("ext:" + system, value) in self.created_by_key:
                return self.created_by_key[("ext:" + system, value)]
        for key in MATCH_KEYS:
            value = record.clean.get(key)
            if value and (key, value) in self.created_by_key:
                return self.created_by_key[(key, value)]
        return None

    def _create(self, record: IntakeRecord) -> None:
        # The row and, at flush, the event payload are built from the clean values directly
        # (the same as through a Contact entity, see contact_rows): no entity per new row.
        row = self.rows.row(record.clean, utcnow())
        ident = row["id"]
        self.created[ident] = row
        for key in MATCH_KEYS:
            if record.clean.get(key):
                self.created_by_key.setdefault((key, record.clean[key]), ident)
        for system, value in record.external_ids.items():
            self.created_by_key.setdefault(("ext:" + system, value), ident)
        self.sources[ident] = record.source
        record.contact_id, record.outcome = ident, "created"

    def _update(self, record: IntakeRecord) -> None:
        assert record.match_id is not None
        record.contact_id = record.match_id
        pending_row = self.created.get(record.match_id)
        if pending_row is not None:  # matched a contact created earlier in this very batch
            changes = {}
            if record.on_duplicate == OnDuplicate.UPDATE:
                pending = from_row(Contact, pending_row)
                changes = merge_changes(pending, record.clean)
                for key, value in changes.items():
                    setattr(pending, key, value)
                if changes:
                    pending_row.update(to_row(pending))
            record.outcome = "updated" if changes else "skipped"
            return
        existing = self.matched.get(record.match_id) or self.uow.contacts.get(record.match_id)
        changes = merge_changes(existing, record.clean) if record.on_duplicate == OnDuplicate.UPDATE else {}
        if not changes:
            record.outcome = "skipped"
            return
        before = to_jsonable(existing)
        for key, value in changes.items():
            setattr(existing, key, value)
        self.uow.contacts.update(existing)
        after = to_jsonable(existing)
        diff = {k: {"from": before[k], "to": after[k]} for k in changes}
        self.uow.emit("contact.updated", existing.id, {"changes": diff, "version": existing.version, "source": record.source})
        record.outcome = "updated"

    def flush(self) -> None:
        rows = list(self.created.values())
        if rows:
            insert_rows(self.uow.connection, self.uow.contacts.table, rows)  # type: ignore[arg-type]
        for row in rows:  # after in-batch merges, so payloads are final
            payload = self.rows.payload(row)
            payload["intake_source"] = self.sources[row["id"]]
            self.uow.emit("contact.created", row["id"], payload)
        if self.external_rows:
            table = self.uow.tables["external_ids"]
            existing = _lookup_external(self.uow, ((r["system"], r["value"]) for r in self.external_rows))
            rows = [r for r in self.external_rows if (r["system"], r["value"]) not in existing]
            if rows:
                insert_rows(self.uow.connection, table, rows)  # type: ignore[arg-type]


@hookimpl(trylast=True)
def crmkit_persist_batch(records: list[IntakeRecord], uow: UnitOfWork) -> None:
    writer = _BatchWriter(uow)
    todo = [r for r in records if r.contact_id is None]  # the others a plugin's batch writer wrote
    writer.load_matched(r.match_id for r in todo if r.match_id and r.on_duplicate != OnDuplicate.CREATE)
    for record in todo:
        writer.write(record)
    writer.flush()
