"""Importing contacts, organizations and deals from files.

Rows are read lazily (:mod:`crmkit.transfer.readers`), mapped onto fields
(:mod:`crmkit.transfer.mapping`) and written in batches: contacts go through the intake pipeline
(``crm.intake.submit_many``), so an imported row is normalised, validated, matched and written
exactly like an API call; organizations and deals through their services, one unit of work per
batch. Every rejected row lands in the errors file with its reasons (:mod:`.errors_file`).

Re-running an import changes nothing: contacts match on e-mail, phone, account number or an
external id, and a row with none of those gets a stable external id derived from its content
(``import:<sha256>``); organizations match on domain or name; deals on pipeline, title, contact
and organization.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.errors import FieldIssue, ValidationFailed
from crmkit.intake import IntakeRecord, OnDuplicate
from crmkit.transfer.errors_file import ErrorsFile, default_errors_path
from crmkit.transfer.mapping import (
    CONTACT_ALIASES,
    DEAL_ALIASES,
    NESTED,
    ORGANIZATION_ALIASES,
    ColumnMap,
    EntityFields,
    parse_overrides,
)
from crmkit.transfer.parallel import check_workers, prepared_in_workers
from crmkit.transfer.readers import RowSource, SourceRow

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

#: System name of the external ids an import gives rows that carry no identifier of their own.
ROW_KEY_SYSTEM = "import"
#: Fields by which a contact is matched without an external id (see intake_defaults.MATCH_KEYS).
CONTACT_KEYS = ("email", "phone", "account_number")
PROGRESS_EVERY = 1000

Progress = Callable[["ImportSummary", int, int], None]


@attrs.define
class ImportSummary:
    """What an import did. ``read`` counts data rows (blank lines aside); every row read is
    exactly one of created, updated, skipped or rejected."""

    kind: str
    file: str
    read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    rejected: int = 0
    errors_file: str | None = None
    dry_run: bool = False
    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None

    def count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(kw_only=True)
class ImportOptions:
    """Options every importer takes (see :func:`import_contacts`)."""

    mapping: Mapping[str, str] | Sequence[str] | None = None
    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    on_duplicate: OnDuplicate | str = OnDuplicate.UPDATE
    dry_run: bool = False
    batch_size: int = 1000
    errors_path: str | os.PathLike[str] | None = None
    ignore_unknown: bool = False
    defer_events: bool = False
    actor: str | None = None
    progress: Progress | None = None

    def overrides(self) -> dict[str, str]:
        if self.mapping is None:
            return {}
        if isinstance(self.mapping, Mapping):
            return {str(k): str(v) for k, v in self.mapping.items()}
        return parse_overrides(self.mapping)

    def duplicate_mode(self) -> OnDuplicate:
        try:
            return OnDuplicate(self.on_duplicate)
        except ValueError:
            allowed = ", ".join(m.value for m in OnDuplicate)
            raise ValidationFailed.single("on_duplicate", "invalid_choice", f"{self.on_duplicate!r} is not one of: {allowed}") from None

    def check(self) -> None:
        if self.batch_size < 1:
            raise ValidationFailed.single("batch_size", "out_of_range", "must be at least 1")
        self.duplicate_mode()


def _custom_names(crm: CRM, entity: str) -> frozenset[str]:
    return frozenset(d.name for d in crm.custom_fields.list(entity))


def contact_fields(crm: CRM) -> EntityFields:
    plain = {spec.name for spec in crm.contacts.specs()} - set(NESTED) - {"custom"}
    return EntityFields("contact", frozenset(plain | {"name", "full_name"}), NESTED, CONTACT_ALIASES,
                        custom=_custom_names(crm, "contact"), external_ids=True)


def organization_fields(crm: CRM) -> EntityFields:
    plain = {spec.name for spec in crm.organizations.specs()} - {"address", "custom"}
    return EntityFields("organization", frozenset(plain), {"address": NESTED["address"]}, ORGANIZATION_ALIASES,
                        custom=_custom_names(crm, "organization"))


def deal_fields(crm: CRM) -> EntityFields:
    plain = {spec.name for spec in crm.deals.specs()} - {"custom"}
    plain |= {"pipeline", "stage", "contact_email", "organization", "owner_email"}
    return EntityFields("deal", frozenset(plain), {}, DEAL_ALIASES, custom=_custom_names(crm, "deal"),
                        ignored=frozenset({"status", "closed_at", "pipeline_id", "stage_id"}))


def row_key(data: Mapping[str, Any]) -> str:
    """A stable key for a row's content: the same values (whitespace aside) give the same key."""

    def tidy(value: Any) -> Any:
        if isinstance(value, str):
            return " ".join(value.split())
        if isinstance(value, Mapping):
            return {str(k): tidy(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [tidy(v) for v in value]
        return value

    text = json.dumps(tidy(data), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class _Run:
    """One import run: the open file, its column map, the errors file and the summary."""

    def __init__(self, crm: CRM, kind: str, path: str | os.PathLike[str], fields: EntityFields, options: ImportOptions):
        options.check()
        self.crm = crm
        self.options = options
        self._dispatch_inline = crm.dispatch_inline
        self.source = RowSource(path, format=options.format, encoding=options.encoding, delimiter=options.delimiter)
        try:
            self.columns = ColumnMap(fields, options.overrides(), ignore_unknown=options.ignore_unknown)
            if self.source.columns is not None:
                self.columns.check_columns(self.source.columns)
        except BaseException:
            self.source.close()
            raise
        self.summary = ImportSummary(kind, str(path), dry_run=options.dry_run, format=self.source.format,
                                     encoding=self.source.encoding, delimiter=self.source.delimiter)
        errors_path = Path(options.errors_path) if options.errors_path else default_errors_path(self.source.path, self.source.format)
        self.errors = ErrorsFile(errors_path, format=self.source.format, columns=self.source.columns)
        self._reported = 0

    def rows(self) -> Iterator[tuple[SourceRow, dict[str, Any], dict[str, str]]]:
        """Readable, mappable rows as ``(row, data, external_ids)``; the others are rejected here."""
        for row in self.source:
            self.summary.read += 1
            if row.problem is not None:
                self.reject(row.number, row.raw, [row.problem])
                continue
            try:
                data, external = self.columns.apply(row.values)
            except ValidationFailed as exc:
                self.reject(row.number, row.raw, exc.issues)
                continue
            yield row, data, external

    def reject(self, number: int, raw: Any, issues: Sequence[FieldIssue]) -> None:
        self.summary.rejected += 1
        self.errors.write(number, raw, issues)

    def tick(self, force: bool = False) -> None:
        progress = self.options.progress
        if progress is not None and (force or self.summary.read - self._reported >= PROGRESS_EVERY):
            self._reported = self.summary.read
            progress(self.summary, self.source.bytes_read, self.source.size)

    def __enter__(self) -> _Run:
        if self.options.defer_events:
            self.crm.dispatch_inline = False  # events wait in the outbox for the dispatcher
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.errors.__exit__(exc_type, exc, tb)
        finally:
            self.source.close()
            self.crm.dispatch_inline = self._dispatch_inline
        self.summary.errors_file = str(self.errors.path) if self.errors.path else None
        if exc_type is None:
            self.tick(force=True)


# --- contacts -----------------------------------------------------------------------------


def import_contacts(crm: CRM, path: str | os.PathLike[str], *, workers: int = 1, **options: Any) -> ImportSummary:
    """Import contacts from a CSV, JSON Lines or XLSX file through the intake pipeline.

    :param mapping: ``{column: field}`` or ``["column=field", …]``; an empty field skips the
        column. Other columns are mapped by their header (see :mod:`crmkit.transfer.mapping`).
    :param format: ``csv``, ``jsonl`` or ``xlsx`` (default: from the file name).
    :param encoding: force the file's encoding (default: detected).
    :param delimiter: force the CSV delimiter (default: sniffed).
    :param on_duplicate: ``update`` (default), ``skip`` or ``create`` for rows matching an
        existing contact.
    :param dry_run: validate and match, write nothing to the CRM (the errors file is written).
    :param batch_size: rows per intake batch (one transaction each).
    :param errors_path: where rejected rows go (default: ``<file stem>.errors.csv`` beside it).
    :param ignore_unknown: skip columns that map to no field instead of failing.
    :param defer_events: leave the import's events in the outbox for ``crmkit events drain`` or
        a worker instead of dispatching them to subscribers after every batch (each subscriber
        costs its own work per event, which can dwarf the import itself).
    :param workers: processes that validate rows in parallel (1: all in this process).
    :param actor: who the changes are attributed to.
    :param progress: called with ``(summary, bytes_read, file_size)`` now and then.
    :raises ValidationFailed: for a problem with the file or the options (nothing is written).
    """
    opts = ImportOptions(**options)
    check_workers(crm, workers)
    mode = opts.duplicate_mode()
    with _Run(crm, "contacts", path, contact_fields(crm), opts) as run:
        raw_rows: dict[int, Any] = {}  # rows whose batch is in flight, for the errors file

        def records() -> Iterator[IntakeRecord]:
            for row, data, external in run.rows():
                if not external and not (data.get("email") or data.get("phone") or data.get("account_number")):  # CONTACT_KEYS
                    external = {ROW_KEY_SYSTEM: row_key(data)}
                raw_rows[row.number] = row.raw
                context = {"import_row": row.number}
                if isinstance(row.values.get("id"), str) and row.values["id"].strip():
                    context["import_id"] = row.values["id"].strip()
                yield IntakeRecord(data=data, source="import", on_duplicate=mode, external_ids=external, context=context)

        stream: Iterable[IntakeRecord] = _match_exported_ids(crm, records(), opts.batch_size)
        if workers > 1:
            stream = prepared_in_workers(crm, stream, batch_size=opts.batch_size, workers=workers)
        results = crm.intake.submit_many(stream, batch_size=opts.batch_size, actor=opts.actor, dry_run=opts.dry_run, prepared=workers > 1)
        for record in results:
            number = record.context["import_row"]
            raw = raw_rows.pop(number)
            if record.rejected:
                run.reject(number, raw, record.issues)
            else:
                run.summary.count(record.outcome or "skipped")
            run.tick()
    return run.summary


def _match_exported_ids(crm: CRM, records: Iterable[IntakeRecord], batch_size: int) -> Iterator[IntakeRecord]:
    """A row carrying the ``id`` of a contact of this CRM (an export imported back) matches
    that contact; an id unknown here (an export of another CRM) is ignored."""
    source = iter(records)
    while chunk := list(itertools.islice(source, batch_size)):
        wanted = sorted({r.context["import_id"] for r in chunk if "import_id" in r.context})
        if wanted:
            with crm.read() as uow:
                table = uow.contacts.table
                known = {ident for (ident,) in uow.connection.execute(sa.select(table.c.id).where(table.c.id.in_(wanted)))}  # type: ignore[union-attr]
            for record in chunk:
                if record.context.get("import_id") in known:
                    record.match_id = record.context["import_id"]
        yield from chunk


# --- organizations and deals: through their services --------------------------------------


class _DryRun(Exception):
    """Raised at the end of a dry-run batch so its unit of work rolls back."""


BatchHandler = Callable[["UnitOfWork", list[tuple[SourceRow, dict[str, Any]]]], list[tuple[str, list[FieldIssue]]]]


def _import_with_service(crm: CRM, kind: str, path: str | os.PathLike[str], fields: EntityFields, opts: ImportOptions,
                         handler: Callable[[CRM, OnDuplicate], BatchHandler]) -> ImportSummary:
    handle = handler(crm, opts.duplicate_mode())
    with _Run(crm, kind, path, fields, opts) as run:
        batch: list[tuple[SourceRow, dict[str, Any]]] = []

        def flush() -> None:
            outcomes: list[tuple[str, list[FieldIssue]]] = []
            try:
                with crm.uow(opts.actor) as uow:
                    outcomes = handle(uow, batch)
                    if opts.dry_run:
                        raise _DryRun
            except _DryRun:
                pass
            for (row, _), (outcome, issues) in zip(batch, outcomes, strict=True):
                if outcome == "rejected":
                    run.reject(row.number, row.raw, issues)
                else:
                    run.summary.count(outcome)
            batch.clear()
            run.tick()

        for row, data, _external in run.rows():
            batch.append((row, data))
            if len(batch) >= opts.batch_size:
                flush()
        if batch:
            flush()
    return run.summary


def _chunks(values: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    items = sorted(set(values))
    for start in range(0, len(items), size):
        yield items[start:start + size]


def normalize_domain(value: Any) -> str:
    """``https://www.Example.com/about`` → ``example.com`` (for matching, not for storing)."""
    text = str(value).strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0]
    return text.removeprefix("www.")


def _changes_or_skip(service: Any, uow: UnitOfWork, ident: str, data: Mapping[str, Any]) -> str:
    """Update ``ident`` with the row's values (non-empty values win, tags and custom fields
    merge, as for contacts); ``updated`` or ``skipped`` when nothing would change."""
    from crmkit.builtin.intake_defaults import merge_changes

    clean = service.parse(uow, data, partial=True)
    existing = service.repo(uow).get(ident)
    changes = merge_changes(existing, {k: v for k, v in clean.items() if hasattr(existing, k)})
    if not changes:
        return "skipped"
    service.update_in(uow, ident, changes)
    return "updated"


def _write(mode: OnDuplicate, match: str | None, update: Callable[[], str], create: Callable[[], None]) -> tuple[str, list[FieldIssue]]:
    """Skip, update or create one row as ``mode`` says; a rejected row comes back with its issues."""
    try:
        if match and mode == OnDuplicate.SKIP:
            return "skipped", []
        if match and mode == OnDuplicate.UPDATE:
            return update(), []
        create()
        return "created", []
    except ValidationFailed as exc:
        return "rejected", exc.issues


def _organization_handler(crm: CRM, mode: OnDuplicate) -> BatchHandler:
    def handle(uow: UnitOfWork, batch: list[tuple[SourceRow, dict[str, Any]]]) -> list[tuple[str, list[FieldIssue]]]:
        table = uow.organizations.table
        domains = {normalize_domain(d["domain"]) for _, d in batch if d.get("domain")}
        names = {str(d["name"]).strip().lower() for _, d in batch if d.get("name")}
        by_domain: dict[str, str] = {}
        by_name: dict[str, str] = {}
        # Oldest first, so the first organization of a name or domain is the one matched.
        order = (table.c.created_at.desc(), table.c.id.desc())
        # Stored domains are as typed (``https://www.acme.com/``): find candidates containing
        # the bare domain, then keep those whose normalised form is equal.
        for chunk in _chunks(domains, 100):
            condition = sa.or_(*(sa.func.lower(table.c.domain).contains(d, autoescape=True) for d in chunk))
            for ident, domain in uow.connection.execute(sa.select(table.c.id, table.c.domain).where(condition).order_by(*order)):  # type: ignore[union-attr]
                if normalize_domain(domain) in domains:
                    by_domain[normalize_domain(domain)] = ident
        for chunk in _chunks(names):
            for ident, name in uow.connection.execute(sa.select(table.c.id, table.c.name).where(sa.func.lower(table.c.name).in_(chunk)).order_by(*order)):  # type: ignore[union-attr]
                by_name[name.strip().lower()] = ident
        outcomes: list[tuple[str, list[FieldIssue]]] = []
        for _, data in batch:
            domain = normalize_domain(data["domain"]) if data.get("domain") else None
            name = str(data.get("name") or "").strip().lower() or None
            match = (by_domain.get(domain) if domain else None) or (by_name.get(name) if name else None)

            def create(data: dict[str, Any] = data, domain: str | None = domain, name: str | None = name) -> None:
                created = crm.organizations.create_in(uow, data)
                if domain:
                    by_domain.setdefault(domain, created.id)
                if name:
                    by_name.setdefault(name, created.id)

            outcomes.append(_write(mode, match, lambda m=match, d=data: _changes_or_skip(crm.organizations, uow, m, d), create))
        return outcomes

    return handle


def import_organizations(crm: CRM, path: str | os.PathLike[str], **options: Any) -> ImportSummary:
    """Import organizations (matched by domain, then by name); options as for
    :func:`import_contacts` (without ``workers``)."""
    opts = ImportOptions(**options)
    return _import_with_service(crm, "organizations", path, organization_fields(crm), opts, _organization_handler)


def _lookup(uow: UnitOfWork, table: sa.Table, column: str, values: Iterable[str]) -> dict[str, str]:
    """lower(value) → id for rows whose ``column`` is one of ``values`` (case-insensitive)."""
    found: dict[str, str] = {}
    col = table.c[column]
    for chunk in _chunks(v.strip().lower() for v in values):
        stmt = sa.select(col, table.c.id).where(sa.func.lower(col).in_(chunk)).order_by(table.c.created_at.desc(), table.c.id.desc())
        for value, ident in uow.connection.execute(stmt):  # type: ignore[union-attr]
            found[str(value).strip().lower()] = ident
    return found


def _deal_handler(default_pipeline: str | None) -> Callable[[CRM, OnDuplicate], BatchHandler]:
    def make(crm: CRM, mode: OnDuplicate) -> BatchHandler:
        from crmkit.services.sales import load_pipeline

        pipelines: dict[str, Any] = {}

        def pipeline_of(uow: UnitOfWork, ref: str) -> Any:
            if ref not in pipelines:
                pipelines[ref] = load_pipeline(uow, ref)
            return pipelines[ref]

        def handle(uow: UnitOfWork, batch: list[tuple[SourceRow, dict[str, Any]]]) -> list[tuple[str, list[FieldIssue]]]:
            contacts = _lookup(uow, uow.contacts.table, "email", (str(d["contact_email"]) for _, d in batch if d.get("contact_email")))
            users = _lookup(uow, uow.users.table, "email", (str(d["owner_email"]) for _, d in batch if d.get("owner_email")))
            orgs_by_name = _lookup(uow, uow.organizations.table, "name", (str(d["organization"]) for _, d in batch if d.get("organization")))
            orgs_by_domain = _lookup(uow, uow.organizations.table, "domain", (str(d["organization"]) for _, d in batch if d.get("organization")))
            deals = uow.deals.table
            existing: dict[tuple[str, str, str | None, str | None], str] = {}
            for chunk in _chunks(str(d["title"]).strip() for _, d in batch if d.get("title")):
                stmt = sa.select(deals.c.id, deals.c.title, deals.c.pipeline_id, deals.c.contact_id, deals.c.organization_id).where(
                    deals.c.title.in_(chunk)).order_by(deals.c.created_at.desc(), deals.c.id.desc())
                for row in uow.connection.execute(stmt):  # type: ignore[union-attr]
                    existing[(row.pipeline_id, row.title.strip().lower(), row.contact_id, row.organization_id)] = row.id
            outcomes: list[tuple[str, list[FieldIssue]]] = []
            for _, raw in batch:
                data = dict(raw)
                issues: list[FieldIssue] = []
                email = data.pop("contact_email", None)
                if email:
                    data["contact_id"] = contacts.get(str(email).strip().lower())
                    if data["contact_id"] is None:
                        issues.append(FieldIssue("contact_email", "not_found", f"no contact with e-mail {email!r}"))
                owner = data.pop("owner_email", None)
                if owner:
                    data["owner_id"] = users.get(str(owner).strip().lower())
                    if data["owner_id"] is None:
                        issues.append(FieldIssue("owner_email", "not_found", f"no user with e-mail {owner!r}"))
                org = data.pop("organization", None)
                if org:
                    org_key = str(org).strip().lower()
                    data["organization_id"] = orgs_by_name.get(org_key) or orgs_by_domain.get(org_key)
                    if data["organization_id"] is None:
                        issues.append(FieldIssue("organization", "not_found", f"no organization named {org!r}"))
                data.setdefault("pipeline", default_pipeline)
                try:
                    if issues:  # report the row's other problems too
                        try:
                            crm.deals.parse(uow, {k: v for k, v in data.items() if k not in ("pipeline", "stage")})
                        except ValidationFailed as exc:
                            issues.extend(exc.issues)
                        raise ValidationFailed(issues)
                    if not data.get("pipeline"):
                        raise ValidationFailed.single("pipeline", "required", "is required (a pipeline column, or --pipeline)")
                    pipeline = pipeline_of(uow, str(data["pipeline"]))
                except ValidationFailed as exc:
                    outcomes.append(("rejected", exc.issues))
                    continue
                key = (pipeline.id, str(data.get("title") or "").strip().lower(), data.get("contact_id"), data.get("organization_id"))

                def create(data: dict[str, Any] = data, key: tuple[str, str, str | None, str | None] = key) -> None:
                    existing.setdefault(key, crm.deals.create_in(uow, data).id)

                match = existing.get(key)
                changes = {k: v for k, v in data.items() if k not in ("pipeline", "stage")}
                outcomes.append(_write(mode, match, lambda m=match, c=changes: _changes_or_skip(crm.deals, uow, m, c), create))
            return outcomes

        return handle

    return make


def import_deals(crm: CRM, path: str | os.PathLike[str], *, pipeline: str | None = None, **options: Any) -> ImportSummary:
    """Import deals. Columns: ``title``, ``pipeline`` (name or id; or the ``pipeline`` argument
    for every row), ``stage`` (default: the pipeline's first), ``amount``, ``currency``,
    ``expected_close``, ``contact_email``, ``organization`` (name or domain), ``owner_email``,
    ``custom.<name>``. A deal matches an existing one with the same pipeline, title, contact and
    organization; a re-import updates its fields but does not move it between stages (that is
    ``crmkit deals move``, which records the stage history). Other options as for
    :func:`import_contacts` (without ``workers``)."""
    opts = ImportOptions(**options)
    return _import_with_service(crm, "deals", path, deal_fields(crm), opts, _deal_handler(pipeline))
