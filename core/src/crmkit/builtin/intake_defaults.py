"""The core's own intake stages, registered as a plugin like any other.

``tryfirst``/``trylast`` place them so that house plugins run around them: normalisation runs
first (plugins then see tidy data), matching and persisting run last (a plugin's matcher or
writer wins when it answers).
"""

from __future__ import annotations

from typing import Any

import attrs

from crmkit.app import CRM
from crmkit.domain.values import utcnow
from crmkit.intake import IntakeRecord, OnDuplicate
from crmkit.plugins import hookimpl
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork

#: Field names often seen in inbound data, mapped onto crmkit's.
ALIASES = {
    "firstname": "first_name", "given_name": "first_name", "lastname": "last_name", "surname": "last_name",
    "family_name": "last_name", "e-mail": "email", "email_address": "email", "mobile": "phone", "phone_number": "phone",
}


@hookimpl(tryfirst=True)
def crmkit_normalize(record: IntakeRecord) -> None:
    data = record.data
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
    for key, value in list(data.items()):
        if isinstance(value, str):
            data[key] = " ".join(value.split()) if key not in ("custom", "notes") else value.strip()


@hookimpl(trylast=True)
def crmkit_match(record: IntakeRecord, crm: CRM) -> str | None:
    """Exact matches on the identifiers that identify a person: e-mail, phone, account number."""
    clean = record.clean
    with crm.read() as uow:
        repo = uow.contacts
        for field in ("email", "phone", "account_number"):
            value = clean.get(field)
            if value:
                found = repo.first(repo.where(**{field: value}))
                if found is not None:
                    return found.id
    return None


def _merge_into(existing: Any, clean: dict[str, Any]) -> dict[str, Any]:
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


@hookimpl(trylast=True)
def crmkit_persist(record: IntakeRecord, crm: CRM, uow: UnitOfWork) -> str | None:
    if record.match_id and record.on_duplicate != OnDuplicate.CREATE:
        existing = uow.contacts.get(record.match_id)
        changes = _merge_into(existing, record.clean) if record.on_duplicate == OnDuplicate.UPDATE else {}
        if not changes:
            record.outcome = "skipped"
            return existing.id
        before = to_jsonable(existing)
        for key, value in changes.items():
            setattr(existing, key, value)
        uow.contacts.update(existing)
        after = to_jsonable(existing)
        diff = {k: {"from": before[k], "to": after[k]} for k in changes}
        uow.emit("contact.updated", existing.id, {"changes": diff, "version": existing.version, "source": record.source})
        record.outcome = "updated"
        return existing.id
    from crmkit.domain import Contact

    contact = Contact(**{k: v for k, v in record.clean.items() if v is not None})
    contact.created_at = contact.updated_at = utcnow()
    uow.contacts.add(contact)
    payload = to_jsonable(contact)
    payload["intake_source"] = record.source
    uow.emit("contact.created", contact.id, payload)
    record.outcome = "created"
    return contact.id
