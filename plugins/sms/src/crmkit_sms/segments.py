"""How many SMS segments a text costs (3GPP TS 23.038 / 23.040).

A text that uses only the GSM 03.38 default alphabet is sent in GSM-7: 160 septets in a single
message, 153 per part once it is split (the user-data header of a concatenated message takes
the other 7). Characters of the extension table (``€ [ ] { } \\ ^ ~ |`` and form feed) are an
escape plus a character, two septets, and a part never ends between the two. Any other
character — Persian, Arabic, Cyrillic, emoji, curly quotes — makes the whole text UCS-2: 70
UTF-16 code units single, 67 per part, where an emoji outside the Basic Multilingual Plane is a
surrogate pair (two units) that a part never splits either.

:func:`split` cuts a text into the parts a provider would send; :func:`measure` reports the
encoding, the units and the number of segments (the number of parts).
"""

from __future__ import annotations

import enum

import attrs

#: The GSM 03.38 default alphabet, one septet each (0x1B, the escape, is not text).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: an escape septet plus one, so two septets each.
GSM_EXTENDED = frozenset("\f^{}\\[~]|€")


class Encoding(enum.StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


#: (single-message capacity, per-part capacity of a concatenated message), in units.
CAPACITY = {Encoding.GSM7: (160, 153), Encoding.UCS2: (70, 67)}


@attrs.frozen
class Segments:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.parts)

    @property
    def per_part(self) -> int:
        """How many units each part may hold, given how many parts there are."""
        single, multi = CAPACITY[self.encoding]
        return single if self.count <= 1 else multi


def encoding_of(text: str) -> Encoding:
    return Encoding.GSM7 if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text) else Encoding.UCS2


def unit_cost(char: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if char in GSM_EXTENDED else 1
    return 2 if ord(char) > 0xFFFF else 1  # a surrogate pair in UTF-16


def measure(text: str) -> Segments:
    """The encoding, size and parts of ``text``. An empty text is one (empty) segment: a
    provider still sends, and bills, a message."""
    encoding = encoding_of(text)
    costs = [unit_cost(c, encoding) for c in text]
    units = sum(costs)
    single, multi = CAPACITY[encoding]
    if units <= single:
        return Segments(encoding, units, (text,))
    parts, start, used = [], 0, 0
    for index, cost in enumerate(costs):
        if used + cost > multi:  # the character would straddle the boundary: it opens the next part
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return Segments(encoding, units, tuple(parts))


def split(text: str) -> list[str]:
    return list(measure(text).parts)


def count(text: str) -> int:
    return measure(text).count
