"""Exporting contacts, organizations, deals and activities as CSV or JSON Lines, streaming.

Records are read in chunks by keyset pagination on ``(created_at, id)`` — each chunk its own
short read transaction, never the whole table in memory — and written as they come. The CSV of
contacts uses the importer's field paths as headers (``address.city``, ``custom.<name>``,
``external_id.<system>``, ``tags`` comma separated), so it imports back as it is; ``id`` and the
timestamps are there for reference and ignored by the importer.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.domain.values import LifecycleStage, Outcome, parse_datetime, parse_enum
from crmkit.errors import ValidationFailed
from crmkit.serialize import to_jsonable
from crmkit.transfer.mapping import NESTED

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

EXPORT_KINDS = ("contacts", "organizations", "deals", "activities")
EXPORT_FORMATS = ("csv", "jsonl")
CHUNK = 1000

_ADDRESS = [f"address.{name}" for name in NESTED["address"]]
_SOURCE = [f"source.{name}" for name in NESTED["source"]]
_STAMPS = ["created_at", "updated_at", "version"]
CONTACT_COLUMNS = [
    "id", "first_name", "last_name", "email", "phone", *_ADDRESS, "birth_date", "account_number", "job_title",
    "industry", "location", "lifecycle_stage", "owner_id", "organization_id", *_SOURCE, "score", "tags",
]
ORGANIZATION_COLUMNS = ["id", "name", "domain", "industry", "size", "phone", *_ADDRESS, "owner_id", "tags"]
DEAL_COLUMNS = [
    "id", "title", "pipeline", "stage", "status", "amount", "currency", "expected_close", "contact_email", "contact_id",
    "organization_id", "owner_id", "lost_reason", "closed_at",
]
ACTIVITY_COLUMNS = [
    "id", "kind", "occurred_at", "contact_id", "deal_id", "organization_id", "channel", "direction", "subject", "payload",
    "external_id", "created_by", "created_at",
]


@attrs.define(kw_only=True)
class ExportFilters:
    """Which records to export. ``since`` compares with ``updated_at`` (``occurred_at`` for
    activities); ``tag`` keeps records carrying that tag."""

    since: datetime | str | None = None
    tag: str | None = None
    lifecycle_stage: str | None = None
    pipeline: str | None = None
    stage: str | None = None
    status: str | None = None
    kind: str | None = None
    contact_id: str | None = None


def cell(value: Any) -> str:
    """One CSV cell: lists comma separated (tags), objects as JSON, booleans as true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
    return str(value)


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    flat = dict(data)
    for head in ("address", "source"):
        nested = flat.pop(head, None)
        if isinstance(nested, Mapping):
            flat.update({f"{head}.{key}": value for key, value in nested.items()})
    custom = flat.pop("custom", None)
    if isinstance(custom, Mapping):
        flat.update({f"custom.{key}": value for key, value in custom.items()})
    return flat


@attrs.define
class _Plan:
    """How one kind is exported: its repository, columns, conditions and per-chunk extras."""

    repo: str
    columns: list[str]
    conditions: list[sa.ColumnElement[bool]]
    keep: Callable[[Any], bool] = lambda entity: True
    extras: Callable[[UnitOfWork, list[Any]], list[dict[str, Any]]] | None = None


def _since(filters: ExportFilters) -> datetime | None:
    if filters.since is None or filters.since == "":
        return None
    return parse_datetime(filters.since, "since")


def _tag_filter(tag: str | None) -> Callable[[Any], bool]:
    if not tag:
        return lambda entity: True
    wanted = tag.strip().lower()
    # Tags are a JSON list, which SQLite, PostgreSQL and MariaDB query differently; the filter
    # runs on each streamed chunk instead.
    return lambda entity: wanted in entity.tags


def _external_ids(uow: UnitOfWork, ids: list[str]) -> dict[str, dict[str, str]]:
    table = uow.tables["external_ids"]
    found: dict[str, dict[str, str]] = {}
    if ids:
        for row in uow.connection.execute(sa.select(table.c.contact_id, table.c.system, table.c.value).where(table.c.contact_id.in_(ids))):  # type: ignore[union-attr]
            found.setdefault(row.contact_id, {})[row.system] = row.value
    return found


def _custom_columns(crm: CRM, entity: str) -> list[str]:
    return [f"custom.{d.name}" for d in crm.custom_fields.list(entity)]


def _contacts_plan(crm: CRM, uow: UnitOfWork, filters: ExportFilters) -> _Plan:
    table = uow.contacts.table
    conditions: list[sa.ColumnElement[bool]] = []
    if (since := _since(filters)) is not None:
        conditions.append(table.c.updated_at >= since)
    if filters.lifecycle_stage:
        conditions.append(table.c.lifecycle_stage == parse_enum(LifecycleStage, filters.lifecycle_stage, "lifecycle_stage").value)
    systems = [row[0] for row in uow.connection.execute(sa.select(uow.tables["external_ids"].c.system).distinct().order_by(uow.tables["external_ids"].c.system))]  # type: ignore[union-attr]
    columns = [*CONTACT_COLUMNS, *_custom_columns(crm, "contact"), *(f"external_id.{s}" for s in systems), *_STAMPS]

    def extras(uow: UnitOfWork, contacts: list[Any]) -> list[dict[str, Any]]:
        known = _external_ids(uow, [c.id for c in contacts])
        return [{"external_ids": known.get(c.id, {})} for c in contacts]

    return _Plan("contacts", columns, conditions, _tag_filter(filters.tag), extras)


def _organizations_plan(crm: CRM, uow: UnitOfWork, filters: ExportFilters) -> _Plan:
    table = uow.organizations.table
    conditions: list[sa.ColumnElement[bool]] = []
    if (since := _since(filters)) is not None:
        conditions.append(table.c.updated_at >= since)
    columns = [*ORGANIZATION_COLUMNS, *_custom_columns(crm, "organization"), *_STAMPS]
    return _Plan("organizations", columns, conditions, _tag_filter(filters.tag))


def _deals_plan(crm: CRM, uow: UnitOfWork, filters: ExportFilters) -> _Plan:
    from crmkit.services.sales import load_pipeline

    table = uow.deals.table
    conditions: list[sa.ColumnElement[bool]] = []
    if (since := _since(filters)) is not None:
        conditions.append(table.c.updated_at >= since)
    if filters.stage and not filters.pipeline:
        raise ValidationFailed.single("stage", "required", "--stage needs --pipeline (stage names are per pipeline)")
    if filters.pipeline:
        pipeline = load_pipeline(uow, filters.pipeline)
        conditions.append(table.c.pipeline_id == pipeline.id)
        if filters.stage:
            conditions.append(table.c.stage_id == pipeline.stage_named(filters.stage).id)
    if filters.status:
        conditions.append(table.c.status == parse_enum(Outcome, filters.status, "status").value)
    stages = {s.id: s.name for s in uow.stages.list(limit=None, order_by=("id",))}
    pipelines = {p.id: p.name for p in uow.pipelines.list(limit=None, order_by=("id",))}
    columns = [*DEAL_COLUMNS, *_custom_columns(crm, "deal"), *_STAMPS]

    def extras(uow: UnitOfWork, deals: list[Any]) -> list[dict[str, Any]]:
        contact_ids = sorted({d.contact_id for d in deals if d.contact_id})
        emails: dict[str, str | None] = {}
        if contact_ids:
            t = uow.contacts.table
            emails = dict(uow.connection.execute(sa.select(t.c.id, t.c.email).where(t.c.id.in_(contact_ids))).all())  # type: ignore[union-attr,arg-type]
        return [{"pipeline": pipelines.get(d.pipeline_id), "stage": stages.get(d.stage_id),
                 "contact_email": emails.get(d.contact_id) if d.contact_id else None} for d in deals]

    return _Plan("deals", columns, conditions, extras=extras)


def _activities_plan(crm: CRM, uow: UnitOfWork, filters: ExportFilters) -> _Plan:
    table = uow.activities.table
    conditions: list[sa.ColumnElement[bool]] = []
    if (since := _since(filters)) is not None:
        conditions.append(table.c.occurred_at >= since)
    if filters.kind:
        conditions.append(table.c.kind == filters.kind.strip().lower())
    if filters.contact_id:
        conditions.append(table.c.contact_id == filters.contact_id)
    return _Plan("activities", list(ACTIVITY_COLUMNS), conditions)


_PLANS = {"contacts": _contacts_plan, "organizations": _organizations_plan, "deals": _deals_plan, "activities": _activities_plan}


def iter_records(crm: CRM, kind: str, filters: ExportFilters | None = None, *, chunk_size: int = CHUNK) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """``(csv columns, records)``: the records as JSON-ready dicts, streamed chunk by chunk."""
    if kind not in _PLANS:
        raise ValidationFailed.single("kind", "invalid_choice", f"{kind!r} is not one of: {', '.join(EXPORT_KINDS)}")
    filters = filters or ExportFilters()
    with crm.read() as uow:
        plan = _PLANS[kind](crm, uow, filters)

    def records() -> Iterator[dict[str, Any]]:
        after: tuple[Any, ...] | None = None
        while True:
            with crm.read() as uow:
                repo = getattr(uow, plan.repo)
                chunk = repo.list(plan.conditions, order_by=("created_at", "id"), limit=chunk_size, after=after)
                extras = plan.extras(uow, chunk) if plan.extras and chunk else [{} for _ in chunk]
            for entity, extra in zip(chunk, extras, strict=True):
                if plan.keep(entity):
                    yield {**to_jsonable(entity), **extra}
            if len(chunk) < chunk_size:
                return
            after = (chunk[-1].created_at, chunk[-1].id)

    return plan.columns, records()


def export(crm: CRM, kind: str, out: IO[str], *, format: str = "csv", filters: ExportFilters | None = None, chunk_size: int = CHUNK) -> int:
    """Write ``kind`` records to ``out`` (a text stream; for CSV open it with ``newline=""``)
    and return how many were written."""
    if format not in EXPORT_FORMATS:
        raise ValidationFailed.single("format", "invalid_choice", f"{format!r} is not one of: {', '.join(EXPORT_FORMATS)}")
    columns, records = iter_records(crm, kind, filters, chunk_size=chunk_size)
    count = 0
    if format == "jsonl":
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            count += 1
        return count
    writer = csv.writer(out)
    writer.writerow(columns)
    for record in records:
        flat = _flatten(record)
        for system, value in (flat.pop("external_ids", None) or {}).items():
            flat[f"external_id.{system}"] = value
        writer.writerow([cell(flat.get(column)) for column in columns])
        count += 1
    return count


def export_contacts(crm: CRM, out: IO[str], *, format: str = "csv", **filters: Any) -> int:
    return export(crm, "contacts", out, format=format, filters=ExportFilters(**filters))


def export_organizations(crm: CRM, out: IO[str], *, format: str = "csv", **filters: Any) -> int:
    return export(crm, "organizations", out, format=format, filters=ExportFilters(**filters))


def export_deals(crm: CRM, out: IO[str], *, format: str = "csv", **filters: Any) -> int:
    return export(crm, "deals", out, format=format, filters=ExportFilters(**filters))


def export_activities(crm: CRM, out: IO[str], *, format: str = "csv", **filters: Any) -> int:
    return export(crm, "activities", out, format=format, filters=ExportFilters(**filters))
