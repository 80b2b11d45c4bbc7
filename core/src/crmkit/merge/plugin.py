"""The built-in plugin that makes merges visible to the rest of crmkit.

* Intake: a record whose e-mail, phone or account number lost in a merge (kept as a
  ``merged_*`` external id of the survivor) matches the survivor. This runs *after* every other
  matcher, so a live contact that has the value itself always wins over an old alias.
* Personal data: an export lists the merges that involved the person; an erasure scrubs the
  snapshots those merges kept (which makes them impossible to undo) and drops the aliases.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.domain import Contact
from crmkit.intake import IntakeRecord
from crmkit.merge.records import MERGED_ID_SYSTEMS, MergeRecord
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork

_CHUNK = 500


@hookimpl(wrapper=True)
def crmkit_match_batch(records: list[IntakeRecord], crm: CRM) -> Generator[None, Any, Any]:
    result = yield
    unmatched = [r for r in records if r.match_id is None]
    if unmatched:
        with crm.read() as uow:
            table = uow.table("external_ids")
            for field, system in MERGED_ID_SYSTEMS.items():
                wanted = sorted({r.clean[field] for r in unmatched if r.match_id is None and r.clean.get(field)})
                found: dict[str, str] = {}
                for start in range(0, len(wanted), _CHUNK):
                    rows = uow.connection.execute(  # type: ignore[union-attr]
                        sa.select(table.c.value, table.c.contact_id).where(table.c.system == system, table.c.value.in_(wanted[start:start + _CHUNK]))
                    )
                    found.update({row.value: row.contact_id for row in rows})
                for record in unmatched:
                    if record.match_id is None and record.clean.get(field) in found:
                        record.match_id = found[record.clean[field]]
    return result


def _merges_of(conn: sa.Connection, merges: sa.Table, contact_id: str) -> list[MergeRecord]:
    """The merges that involved the person: as survivor or duplicate, following the chain of
    contacts merged into this one (they are the same person)."""
    ids, frontier = {contact_id}, {contact_id}
    while frontier:
        rows = conn.execute(sa.select(merges.c.duplicate_id).where(merges.c.survivor_id.in_(frontier), merges.c.undone_at.is_(None)))
        frontier = {row.duplicate_id for row in rows} - ids
        ids |= frontier
    rows = conn.execute(sa.select(merges).where(sa.or_(merges.c.survivor_id.in_(ids), merges.c.duplicate_id.in_(ids))).order_by(merges.c.merged_at))
    return [MergeRecord.from_row(row) for row in rows]


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    with crm.read() as uow:
        conn = uow.connection
        assert conn is not None
        found = _merges_of(conn, uow.table("merges"), contact.id)
        external = uow.table("external_ids")
        aliases = conn.execute(
            sa.select(external.c.system, external.c.value)
            .where(external.c.contact_id == contact.id, external.c.system.in_(MERGED_ID_SYSTEMS.values()))
            .order_by(external.c.system, external.c.value)
        ).all()
    if not found and not aliases:
        return None
    return {"merges": to_jsonable(found), "merged_identifiers": [[row.system, row.value] for row in aliases]}


@hookimpl
def crmkit_erase_personal_data(contact: Contact, uow: UnitOfWork) -> None:
    conn = uow.connection
    assert conn is not None
    merges = uow.table("merges")
    ids = [m.id for m in _merges_of(conn, merges, contact.id)]
    if ids:
        conn.execute(sa.update(merges).where(merges.c.id.in_(ids)).values(snapshot={"erased": True}))
    external = uow.table("external_ids")
    conn.execute(sa.delete(external).where(external.c.contact_id == contact.id, external.c.system.in_(MERGED_ID_SYSTEMS.values())))
