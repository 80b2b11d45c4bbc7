"""Input records for duplicate detection, normalised once so every later step compares like with like.

The engine reads plain mappings keyed by crmkit's flat contact field names (``address_*`` for the
nested address), so it works on rows from storage, on import files and on test data alike.
:func:`contact_record` flattens a :class:`~crmkit.domain.Contact` into that shape.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from sys import intern
from typing import Any

import attrs

_NOT_WORD = re.compile(r"[^\w]+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_NOT_DIGIT = re.compile(r"[^0-9]+")


@attrs.define(slots=True, frozen=True)
class PreparedRecord:
    """One record's normalised values; ``""`` means missing so comparisons need no ``None`` checks.

    Names and city are folded *without* spaces: a lost or inserted space (``"luc y"``,
    ``"de teliga"``) is the commonest typo in them and should cost nothing. The street keeps its
    words (lines may come in another order) and has a space-free twin for the same reason.
    """

    id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    birth_date: str  # YYYYMMDD digits, kept as text so one mistyped digit is still comparable
    street: str
    street_compact: str
    city: str
    region: str
    postcode: str


def fold(value: Any) -> str:
    """Case-fold, strip accents and collapse punctuation to single spaces (``"Zoë-Ann "`` → ``"zoe ann"``)."""
    if value is None:
        return ""
    text = str(value).casefold()
    if not text.isascii():  # the accent-stripping walk is the slow part; most values do not need it
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return " ".join(_NOT_WORD.sub(" ", text).replace("_", " ").split())


def compact(value: Any) -> str:
    """:func:`fold` without spaces (``"Mc Donald"`` → ``"mcdonald"``)."""
    return fold(value).replace(" ", "")


def normalize_email(value: Any) -> str:
    """Lower-case, and drop a ``+tag`` from the local part: ``Ann+news@X.org`` is the same inbox as ``ann@x.org``."""
    if not value:
        return ""
    text = str(value).strip().lower()
    local, at, domain = text.partition("@")
    if not at:
        return text
    return f"{local.split('+', 1)[0]}@{domain}"


def normalize_phone(value: Any) -> str:
    """Digits only: ``+44 20 7946 0000`` and ``+442079460000`` compare equal."""
    return _NOT_DIGIT.sub("", str(value)) if value else ""


def normalize_birth_date(value: Any) -> str:
    """``date`` or text → ``YYYYMMDD``; text that is not eight digits after stripping separators is kept as its digits."""
    if not value:
        return ""
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return _NOT_DIGIT.sub("", str(value))


# Street-type abbreviations, written out so "20 Rupp Pl" and "20 Rupp Place" compare equal. Written
# out rather than abbreviated because a lost space ("pridhamstreet") must still match "pridham street".
_STREET_TYPES = {
    "rd": "road", "ave": "avenue", "av": "avenue", "pl": "place", "dr": "drive", "ct": "court", "cres": "crescent",
    "ln": "lane", "cct": "circuit", "cl": "close", "tce": "terrace", "blvd": "boulevard", "hwy": "highway",
    "pde": "parade", "sq": "square", "pkwy": "parkway", "apt": "apartment",
}


def normalize_street(value: Any) -> str:
    """:func:`fold`, with street types written out; ``st`` only as the last word (else it may be Saint)."""
    words = fold(value).split()
    if words and words[-1] == "st":
        words[-1] = "street"
    return " ".join(_STREET_TYPES.get(word, word) for word in words)


def normalize_postcode(value: Any) -> str:
    return _NOT_ALNUM.sub("", str(value).lower()) if value else ""


def prepare(record: Mapping[str, Any]) -> PreparedRecord:
    """Normalise one input mapping; raises ``ValueError`` naming the field when ``id`` is missing."""
    record_id = record.get("id")
    if record_id is None or record_id == "":
        raise ValueError("id: every record needs an id to be reported in a duplicate pair")
    street = normalize_street(record.get("address_street"))
    # Names, dates and places repeat across records: interning stores each distinct value once,
    # which is most of the memory a million prepared records would otherwise take.
    return PreparedRecord(
        id=str(record_id),
        first_name=intern(compact(record.get("first_name"))),
        last_name=intern(compact(record.get("last_name"))),
        email=normalize_email(record.get("email")),
        phone=normalize_phone(record.get("phone")),
        birth_date=intern(normalize_birth_date(record.get("birth_date"))),
        street=street,
        street_compact=street.replace(" ", ""),
        city=intern(compact(record.get("address_city"))),
        region=intern(fold(record.get("address_region"))),
        postcode=intern(normalize_postcode(record.get("address_postcode"))),
    )


def contact_record(contact: Any) -> dict[str, Any]:
    """Flatten a :class:`~crmkit.domain.Contact` (or anything shaped like it) into an engine input record."""
    address = contact.address
    return {
        "id": contact.id,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email,
        "phone": contact.phone,
        "birth_date": contact.birth_date,
        "address_street": address.street,
        "address_city": address.city,
        "address_region": address.region,
        "address_postcode": address.postcode,
    }
