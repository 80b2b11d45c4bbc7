"""Merging duplicate contacts, and undoing a merge (``crm.merges``).

A merge, in one transaction:

1. locks both contacts and decides every field by the survivorship rules
   (:mod:`crmkit.merge.survivorship`);
2. moves every row that points at the duplicate — activities, deals, tasks, consent entries,
   external ids, plugin rows — onto the survivor (:mod:`crmkit.merge.relink`);
3. deletes the duplicate row (``crm.merges.merged_into(id)`` / :class:`MergedAway` say where
   it went) and writes the merged values onto the survivor;
4. keeps each identifier that lost (an e-mail, phone or account number no longer on the
   survivor) as an external id ``merged_email`` / ``merged_phone`` /
   ``merged_account_number`` of the survivor, so intake of that address finds the survivor;
5. settles consent conflicts by appending ``merge`` ledger entries
   (:mod:`crmkit.merge.consents`);
6. writes the ``merges`` audit row — rules, both records before the merge, every row touched —
   and emits ``contact.merged``.

:meth:`MergeService.undo` replays the audit row backwards, also in one transaction. It refuses
when that cannot be done safely:

* the merge was undone already, or its snapshot was erased (personal-data erasure);
* the survivor no longer exists (deleted, or itself merged away: undo that merge first);
* a later merge into the same survivor is still in place (undo merges newest first);
* consent entries were recorded on the survivor after the merge (undoing would leave them on
  the survivor only: a withdrawal would not reach the restored duplicate);
* the survivor's fields changed after the merge — unless ``force=True``, which restores the
  survivor's pre-merge values and so discards those changes.

Rows added to the survivor after the merge (a new activity, deal …) stay with the survivor.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from crmkit.domain.contacts import Contact
from crmkit.domain.engagement import Consent
from crmkit.domain.values import IssueCollector, new_id, utcnow
from crmkit.errors import NotFound, ValidationFailed
from crmkit.merge import consents as consent_rules
from crmkit.merge import relink
from crmkit.merge.records import MERGED_ID_SYSTEMS, MergedAway, MergeError, MergeRecord, MergeResult, UndoResult
from crmkit.merge.survivorship import Rule, Side, choose_survivor, parse_rules, resolve
from crmkit.serialize import converter, to_jsonable
from crmkit.services.base import Service
from crmkit.storage.sql.mapping import to_row
from crmkit.storage.uow import UnitOfWork

SNAPSHOT_FORMAT = 1


class MergeService(Service):
    # --- merge ----------------------------------------------------------------------------

    def merge(
        self,
        a: str,
        b: str,
        *,
        prefer: str | None = None,
        rules: Mapping[str, str | Rule] | None = None,
        actor: str | None = None,
    ) -> MergeResult:
        """Merge contacts ``a`` and ``b`` into one.

        :param prefer: which survives: ``"a"``, ``"b"`` or the id of one of them. By default
            the older record survives (then the more complete one, then ``a``): field values
            are chosen per field by the rules anyway, so the survivor mostly decides which id
            lives on, and the older id is the one other systems are likeliest to hold.
        :param rules: per field, a survivorship rule overriding the default, e.g.
            ``{"email": "most_recent", "phone": "keep_b", "first_name": "prefer_source:web"}``;
            ``keep_a``/``keep_b`` refer to the order the ids are given in.
        :raises ValidationFailed: bad rules or ``prefer``, or ``a`` and ``b`` are the same.
        :raises NotFound: an id names no contact (:class:`MergedAway` if it was merged).
        """
        issues = IssueCollector()
        effective = issues.run(parse_rules, rules) or {}
        if a == b:
            issues.add("b", "same_contact", f"cannot merge contact {a!r} into itself")
        preferred = issues.run(_parse_prefer, prefer, a, b)
        issues.raise_if_any()
        with self.uow(actor) as uow:
            return self._merge_in(uow, a, b, preferred, effective)

    def _merge_in(self, uow: UnitOfWork, a_id: str, b_id: str, prefer: Side | None, rules: dict[str, Rule]) -> MergeResult:
        conn = uow.connection
        assert conn is not None
        records = self._lock_contacts(uow, a_id, b_id)
        a, b = records[a_id], records[b_id]
        side = prefer or choose_survivor(a, b)
        survivor, duplicate = (a, b) if side is Side.A else (b, a)
        before = {"survivor": to_jsonable(survivor), "duplicate": to_jsonable(duplicate)}
        resolution = resolve(a, b, side, rules)
        merge_id, now = new_id(), utcnow()

        lost = sorted(
            (system, value) for field, system in MERGED_ID_SYSTEMS.items()
            for value in {getattr(a, field), getattr(b, field)} - {resolution.values[field], None, ""}
        )
        ledgers = self._ledgers(uow, survivor.id, duplicate.id)
        conflicts = consent_rules.conflicts(
            consent_rules.current_states(ledgers[survivor.id]), consent_rules.current_states(ledgers[duplicate.id])
        )
        try:
            moved = relink.move(conn, relink.contact_references(uow.tables), duplicate.id, survivor.id, now)
            uow.contacts.delete(duplicate.id, duplicate.version)
            for name, value in resolution.values.items():
                setattr(survivor, name, value)
            uow.contacts.update(survivor)
            identifiers = self._keep_lost_identifiers(uow, survivor.id, lost, now)
            entries = self._settle_consents(uow, merge_id, survivor.id, duplicate.id, conflicts, [*ledgers[survivor.id], *ledgers[duplicate.id]], now)
        except sa.exc.IntegrityError as exc:
            # A plugin table may allow one row per contact: both contacts having one is a real
            # conflict the merge cannot settle on its own.
            raise MergeError(f"merging {duplicate.id} into {survivor.id} violates a database constraint: {exc.orig}") from exc

        conflict_data = to_jsonable(conflicts)
        conn.execute(sa.insert(uow.table("merges")), [{
            "id": merge_id,
            "survivor_id": survivor.id,
            "duplicate_id": duplicate.id,
            "rules": {"a": a.id, "b": b.id, "survivor": side.value, "fields": to_jsonable(resolution.decisions)},
            "snapshot": {
                "format": SNAPSHOT_FORMAT,
                **before,
                "survivor_version_after": survivor.version,
                "survivor_consents": [e.id for e in ledgers[survivor.id]],
                "moved": moved,
                "added": {"consents": [e.id for e in entries], "external_ids": [list(pair) for pair in identifiers]},
            },
            "consent_conflicts": conflict_data,
            "actor": uow.actor,
            "merged_at": now,
        }])
        relinked = {f"{e['table']}.{e['column']}": len(e["rows"]) for e in moved}
        after = to_jsonable(survivor)
        changes = {k: {"from": before["survivor"][k], "to": after[k]} for k in resolution.values if before["survivor"][k] != after[k]}
        uow.emit("contact.merged", survivor.id, {
            "merge_id": merge_id, "survivor_id": survivor.id, "duplicate_id": duplicate.id, "changes": changes,
            "consent_conflicts": conflict_data, "relinked": relinked, "version": survivor.version,
        })
        return MergeResult(
            merge_id=merge_id, survivor=survivor, duplicate_id=duplicate.id, decisions=resolution.decisions,
            consent_conflicts=conflicts, relinked=relinked, merged_identifiers=identifiers,
        )

    def _lock_contacts(self, uow: UnitOfWork, *ids: str) -> dict[str, Contact]:
        # A fixed lock order, so two merges over the same contacts cannot deadlock.
        found: dict[str, Contact] = {}
        for ident in sorted(ids):
            try:
                found[ident] = uow.contacts.get_for_update(ident)
            except NotFound:
                self._raise_if_merged(uow, ident)
                raise
        return found

    def _raise_if_merged(self, uow: UnitOfWork, ident: str) -> None:
        record = self._live_merge_of(uow, ident)
        if record is not None:
            raise MergedAway(ident, record.survivor_id, record.id)

    def _ledgers(self, uow: UnitOfWork, *ids: str) -> dict[str, list[Consent]]:
        table = uow.consents.table
        entries = uow.consents.list([table.c.contact_id.in_(ids)], order_by=("recorded_at", "id"), limit=None)
        return {ident: [e for e in entries if e.contact_id == ident] for ident in ids}

    def _keep_lost_identifiers(self, uow: UnitOfWork, survivor_id: str, lost: list[tuple[str, str]], now: datetime) -> list[tuple[str, str]]:
        """Add ``(system, value)`` aliases of the survivor; return those that were new."""
        table = uow.table("external_ids")
        conn = uow.connection
        assert conn is not None
        added = []
        for system, value in lost:
            taken = conn.execute(sa.select(table.c.contact_id).where(table.c.system == system, table.c.value == value)).first()
            if taken is None:  # an older alias (of this or another contact) stays as it is
                conn.execute(sa.insert(table), [{"system": system, "value": value, "contact_id": survivor_id, "created_at": now}])
                added.append((system, value))
        return added

    def _settle_consents(
        self, uow: UnitOfWork, merge_id: str, survivor_id: str, duplicate_id: str,
        conflicts: list[consent_rules.ConsentConflict], ledger: list[Consent], now: datetime,
    ) -> list[Consent]:
        entries = []
        for conflict in conflicts:
            latest = max((e.recorded_at for e in ledger if (e.channel, e.purpose) == (conflict.channel, conflict.purpose)), default=now)
            entry = Consent(
                contact_id=survivor_id, channel=conflict.channel, purpose=conflict.purpose, status=conflict.resolved, source="merge",
                evidence={
                    "merge_id": merge_id,
                    "rule": "granted only when both contacts had granted; withdrawn or no record on either side means withdrawn",
                    "survivor": {"contact_id": survivor_id, "status": conflict.survivor_status},
                    "duplicate": {"contact_id": duplicate_id, "status": conflict.duplicate_status},
                },
                # Strictly after every moved entry, so this one is the current state even if
                # an entry was recorded with a future time.
                recorded_at=max(now, latest + timedelta(microseconds=1)),
            )
            uow.consents.add(entry)
            uow.emit("consent.recorded", survivor_id, to_jsonable(entry))
            entries.append(entry)
        return entries

    # --- undo -----------------------------------------------------------------------------

    def undo(self, merge_id: str, *, force: bool = False, actor: str | None = None) -> UndoResult:
        """Restore both contacts, every row the merge moved, and both consent ledgers as they
        were before the merge.

        :param force: restore even if the survivor's fields were changed after the merge
            (those changes are lost).
        :raises NotFound: no such merge.
        :raises MergeError: the undo is not safe (see the module docs); nothing was written.
        """
        with self.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            record = self._get_for_update(uow, merge_id)
            snapshot = record.snapshot
            survivor_id, duplicate_id = record.survivor_id, record.duplicate_id
            current = self._check_undo(uow, record, force)
            forced = current.version != snapshot["survivor_version_after"]
            now = utcnow()
            structure = converter().structure
            survivor, duplicate = structure(snapshot["survivor"], Contact), structure(snapshot["duplicate"], Contact)

            added = snapshot["added"]
            consents = uow.consents.table
            if added["consents"]:
                conn.execute(sa.delete(consents).where(consents.c.id.in_(added["consents"])))
            external = uow.table("external_ids")
            if added["external_ids"]:
                conn.execute(sa.delete(external).where(
                    external.c.contact_id == survivor_id, relink.key_condition(external, ["system", "value"], added["external_ids"])
                ))
            try:
                uow.contacts.add(duplicate)
                relink.move_back(conn, uow.tables, snapshot["moved"], survivor_id, duplicate_id, now)
            except sa.exc.IntegrityError as exc:
                raise MergeError(f"merge {merge_id} cannot be undone: restoring {duplicate_id} violates a database constraint: {exc.orig}") from exc
            if forced:  # a new version, so writers holding the changed record get a conflict
                survivor.version, survivor.updated_at = current.version + 1, now
            contacts = uow.contacts.table
            conn.execute(sa.update(contacts).where(contacts.c.id == survivor_id).values(**{
                k: v for k, v in to_row(survivor).items() if k != "id"
            }))
            merges = uow.table("merges")
            conn.execute(sa.update(merges).where(merges.c.id == merge_id).values(undone_at=now, undone_by=uow.actor))
            uow.emit("contact.merge_undone", survivor_id, {
                "merge_id": merge_id, "survivor_id": survivor_id, "duplicate_id": duplicate_id, "forced": forced,
                "survivor": to_jsonable(survivor), "duplicate": to_jsonable(duplicate),
            })
        return UndoResult(merge_id=merge_id, survivor=survivor, duplicate=duplicate, forced=forced)

    def _check_undo(self, uow: UnitOfWork, record: MergeRecord, force: bool) -> Contact:
        """Every reason the undo would be unsafe, checked before anything is written; returns
        the survivor as it is now (locked)."""
        if record.undone:
            raise MergeError(f"merge {record.id} was already undone at {record.undone_at.isoformat()}")  # type: ignore[union-attr]
        if record.erased:
            raise MergeError(f"merge {record.id} cannot be undone: the personal data it kept was erased")
        survivor_id = record.survivor_id
        try:
            current = uow.contacts.get_for_update(survivor_id)
        except NotFound:
            later = self._live_merge_of(uow, survivor_id)
            if later is not None:
                raise MergeError(f"merge {record.id} cannot be undone: its survivor {survivor_id} was merged into {later.survivor_id} "
                                 f"by merge {later.id}; undo that merge first") from None
            raise MergeError(f"merge {record.id} cannot be undone: its survivor {survivor_id} was deleted") from None
        merges = uow.table("merges")
        conn = uow.connection
        assert conn is not None
        later_merges = [
            MergeRecord.from_row(row) for row in conn.execute(
                sa.select(*_summary_columns(merges)).where(merges.c.survivor_id == survivor_id, merges.c.id != record.id, merges.c.undone_at.is_(None))
            )
        ]
        later_merges = [m for m in later_merges if m.merged_at >= record.merged_at]
        if later_merges:
            ids = ", ".join(m.id for m in sorted(later_merges, key=lambda m: m.merged_at))
            raise MergeError(f"merge {record.id} cannot be undone: later merges into {survivor_id} are still in place ({ids}); undo them first")
        if uow.contacts.find(record.duplicate_id) is not None:
            raise MergeError(f"merge {record.id} cannot be undone: a contact with id {record.duplicate_id} exists again")
        snapshot = record.snapshot
        known = {*snapshot["survivor_consents"], *snapshot["added"]["consents"], *(k[0] for k in relink.moved_keys(snapshot["moved"], "consents"))}
        consents = uow.consents.table
        newer = [row.id for row in conn.execute(sa.select(consents.c.id).where(consents.c.contact_id == survivor_id)) if row.id not in known]
        if newer:
            raise MergeError(f"merge {record.id} cannot be undone: {len(newer)} consent entr{'y was' if len(newer) == 1 else 'ies were'} "
                             f"recorded on {survivor_id} after the merge, and would not reach the restored contact {record.duplicate_id}")
        if current.version != snapshot["survivor_version_after"] and not force:
            raise MergeError(f"merge {record.id} cannot be undone: contact {survivor_id} was changed after the merge "
                             f"(version {snapshot['survivor_version_after']} → {current.version}); undoing would discard those changes "
                             "(use force to restore its pre-merge values anyway)")
        return current

    # --- reading --------------------------------------------------------------------------

    def get(self, merge_id: str) -> MergeRecord:
        """One merge with its snapshot."""
        with self.crm.read() as uow:
            merges = uow.table("merges")
            row = uow.connection.execute(sa.select(merges).where(merges.c.id == merge_id)).first()  # type: ignore[union-attr]
        if row is None:
            raise NotFound("merge", merge_id)
        return MergeRecord.from_row(row)

    def list(self, *, contact_id: str | None = None, include_undone: bool = True, limit: int | None = 100) -> list[MergeRecord]:
        """Merges, newest first, without snapshots; ``contact_id`` as survivor or duplicate."""
        with self.crm.read() as uow:
            merges = uow.table("merges")
            stmt = sa.select(*_summary_columns(merges)).order_by(merges.c.merged_at.desc(), merges.c.id.desc())
            if contact_id is not None:
                stmt = stmt.where(sa.or_(merges.c.survivor_id == contact_id, merges.c.duplicate_id == contact_id))
            if not include_undone:
                stmt = stmt.where(merges.c.undone_at.is_(None))
            if limit is not None:
                stmt = stmt.limit(limit)
            return [MergeRecord.from_row(row) for row in uow.connection.execute(stmt)]  # type: ignore[union-attr]

    def merged_into(self, contact_id: str) -> MergeRecord | None:
        """The merge (not undone) that merged ``contact_id`` away, if any."""
        with self.crm.read() as uow:
            return self._live_merge_of(uow, contact_id)

    def resolve(self, contact_id: str) -> str:
        """The id of the contact ``contact_id`` lives on as: itself, or the survivor of the
        merge(s) it was merged away by."""
        with self.crm.read() as uow:
            seen = {contact_id}
            while (record := self._live_merge_of(uow, contact_id)) is not None:
                contact_id = record.survivor_id
                if contact_id in seen:  # pragma: no cover - a live merge's duplicate does not exist, so no cycle
                    break
                seen.add(contact_id)
            return contact_id

    def _live_merge_of(self, uow: UnitOfWork, duplicate_id: str) -> MergeRecord | None:
        merges = uow.table("merges")
        row = uow.connection.execute(  # type: ignore[union-attr]
            sa.select(*_summary_columns(merges)).where(merges.c.duplicate_id == duplicate_id, merges.c.undone_at.is_(None))
            .order_by(merges.c.merged_at.desc()).limit(1)
        ).first()
        return None if row is None else MergeRecord.from_row(row)

    def _get_for_update(self, uow: UnitOfWork, merge_id: str) -> MergeRecord:
        merges = uow.table("merges")
        stmt = sa.select(merges).where(merges.c.id == merge_id)
        if uow.connection.dialect.name != "sqlite":  # type: ignore[union-attr]
            stmt = stmt.with_for_update()
        row = uow.connection.execute(stmt).first()  # type: ignore[union-attr]
        if row is None:
            raise NotFound("merge", merge_id)
        return MergeRecord.from_row(row)


def _summary_columns(merges: sa.Table) -> list[sa.Column[Any]]:
    """Every column but the (large) snapshot."""
    return [c for c in merges.c if c.name != "snapshot"]


def _parse_prefer(prefer: str | None, a: str, b: str) -> Side | None:
    if prefer is None:
        return None
    text = prefer.strip()
    if text.lower() in ("a", "b"):
        return Side(text.lower())
    if text in (a, b):
        return Side.A if text == a else Side.B
    raise ValidationFailed.single("prefer", "invalid_choice", f"{prefer!r} is neither 'a', 'b', {a!r} nor {b!r}")

