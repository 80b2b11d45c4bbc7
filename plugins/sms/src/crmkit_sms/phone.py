"""Phone numbers in E.164, the form suppressions, contacts and providers agree on.

A contact's ``phone`` is stored in E.164 already (the core validates it); numbers arriving in
provider payloads are normalised here too, so ``+1 (415) 555-0100`` in a callback finds the
contact stored as ``+14155550100`` and the suppression entry made for it.
"""

from __future__ import annotations

import phonenumbers


def to_e164(value: str | None, region: str | None = None) -> str | None:
    """``value`` as E.164 (``+14155550100``), or None when it is not a valid phone number (a
    short code, an alphanumeric sender id, garbage). ``region`` (``US``, ``IR``) is used for
    numbers written without ``+country``."""
    if not value or not value.strip():
        return None
    try:
        parsed = phonenumbers.parse(value.strip(), region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def sender_address(value: str | None, region: str | None = None) -> str:
    """The address to record for whoever sent an inbound message: E.164 when it is a phone
    number, otherwise the value as given (short codes and sender ids are still addresses)."""
    return to_e164(value, region) or (value or "").strip()
