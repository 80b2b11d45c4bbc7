"""The intake pipeline every inbound contact record flows through.

``normalize → validate → enrich → match → persist → react``, each stage a hook
(:mod:`crmkit.hookspecs`). The core's own behaviour for each stage lives in the built-in plugin
:mod:`crmkit.builtin.intake_defaults`, registered like any other plugin, so a house plugin can
add to or override any stage. A rejected record comes back with structured issues and nothing
written; persist runs inside one transaction with the record's events.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
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


@attrs.define(kw_only=True)
class IntakeRecord:
    """One inbound record on its way through the pipeline.

    :ivar data: the raw fields as received (normalisers change them in place).
    :ivar source: where it came from (``cli``, ``api``, ``import``, ``webform`` …).
    :ivar clean: parsed, validated values (set by the validate stage).
    :ivar match_id: the existing contact it matched, if any.
    :ivar outcome: ``created``, ``updated``, ``skipped`` or ``rejected``.
    """

    data: dict[str, Any]
    source: str = "api"
    on_duplicate: OnDuplicate = OnDuplicate.UPDATE
    context: dict[str, Any] = attrs.field(factory=dict)
    clean: dict[str, Any] = attrs.field(factory=dict)
    issues: list[FieldIssue] = attrs.field(factory=list)
    match_id: str | None = None
    contact_id: str | None = None
    outcome: str | None = None


@attrs.define
class IntakeResult:
    record: IntakeRecord
    contact: Contact | None

    @property
    def ok(self) -> bool:
        return self.record.outcome != "rejected"


class Intake:
    def __init__(self, crm: CRM):
        self.crm = crm

    def submit(
        self,
        data: Mapping[str, Any],
        *,
        source: str = "api",
        on_duplicate: OnDuplicate | str = OnDuplicate.UPDATE,
        actor: str | None = None,
        raise_on_reject: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> IntakeResult:
        """Run one record through every stage.

        :raises ValidationFailed: when the record is rejected (unless ``raise_on_reject`` is
            False, in which case the result's ``record.issues`` say why).
        """
        record = IntakeRecord(data=dict(data), source=source, on_duplicate=OnDuplicate(on_duplicate), context=dict(context or {}))
        hooks = self.crm.plugins
        hooks.call("crmkit_normalize", record=record, crm=self.crm)
        with self.crm.uow(actor) as uow:
            try:
                record.clean = self.crm.contacts.parse(uow, record.data)
            except ValidationFailed as exc:
                record.issues.extend(exc.issues)
            if not record.issues:
                for found in hooks.call("crmkit_validate", record=record, crm=self.crm):
                    record.issues.extend(found or [])
            if record.issues:
                record.outcome = "rejected"
                if raise_on_reject:
                    raise ValidationFailed(record.issues)
                return IntakeResult(record, None)
            hooks.call("crmkit_enrich", record=record, crm=self.crm)
            record.match_id = hooks.call("crmkit_match", record=record, crm=self.crm)
            record.contact_id = hooks.call("crmkit_persist", record=record, crm=self.crm, uow=uow)
            contact = uow.contacts.get(record.contact_id) if record.contact_id else None
        if contact is not None:
            hooks.call_each_safely("crmkit_react", record=record, contact=contact, crm=self.crm)
        return IntakeResult(record, contact)
