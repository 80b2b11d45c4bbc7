"""The intake pipeline every inbound contact record flows through.

``normalize → validate → enrich → match → persist → react``, each stage a hook
(:mod:`crmkit.hookspecs`) in two forms: per record (``crmkit_normalize`` …), convenient for
house rules, and per batch (``crmkit_normalize_batch`` …), so bulk work such as an import does
not pay a hook call and a query per row. A single submission is a batch of one: one code path,
so an imported row is validated exactly like an API call.

The core's own behaviour for each stage lives in the built-in plugin
:mod:`crmkit.builtin.intake_defaults`, registered like any other plugin. A rejected record comes
back with structured issues and nothing written for it; a batch's accepted records are written
in one transaction together with their events.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from crmkit.errors import FieldIssue, ValidationFailed

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.domain import Contact


class OnDuplicate(enum.StrEnum):
    UPDATE = "update"  # fill the matched contact with the record's values
    SKIP = "skip"  # leave the matched contact as it is
    CREATE = "create"  # create a new contact anyway (dedupe later)


@attrs.define(kw_only=True, eq=False)
class IntakeRecord:
    """One inbound record on its way through the pipeline.

    :ivar data: the raw fields as received (normalisers change them in place).
    :ivar source: where it came from (``cli``, ``api``, ``import``, ``webform`` …).
    :ivar external_ids: identifiers in other systems (``{"shop": "C-1001"}``); a record whose
        external id is known updates that contact, which makes re-imports idempotent.
    :ivar clean: parsed, validated values (set by the validate stage).
    :ivar match_id: the existing contact it matched, if any.
    :ivar outcome: ``created``, ``updated``, ``skipped`` or ``rejected``.
    """

    data: dict[str, Any]
    source: str = "api"
    on_duplicate: OnDuplicate = OnDuplicate.UPDATE
    external_ids: dict[str, str] = attrs.field(factory=dict)
    context: dict[str, Any] = attrs.field(factory=dict)
    clean: dict[str, Any] = attrs.field(factory=dict)
    issues: list[FieldIssue] = attrs.field(factory=list)
    match_id: str | None = None
    contact_id: str | None = None
    outcome: str | None = None

    @property
    def rejected(self) -> bool:
        return bool(self.issues)


@attrs.define
class IntakeResult:
    record: IntakeRecord
    contact: Contact | None

    @property
    def ok(self) -> bool:
        return not self.record.rejected


_STAGE_ORDER = ("normalize", "validate", "enrich")


class Intake:
    def __init__(self, crm: CRM):
        self.crm = crm

    def submit(
        self,
        data: Mapping[str, Any],
        *,
        source: str = "api",
        on_duplicate: OnDuplicate | str = OnDuplicate.UPDATE,
        external_ids: Mapping[str, str] | None = None,
        actor: str | None = None,
        raise_on_reject: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> IntakeResult:
        """Run one record through every stage.

        :raises ValidationFailed: when the record is rejected (unless ``raise_on_reject`` is
            False, in which case the result's ``record.issues`` say why).
        """
        record = self.record(data, source=source, on_duplicate=on_duplicate, external_ids=external_ids, context=context)
        self.process([record], actor=actor)
        if record.rejected and raise_on_reject:
            raise ValidationFailed(record.issues)
        contact = self.crm.contacts.get(record.contact_id) if record.contact_id else None
        return IntakeResult(record, contact)

    @staticmethod
    def record(
        data: Mapping[str, Any],
        *,
        source: str = "api",
        on_duplicate: OnDuplicate | str = OnDuplicate.UPDATE,
        external_ids: Mapping[str, str] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> IntakeRecord:
        return IntakeRecord(
            data=dict(data), source=source, on_duplicate=OnDuplicate(on_duplicate),
            external_ids=dict(external_ids or {}), context=dict(context or {}),
        )

    def submit_many(
        self,
        records: Iterable[IntakeRecord],
        *,
        batch_size: int = 1000,
        actor: str | None = None,
        dry_run: bool = False,
        prepared: bool = False,
    ) -> Iterator[IntakeRecord]:
        """Stream records through the pipeline in batches; yields each record when its batch
        is done (``record.outcome`` / ``record.issues`` tell what happened).

        :param prepared: the records already went through :meth:`prepare` elsewhere (an import
            validates in worker processes); only the stages after it run here.
        """
        run = self.finish if prepared else self.process
        batch: list[IntakeRecord] = []
        for record in records:
            batch.append(record)
            if len(batch) >= batch_size:
                run(batch, actor=actor, dry_run=dry_run)
                yield from batch
                batch = []
        if batch:
            run(batch, actor=actor, dry_run=dry_run)
            yield from batch

    def process(self, batch: list[IntakeRecord], *, actor: str | None = None, dry_run: bool = False) -> None:
        """Run one batch through every stage; accepted records commit in one transaction."""
        self.prepare(batch)
        self.finish(batch, actor=actor, dry_run=dry_run)

    def prepare(self, batch: list[IntakeRecord]) -> None:
        """The stages that only read — normalise, then validate (core fields, then house rules).
        Rejected records get ``outcome = "rejected"``; nothing is written."""
        hooks = self.crm.plugins
        crm = self.crm
        hooks.call("crmkit_normalize_batch", records=batch, crm=crm)
        self._per_record("crmkit_normalize", batch)
        self.validate(batch)
        live = [r for r in batch if not r.rejected]
        if live:
            for found in hooks.call("crmkit_validate_batch", records=live, crm=crm):
                for record, issues in found or []:
                    record.issues.extend(issues)
            if hooks.impls("crmkit_validate"):
                for record in live:
                    for issues in hooks.call("crmkit_validate", record=record, crm=crm):
                        record.issues.extend(issues or [])
        for record in batch:
            if record.rejected:
                record.outcome = "rejected"

    def finish(self, batch: list[IntakeRecord], *, actor: str | None = None, dry_run: bool = False) -> None:
        """The stages after validation — enrich, match, persist, react — for the records of a
        prepared batch that were not rejected."""
        hooks = self.crm.plugins
        crm = self.crm
        live = [r for r in batch if not r.rejected]
        if not live:
            return
        hooks.call("crmkit_enrich_batch", records=live, crm=crm)
        self._per_record("crmkit_enrich", live)
        if hooks.impls("crmkit_match"):
            for record in live:
                record.match_id = hooks.call("crmkit_match", record=record, crm=crm)
        hooks.call("crmkit_match_batch", records=[r for r in live if r.match_id is None], crm=crm)
        if dry_run:
            for record in live:
                record.outcome = "updated" if record.match_id and record.on_duplicate == OnDuplicate.UPDATE else (
                    "skipped" if record.match_id and record.on_duplicate == OnDuplicate.SKIP else "created")
            return
        with crm.uow(actor) as uow:
            if hooks.impls("crmkit_persist"):
                for record in live:
                    record.contact_id = hooks.call("crmkit_persist", record=record, crm=crm, uow=uow)
            hooks.call("crmkit_persist_batch", records=[r for r in live if r.contact_id is None], crm=crm, uow=uow)
        if hooks.impls("crmkit_react"):
            stored = {c.id: c for c in self._load([r.contact_id for r in live if r.contact_id])}
            for record in live:
                contact = stored.get(record.contact_id or "")
                if contact is not None:
                    hooks.call_each_safely("crmkit_react", record=record, contact=contact, crm=crm)

    def validate(self, batch: list[IntakeRecord]) -> None:
        """The core's field validation, identical for every path into the CRM."""
        contacts = self.crm.contacts
        with self.crm.read() as uow:
            context = contacts.validation_context(uow)
            for record in batch:
                try:
                    record.clean = contacts.parse_with(context, record.data)
                except ValidationFailed as exc:
                    record.issues.extend(exc.issues)

    def _per_record(self, hook_name: str, records: list[IntakeRecord]) -> None:
        if not self.crm.plugins.impls(hook_name):
            return
        for record in records:
            self.crm.plugins.call(hook_name, record=record, crm=self.crm)

    def _load(self, ids: list[str]) -> list[Contact]:
        with self.crm.read() as uow:
            table = uow.contacts.table
            return uow.contacts.list([table.c.id.in_(ids)], limit=None) if ids else []
