"""Value objects and normalisers shared by the entities.

Normalisers turn loose input into the canonical form stored (a lower-cased, validated e-mail
address; an E.164 phone number) or raise :class:`~crmkit.errors.ValidationFailed` naming the field.
They are pure functions: no I/O (e-mail deliverability is not checked, that would need DNS).
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation

import attrs
import email_validator
import phonenumbers

from crmkit.errors import FieldIssue, ValidationFailed


def new_id() -> str:
    """A new random identifier (UUID4, 32 hex characters)."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class LifecycleStage(enum.StrEnum):
    SUBSCRIBER = "subscriber"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    EVANGELIST = "evangelist"
    CHURNED = "churned"


class Outcome(enum.StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class ConsentStatus(enum.StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


def normalize_email(value: str, field: str = "email") -> str:
    """Validate ``value`` as an e-mail address and return its normalised form."""
    try:
        info = email_validator.validate_email(value.strip(), check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValidationFailed.single(field, "invalid_email", f"{value!r} is not a valid e-mail address: {exc}") from None
    # The local part is case-sensitive by RFC but not in practice; lower-casing is what makes
    # duplicate detection on e-mail work.
    return info.normalized.lower()


def normalize_phone(value: str, default_region: str | None = None, field: str = "phone") -> str:
    """Parse ``value`` as a phone number and return it in E.164 (``+14155550001``)."""
    try:
        parsed = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed.single(field, "invalid_phone", f"{value!r} is not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationFailed.single(field, "invalid_phone", f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def parse_decimal(value: object, field: str) -> Decimal:
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationFailed.single(field, "invalid_number", f"{value!r} is not a number") from None
    if not result.is_finite():
        raise ValidationFailed.single(field, "invalid_number", f"{value!r} is not a finite number")
    return result


#: Money is stored exactly, as a signed 64-bit count of 1/10,000 units: four decimal places
#: cover every ISO 4217 currency, and the largest amount is 922,337,203,685,477.5807.
MONEY_PLACES = 4
MONEY_MAX = Decimal(2**63 - 1).scaleb(-MONEY_PLACES)


def parse_money(value: object, field: str, minimum: Decimal | None = None) -> Decimal:
    """A decimal amount that storage keeps exactly: rounding money silently is never right."""
    result = parse_decimal(value, field)
    if minimum is not None and result < minimum:
        raise ValidationFailed.single(field, "out_of_range", f"must be at least {minimum}")
    if result.copy_abs() > MONEY_MAX:  # copy_abs is exact; abs() would overflow the context on 1e99999999
        raise ValidationFailed.single(field, "out_of_range", f"must be at most {MONEY_MAX}")
    # In range, quantizing needs at most 19 digits, well inside the decimal context's 28.
    if result != result.quantize(Decimal(1).scaleb(-MONEY_PLACES), rounding=ROUND_DOWN):
        raise ValidationFailed.single(field, "too_precise", f"{value!r} has more than {MONEY_PLACES} decimal places")
    # 1E+3 is shown as 1000: amounts travel as strings in JSON and people read them.
    return result.quantize(Decimal(1)) if result.as_tuple().exponent > 0 else result


def parse_date(value: object, field: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValidationFailed.single(field, "invalid_date", f"{value!r} is not a date (YYYY-MM-DD)") from None


def parse_datetime(value: object, field: str) -> datetime:
    if isinstance(value, datetime):
        result = value
    else:
        try:
            result = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValidationFailed.single(field, "invalid_datetime", f"{value!r} is not an ISO 8601 date-time") from None
    return result if result.tzinfo else result.replace(tzinfo=UTC)


def parse_enum(enum_cls: type[enum.StrEnum], value: object, field: str) -> enum.StrEnum:
    try:
        return enum_cls(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise ValidationFailed.single(field, "invalid_choice", f"{value!r} is not one of: {allowed}") from None


def normalize_currency(value: str, field: str = "currency") -> str:
    code = str(value).strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValidationFailed.single(field, "invalid_currency", f"{value!r} is not an ISO 4217 currency code")
    return code


@attrs.define(kw_only=True)
class Address:
    street: str | None = None
    city: str | None = None
    region: str | None = None
    postcode: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2

    def is_empty(self) -> bool:
        return not any(attrs.astuple(self))


@attrs.define(kw_only=True)
class Attribution:
    """Where a record came from: channel, campaign and the UTM parameters of the first touch."""

    channel: str | None = None
    campaign_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None


class IssueCollector:
    """Collects :class:`FieldIssue` s from several checks so a caller sees every problem at once."""

    def __init__(self) -> None:
        self.issues: list[FieldIssue] = []

    def run(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Call ``fn``; on :class:`ValidationFailed` record its issues and return None."""
        try:
            return fn(*args, **kwargs)
        except ValidationFailed as exc:
            self.issues.extend(exc.issues)
            return None

    def add(self, field: str, code: str, message: str) -> None:
        self.issues.append(FieldIssue(field, code, message))

    def raise_if_any(self) -> None:
        if self.issues:
            raise ValidationFailed(self.issues)
