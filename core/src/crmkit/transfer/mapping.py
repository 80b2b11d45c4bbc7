"""From a file's columns to crmkit's fields.

A column is mapped explicitly (``--map "E-Mail Adresse=email"``), or automatically when its
header is a field name or a common spelling of one (``E-mail``, ``Zip code``, ``Surname`` …).
Targets are field paths: ``email``, nested ``address.city`` / ``source.utm_campaign``,
``custom.<name>``, ``tags`` (comma separated) and ``external_id.<system>``. Columns an import
file carries but that are not data (``_row``/``_errors`` of an errors file, the ``id`` and
timestamps of an export) are ignored; any other column that maps to nothing is an error before
a single row is read, naming the column and the closest field, so data is never dropped
silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from crmkit.errors import FieldIssue, ValidationFailed

#: Columns every importer skips: bookkeeping of errors files and of exports.
IGNORED_COLUMNS = frozenset({"_row", "_errors", "id", "version", "created_at", "updated_at"})
NESTED = {
    "address": ("street", "city", "region", "postcode", "country"),
    "source": ("channel", "campaign_id", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"),
}
_ADDRESS_ALIASES = {
    "street": "address.street", "address": "address.street", "street_address": "address.street", "address_line_1": "address.street",
    "address1": "address.street", "city": "address.city", "town": "address.city", "state": "address.region",
    "region": "address.region", "province": "address.region", "county": "address.region", "zip": "address.postcode",
    "zip_code": "address.postcode", "zipcode": "address.postcode", "postal_code": "address.postcode",
    "postcode": "address.postcode", "post_code": "address.postcode", "country": "address.country", "country_code": "address.country",
}
CONTACT_ALIASES = {
    **_ADDRESS_ALIASES,
    "firstname": "first_name", "first": "first_name", "given_name": "first_name", "forename": "first_name",
    "lastname": "last_name", "last": "last_name", "surname": "last_name", "family_name": "last_name",
    "full_name": "name", "fullname": "name", "contact_name": "name",
    "e_mail": "email", "mail": "email", "email_address": "email", "e_mail_address": "email",
    "phone_number": "phone", "telephone": "phone", "tel": "phone", "mobile": "phone", "mobile_phone": "phone", "cell": "phone",
    "account": "account_number", "account_no": "account_number", "customer_number": "account_number",
    "title": "job_title", "position": "job_title", "birthday": "birth_date", "date_of_birth": "birth_date",
    "dob": "birth_date", "birthdate": "birth_date", "lifecycle": "lifecycle_stage", "stage": "lifecycle_stage",
    "tag": "tags", "labels": "tags", "owner": "owner_id", "organization": "organization_id",
    "channel": "source.channel", "utm_source": "source.utm_source", "utm_medium": "source.utm_medium",
    "utm_campaign": "source.utm_campaign", "utm_term": "source.utm_term", "utm_content": "source.utm_content",
}
ORGANIZATION_ALIASES = {
    **_ADDRESS_ALIASES,
    "company": "name", "company_name": "name", "organization": "name", "organisation": "name", "organization_name": "name",
    "account_name": "name", "website": "domain", "web": "domain", "url": "domain", "domain_name": "domain",
    "employees": "size", "company_size": "size", "phone_number": "phone", "telephone": "phone", "tag": "tags", "owner": "owner_id",
}
DEAL_ALIASES = {
    "deal": "title", "deal_name": "title", "name": "title", "deal_stage": "stage", "pipeline_name": "pipeline",
    "value": "amount", "deal_value": "amount", "close_date": "expected_close", "expected_close_date": "expected_close",
    "contact": "contact_email", "email": "contact_email", "e_mail": "contact_email", "contact_e_mail": "contact_email",
    "company": "organization", "account": "organization", "organization_name": "organization", "owner": "owner_email",
}


def header_key(name: str) -> str:
    """``"E-mail Address "`` → ``"e_mail_address"``: how headers are compared with fields."""
    return re.sub(r"[^0-9a-z.]+", "_", name.strip().lower()).strip("_")


@attrs.frozen
class Target:
    """Where one column's value goes: ``path`` is ``("email",)``, ``("address", "city")``,
    ``("custom", "budget")`` or ``("external_id", "shop")``."""

    path: tuple[str, ...]

    @property
    def name(self) -> str:
        return ".".join(self.path)


@attrs.define
class EntityFields:
    """What one kind of record accepts as import targets."""

    kind: str
    plain: frozenset[str]
    nested: Mapping[str, Sequence[str]]
    aliases: Mapping[str, str]
    custom: frozenset[str] = frozenset()
    external_ids: bool = False
    #: Columns of this kind's export that are not input (a deal's ``status`` follows its stage).
    ignored: frozenset[str] = frozenset()

    def parse_target(self, text: str) -> Target:
        """Resolve a field path as written in ``--map``; raise naming it when it is not a field."""
        name = text.strip()
        head, _, rest = name.partition(".")
        if not rest and head in self.plain:
            return Target((head,))
        if head in self.nested and rest in self.nested[head]:
            return Target((head, rest))
        if head == "custom" and rest:
            if rest not in self.custom:
                defined = ", ".join(sorted(self.custom)) or "none"
                raise ValidationFailed.single(
                    name, "unknown_field", f"{self.kind}s have no custom field {rest!r} (defined: {defined}; see crmkit custom-fields)")
            return Target(("custom", rest))
        if head == "external_id" and rest and self.external_ids:
            return Target(("external_id", rest))
        raise ValidationFailed.single(name, "unknown_field", f"is not a {self.kind} field{_suggest(name, self.all_names())}")

    def all_names(self) -> list[str]:
        names = sorted(self.plain) + [f"{h}.{s}" for h, subs in self.nested.items() for s in subs]
        names += [f"custom.{c}" for c in sorted(self.custom)]
        return names + (["external_id.<system>"] if self.external_ids else [])

    def auto_target(self, column: str) -> Target | None:
        key = header_key(column)
        for candidate in (key, self.aliases.get(key)):
            if candidate is None:
                continue
            try:
                return self.parse_target(candidate)
            except ValidationFailed:
                continue
        return None


def _suggest(name: str, choices: Iterable[str]) -> str:
    from rapidfuzz import process

    match = process.extractOne(name, list(choices), score_cutoff=70)
    return f"; did you mean {match[0]!r}?" if match else ""


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """``["Mail=email", "Notes="]`` → ``{"Mail": "email", "Notes": ""}`` (empty: skip the column)."""
    result: dict[str, str] = {}
    for pair in pairs:
        column, sep, field = pair.rpartition("=")
        if not sep or not column.strip():
            raise ValidationFailed.single("map", "invalid", f"{pair!r} is not COLUMN=FIELD (use COLUMN= to skip a column)")
        result[column.strip()] = field.strip()
    return result


class ColumnMap:
    """Maps one file's rows onto input data for a service or the intake pipeline."""

    def __init__(self, fields: EntityFields, overrides: Mapping[str, str], *, ignore_unknown: bool = False):
        self.fields = fields
        self.overrides = dict(overrides)
        self.ignore_unknown = ignore_unknown
        self._cache: dict[str, Target | None] = {}
        # Resolve every --map target up front, so a typo fails before any row is read.
        for column, field in self.overrides.items():
            self._cache[column] = fields.parse_target(field) if field else None

    def target(self, column: str) -> Target | None:
        """The target of ``column``; None when it is skipped. Unknown columns raise unless
        ``ignore_unknown``."""
        if column in self._cache:
            return self._cache[column]
        skipped = column in IGNORED_COLUMNS or column in self.fields.ignored
        target = None if skipped else self.fields.auto_target(column)
        if target is None and not skipped and not self.ignore_unknown:
            hint = _suggest(header_key(column), self.fields.all_names())
            raise ValidationFailed.single(
                column, "unknown_column",
                f"column {column!r} matches no {self.fields.kind} field{hint}; map it with --map '{column}=FIELD' or skip it with --map '{column}='",
            )
        self._cache[column] = target
        return target

    def check_columns(self, columns: Iterable[str]) -> None:
        """Fail naming every unmapped column at once (CSV and XLSX, whose header is known)."""
        issues: list[FieldIssue] = []
        unused = set(self.overrides)
        for column in columns:
            unused.discard(column)
            try:
                self.target(column)
            except ValidationFailed as exc:
                issues.extend(exc.issues)
        for column in sorted(unused):
            issues.append(FieldIssue(column, "unknown_column", f"--map names column {column!r}, which the file does not have"))
        if issues:
            raise ValidationFailed(issues)

    def apply(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """``(data, external_ids)`` for one row. Empty cells are left out, so they neither
        fail a required check twice nor blank a value on update. JSON values that are already
        objects (``"address": {...}``) pass through for the service to validate."""
        data: dict[str, Any] = {}
        external: dict[str, str] = {}
        for column, value in values.items():
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if column == "external_ids" and isinstance(value, Mapping) and self.fields.external_ids:
                external.update({str(k): str(v) for k, v in value.items() if v not in (None, "")})
                continue
            if column in self.fields.nested or column == "custom":
                if isinstance(value, Mapping):
                    data.setdefault(column, {}).update(value)  # a JSON object: validated as a whole
                    continue
            target = self.target(column)
            if target is None:
                continue
            path = target.path
            if len(path) == 1:
                data[path[0]] = value
            elif path[0] == "external_id":
                external[path[1]] = str(value).strip()
            else:
                section = data.setdefault(path[0], {})
                if isinstance(section, dict):
                    section[path[1]] = value
        return data, external
