"""API keys: created with a role (and, for integrations, scopes), shown once, stored hashed,
revocable and optionally expiring.

A key reads ``crmkit_<id>_<secret>``. The id is the row's primary key, so a request is
authenticated with one lookup by id and a constant-time comparison of the SHA-256 of the
secret. The secret has 256 bits of entropy, so a fast hash is enough (a slow password hash
protects guessable secrets, which these are not). Nothing here ever logs a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

import attrs
import sqlalchemy as sa

from crmkit.api.roles import Role, scopes_for, validate_grant
from crmkit.domain.values import IssueCollector, new_id, parse_datetime, utcnow
from crmkit.errors import ValidationFailed
from crmkit.storage.sql.mapping import from_row, to_row
from crmkit.storage.sql.repository import Repository

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

PREFIX = "crmkit"
_KEY = re.compile(rf"^{PREFIX}_(?P<id>[0-9a-f]{{32}})_(?P<secret>[A-Za-z0-9_-]{{20,128}})$")
_DURATION = re.compile(r"^\s*(?P<amount>\d{1,6})\s*(?P<unit>[mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@attrs.define(kw_only=True)
class ApiKey:
    """An API key as stored — never with its secret."""

    id: str
    name: str
    role: Role
    scopes: list[str]
    user_id: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"

    @property
    def granted(self) -> frozenset[str]:
        """Every scope this key may use: its role's, or for integrations the ones it was given."""
        return scopes_for(self.role, self.scopes)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_expiry(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO date / date-time (a date means its
    midnight UTC); None or empty for a key that never expires. Must lie in the future."""
    if value is None or not str(value).strip():
        return None
    now = now or utcnow()
    text = str(value).strip()
    match = _DURATION.match(text)
    if match:
        when = now + timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            when = datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        except ValueError:
            raise ValidationFailed.single("expires", "invalid_date", f"{text!r} is not a date") from None
    else:
        try:
            when = parse_datetime(text, "expires")
        except ValidationFailed:
            raise ValidationFailed.single("expires", "invalid_expiry", f"{text!r} is neither a duration such as 30d, 12h, 2w "
                                          "nor an ISO date or date-time") from None
    if when <= now:
        raise ValidationFailed.single("expires", "in_the_past", f"{text!r} is not in the future")
    return when


class ApiKeys:
    """Create, list, revoke and check API keys of one CRM (the ``api_keys`` table)."""

    def __init__(self, crm: CRM):
        self.crm = crm

    def create(
        self,
        name: str,
        role: str | Role,
        *,
        scopes: Iterable[str] = (),
        expires: str | datetime | None = None,
        user_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its secret token, which is not stored and cannot be
        shown again. Every problem with the input is reported at once."""
        collector = IssueCollector()
        clean_name = name.strip() if isinstance(name, str) else ""
        if not clean_name:
            collector.add("name", "required", "a key needs a name saying who or what uses it")
        elif len(clean_name) > 255:
            collector.add("name", "too_long", "must be at most 255 characters")
        grant = collector.run(validate_grant, role, list(scopes))
        expires_at = expires if isinstance(expires, datetime) else collector.run(parse_expiry, expires)
        with self.crm.uow() as uow:
            if user_id is not None and uow.users.find(user_id) is None:
                collector.add("user_id", "not_found", f"no user with id {user_id!r}")
            collector.raise_if_any()
            clean_role, clean_scopes = grant
            key = ApiKey(id=new_id(), name=clean_name, role=clean_role, scopes=clean_scopes, user_id=user_id,
                         created_at=utcnow(), expires_at=expires_at)
            secret = secrets.token_urlsafe(32)
            uow.connection.execute(sa.insert(uow.table("api_keys")), [{**to_row(key), "secret_hash": _hash(secret)}])  # type: ignore[union-attr]
        return key, f"{PREFIX}_{key.id}_{secret}"

    def list(self) -> list[ApiKey]:
        with self.crm.read() as uow:
            return repository(uow).list(limit=None)

    def get(self, key_id: str) -> ApiKey:
        with self.crm.read() as uow:
            return repository(uow).get(key_id)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good (revoking it again keeps the first revocation time)."""
        with self.crm.uow() as uow:
            keys = repository(uow)
            key = keys.get(key_id)
            if key.revoked_at is None:
                key.revoked_at = utcnow()
                keys.update(key)
        return key

    def authenticate(self, token: str) -> tuple[ApiKey | None, str]:
        """The key a bearer token belongs to, or None with the reason it is refused
        (``invalid``, ``revoked``, ``expired``)."""
        match = _KEY.match(token or "")
        if match is None:
            return None, "invalid"
        with self.crm.read() as uow:
            table = uow.table("api_keys")
            row = uow.connection.execute(sa.select(table).where(table.c.id == match["id"])).first()  # type: ignore[union-attr]
        # Compare even when the id is unknown, so timing does not tell which ids exist.
        stored = row.secret_hash if row is not None else _hash("")
        if not hmac.compare_digest(stored, _hash(match["secret"])) or row is None:
            return None, "invalid"
        key = from_row(ApiKey, row)
        if key.status != "active":
            return None, key.status
        return key, "active"


def repository(uow: UnitOfWork) -> Repository[ApiKey]:
    """The ``api_keys`` table as :class:`ApiKey` s (the secret's hash is never loaded into one)."""
    assert uow.connection is not None
    return Repository(uow.connection, uow.table("api_keys"), ApiKey, "API key")
