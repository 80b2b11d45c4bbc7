"""What every service shares: access to the CRM's unit-of-work factory, reads, and the
generic create/update/delete of one entity type with validation and events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from crmkit.domain import fields as f
from crmkit.domain.custom_fields import CustomFieldDefinition, validate_custom
from crmkit.domain.values import IssueCollector
from crmkit.serialize import to_jsonable
from crmkit.storage.sql.repository import Repository

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

E = TypeVar("E")

READ_ONLY = ("id", "version", "created_at", "updated_at")


@attrs.define
class ValidationContext:
    """Per-batch validation state: specs and custom fields loaded once, references cached."""

    uow: UnitOfWork
    specs: list[f.FieldSpec]
    custom: list[CustomFieldDefinition]
    known_ids: set[tuple[str, str]] = attrs.field(factory=set)
    #: The specs made ready once for every record of the batch (see :class:`~crmkit.domain.fields.FieldParser`).
    parser: f.FieldParser = attrs.field(init=False)
    #: Whether an empty ``custom`` object can still fail (a required custom field).
    custom_required: bool = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.parser = f.FieldParser(self.specs, READ_ONLY)
        self.custom_required = any(d.required for d in self.custom)

    def exists(self, repo_name: str, ident: str) -> bool:
        if (repo_name, ident) in self.known_ids:
            return True
        if getattr(self.uow, repo_name).find(ident) is None:
            return False
        self.known_ids.add((repo_name, ident))
        return True



class Service:
    def __init__(self, crm: CRM):
        self.crm = crm

    def uow(self, actor: str | None = None) -> UnitOfWork:
        return self.crm.uow(actor=actor)


class EntityService(Service, Generic[E]):
    """CRUD for one entity type. Subclasses name the repository, the event prefix and the
    field specs; every write validates all fields, rejects unknown and read-only ones, and
    emits ``<kind>.created|updated|deleted`` in the same transaction."""

    repo_name: str
    kind: str
    entity_cls: type
    custom_entity: str | None = None  # entity name for custom-field definitions

    def specs(self) -> list[f.FieldSpec]:
        return self.entity_cls.field_specs()  # type: ignore[attr-defined,no-any-return]

    def repo(self, uow: UnitOfWork) -> Repository[E]:
        return getattr(uow, self.repo_name)  # type: ignore[no-any-return]

    def _custom_definitions(self, uow: UnitOfWork) -> list[CustomFieldDefinition]:
        if self.custom_entity is None:
            return []
        return uow.custom_fields.list(uow.custom_fields.where(entity=self.custom_entity), order_by=("name",))

    def validation_context(self, uow: UnitOfWork) -> ValidationContext:
        """What validating many records needs once: field specs, custom field definitions,
        and a cache of referenced ids already checked."""
        return ValidationContext(uow=uow, specs=self.specs(), custom=self._custom_definitions(uow))

    def parse(self, uow: UnitOfWork, data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """Validate ``data`` (core fields and custom fields) and return clean values."""
        return self.parse_with(self.validation_context(uow), data, partial=partial)

    def parse_with(self, context: ValidationContext, data: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        # Core and custom fields are checked side by side so one answer lists every problem.
        collector = IssueCollector()
        clean = collector.run(context.parser.parse, data, partial=partial)
        if self.custom_entity is not None and ("custom" in data or not partial):
            raw = data.get("custom")
            if raw in (None, "") or isinstance(raw, Mapping):  # anything else: parse_input reported it
                # Empty with no required custom field: validate_custom([...], {}) is {} (a batch's
                # rows mostly carry no custom values, so the call is skipped for them).
                custom = {} if not raw and not context.custom_required else collector.run(validate_custom, context.custom, raw or {}, partial=partial)
                if clean is not None:
                    clean["custom"] = custom
        collector.raise_if_any()
        assert clean is not None
        self.check(context, clean, partial=partial)
        return clean

    def check(self, context: ValidationContext, clean: dict[str, Any], *, partial: bool) -> None:
        """Cross-field and reference checks; override and raise ``ValidationFailed``."""

    def create(self, data: Mapping[str, Any], *, actor: str | None = None) -> E:
        with self.uow(actor) as uow:
            return self.create_in(uow, data)

    def create_in(self, uow: UnitOfWork, data: Mapping[str, Any]) -> E:
        clean = self.parse(uow, data)
        entity = self.entity_cls(**{k: v for k, v in clean.items() if v is not None or k not in _DEFAULTED})
        self.repo(uow).add(entity)
        uow.emit(f"{self.kind}.created", entity.id, to_jsonable(entity))  # type: ignore[attr-defined]
        return entity  # type: ignore[no-any-return]

    def get(self, ident: str) -> E:
        with self.crm.read() as uow:
            return self.repo(uow).get(ident)

    def find(self, ident: str) -> E | None:
        with self.crm.read() as uow:
            return self.repo(uow).find(ident)

    def list(self, *, limit: int | None = 100, after: Sequence[Any] | None = None, **equals: Any) -> list[E]:
        with self.crm.read() as uow:
            repo = self.repo(uow)
            return repo.list(repo.where(**{k: v for k, v in equals.items()}), limit=limit, after=after)

    def count(self, **equals: Any) -> int:
        with self.crm.read() as uow:
            repo = self.repo(uow)
            return repo.count(repo.where(**equals))

    def update(self, ident: str, changes: Mapping[str, Any], *, expected_version: int | None = None, actor: str | None = None) -> E:
        """Apply ``changes``; with ``expected_version`` the write fails with a conflict if the
        record changed since the caller read that version."""
        with self.uow(actor) as uow:
            return self.update_in(uow, ident, changes, expected_version=expected_version)

    def update_in(self, uow: UnitOfWork, ident: str, changes: Mapping[str, Any], *, expected_version: int | None = None) -> E:
        entity = self.repo(uow).get(ident)
        clean = self.parse(uow, changes, partial=True)
        before = to_jsonable(entity)
        for key, value in clean.items():
            if key == "custom" and isinstance(changes.get("custom"), Mapping):
                # An update names the custom fields it changes; the others stay. A field given
                # as null/empty is removed (validate_custom already refused that for required ones).
                cleared = {k for k, v in changes["custom"].items() if v is None or v == ""}
                value = {k: v for k, v in {**entity.custom, **(value or {})}.items() if k not in cleared}  # type: ignore[attr-defined]
            elif value is None and key in _DEFAULTED:
                value = attrs.fields_dict(type(entity))[key].default
                value = value.factory() if isinstance(value, attrs.Factory) else value  # type: ignore[attr-defined]
            setattr(entity, key, value)
        self.repo(uow).update(entity, expected_version if expected_version is not None else entity.version)  # type: ignore[attr-defined]
        after = to_jsonable(entity)
        changed = {k: {"from": before[k], "to": after[k]} for k in after if before.get(k) != after[k] and k not in ("version", "updated_at")}
        uow.emit(f"{self.kind}.updated", ident, {"changes": changed, "version": entity.version})  # type: ignore[attr-defined]
        return entity

    def delete(self, ident: str, *, expected_version: int | None = None, actor: str | None = None) -> None:
        with self.uow(actor) as uow:
            self.repo(uow).delete(ident, expected_version)
            uow.emit(f"{self.kind}.deleted", ident, {})


#: Fields whose "empty" is a default value rather than None (lists, dicts, nested objects).
_DEFAULTED = frozenset({"tags", "custom", "address", "source", "lifecycle_stage", "score", "amount", "currency", "payload", "evidence", "direction", "spend", "role"})

