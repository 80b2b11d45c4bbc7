"""Blocking keys: cheap values that duplicates are likely to share, so only records sharing one are compared.

A *pass* groups records by one key. :class:`ExactKey` compares every pair inside a group (a
block); :class:`SortedNeighbourhood` sorts records by the key and compares each with the next
``window - 1`` ones, which catches keys that differ by a late typo (``hannagan``/``hannaan``).
Several passes run one after another and a pair found by an earlier pass is not compared again.
An empty key means "no key": the record takes no part in that pass.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from crmkit.dedupe.records import PreparedRecord

KeyFunction = Callable[[PreparedRecord], str]

_SOUNDEX_CODES = {
    **dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3"),
    "l": "4", **dict.fromkeys("mn", "5"), "r": "6",
}


def soundex(name: str) -> str:
    """American Soundex (``robert`` → ``r163``). Hand-written because it is a dozen lines and none of
    crmkit's dependencies provides it; ``h``/``w`` do not separate equal codes, vowels do."""
    letters = [ch for ch in name if "a" <= ch <= "z"]
    if not letters:
        return ""
    first = letters[0]
    digits: list[str] = []
    previous = _SOUNDEX_CODES.get(first, "")
    for ch in letters[1:]:
        code = _SOUNDEX_CODES.get(ch, "")
        if code and code != previous:
            digits.append(code)
            if len(digits) == 3:
                break
        if ch not in "hw":
            previous = code
    return first + "".join(digits).ljust(3, "0")


def email_key(record: PreparedRecord) -> str:
    return record.email


def phone_key(record: PreparedRecord) -> str:
    # The last nine digits: the same number with and without its country code shares the key.
    return record.phone[-9:] if len(record.phone) >= 6 else ""


def name_tokens_key(record: PreparedRecord) -> str:
    """Both names, sorted: given ``Lee`` family ``Ann`` and given ``Ann`` family ``Lee`` share a key (swapped fields)."""
    if not record.first_name or not record.last_name:
        return ""
    return " ".join(sorted((record.first_name, record.last_name)))


def phonetic_names_key(record: PreparedRecord) -> str:
    """Soundex of both names, sorted: survives a typo that keeps the sound, and a swap."""
    if not record.first_name or not record.last_name:
        return ""
    return " ".join(sorted((soundex(record.first_name), soundex(record.last_name))))


def first_name_key(record: PreparedRecord) -> str:
    return record.first_name


def last_name_key(record: PreparedRecord) -> str:
    return record.last_name


def birth_date_key(record: PreparedRecord) -> str:
    return record.birth_date


def postcode_key(record: PreparedRecord) -> str:
    return record.postcode


def street_key(record: PreparedRecord) -> str:
    """The street without spaces, so a lost or inserted space (``pridhamstreet``) keeps the key."""
    return record.street_compact


@attrs.frozen
class ExactKey:
    """Compare all pairs of records with the same key (up to the engine's block-size cap)."""

    name: str
    key: KeyFunction


@attrs.frozen
class SortedNeighbourhood:
    """Sort by key and compare each record with its ``window - 1`` successors: O(n · window) pairs."""

    name: str
    key: KeyFunction
    window: int = 5


BlockingPass = ExactKey | SortedNeighbourhood


def default_passes() -> tuple[BlockingPass, ...]:
    """Contact blocking passes, most selective first so that later passes mostly add new pairs."""
    return (
        ExactKey("email", email_key),
        ExactKey("phone", phone_key),
        ExactKey("name_tokens", name_tokens_key),
        ExactKey("phonetic_names", phonetic_names_key),
        ExactKey("birth_date", birth_date_key),
        ExactKey("postcode", postcode_key),
        ExactKey("street", street_key),
        SortedNeighbourhood("first_name_window", first_name_key, window=5),
        SortedNeighbourhood("last_name_window", last_name_key, window=5),
        SortedNeighbourhood("street_window", street_key, window=5),
    )
