"""Segment counting: GSM-7 (extension characters count double) 160 / 153 per part, UCS-2 70 /
67 per part in UTF-16 code units; parts never split an escape sequence or a surrogate pair, and
never under-count."""

from __future__ import annotations

import json

import pytest
from crmkit_sms.segments import GSM_BASIC, GSM_EXTENDED, Encoding, count, measure, split
from hypothesis import given, settings
from hypothesis import strategies as st

# Written out here from the GSM 03.38 tables, apart from the module's sets.
BASIC_TABLE = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
               "abcdefghijklmnopqrstuvwxyzäöñüà")
EXTENSION_TABLE = "\f^{}\\[~]|€"


def test_the_gsm_tables_are_the_standard_ones():
    assert len(BASIC_TABLE) == 127 and set(BASIC_TABLE) == GSM_BASIC  # 128 code points less the escape
    assert set(EXTENSION_TABLE) == GSM_EXTENDED and not GSM_BASIC & GSM_EXTENDED


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", Encoding.GSM7, 0, 1),
    ("a" * 160, Encoding.GSM7, 160, 1),
    ("a" * 161, Encoding.GSM7, 161, 2),
    ("a" * 306, Encoding.GSM7, 306, 2),
    ("a" * 307, Encoding.GSM7, 307, 3),
    ("€" * 80, Encoding.GSM7, 160, 1),  # extension characters count two septets
    ("€" * 81, Encoding.GSM7, 162, 2),
    ("Price: 10€ [50% off] {today} ~ ^ | \\", Encoding.GSM7, 45, 1),
    ("a" * 70 + "é", Encoding.GSM7, 71, 1),  # é is in the default alphabet
    ("a" * 69 + "ç", Encoding.UCS2, 70, 1),  # ç is not (only Ç is): the whole text goes UCS-2
    ("سلام " * 14, Encoding.UCS2, 70, 1),  # Persian
    ("سلام " * 14 + "!", Encoding.UCS2, 71, 2),
    ("مرحبا بك في متجرنا، خصم ٢٠٪ اليوم فقط", Encoding.UCS2, 37, 1),  # Arabic
    ("😀" * 35, Encoding.UCS2, 70, 1),  # an emoji is a surrogate pair: two units
    ("😀" * 36, Encoding.UCS2, 72, 2),
    ("x" * 134, Encoding.GSM7, 134, 1),
    ("“quoted”", Encoding.UCS2, 8, 1),  # curly quotes are not GSM
])
def test_known_counts(text, encoding, units, segments):
    measured = measure(text)
    assert (measured.encoding, measured.units, measured.count) == (encoding, units, segments)
    assert count(text) == segments


def test_a_part_never_ends_inside_an_escape_sequence():
    text = "a" * 152 + "€" + "b" * 10  # 164 septets: two parts; € would be septets 153-154
    parts = split(text)
    assert parts == ["a" * 152, "€" + "b" * 10]


def test_a_part_never_splits_a_surrogate_pair():
    text = "a" * 66 + "😀" + "b" * 10  # UCS-2; the emoji would take units 67-68
    parts = split(text)
    assert parts == ["a" * 66, "😀" + "b" * 10]


def test_multipart_gsm_splits_at_153_and_ucs2_at_67():
    assert [len(p) for p in split("a" * 400)] == [153, 153, 94]
    assert [len(p) for p in split("ب" * 150)] == [67, 67, 16]


def test_the_cli_counts_segments(cli):
    result = cli.json("sms", "segments", "سلام 😀")
    assert result == {"encoding": "UCS-2", "units": 7, "segments": 1, "per_segment": 70, "single_limit": 70}
    assert "2 segment(s), GSM-7, 161 septets" in cli("sms", "segments", "a" * 161).output
    assert json.loads(cli("sms", "segments", "--json", "").output)["segments"] == 1


# --- properties ------------------------------------------------------------------------------

def septets(text: str) -> int:
    return sum(2 if c in EXTENSION_TABLE else 1 for c in text)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def is_gsm(text: str) -> bool:
    return all(c in BASIC_TABLE or c in EXTENSION_TABLE for c in text)


gsm_text = st.text(alphabet=st.sampled_from(BASIC_TABLE + EXTENSION_TABLE), max_size=700)
any_text = st.text(max_size=500)  # any Unicode, astral planes included
mixed_text = st.text(alphabet=st.one_of(st.sampled_from(BASIC_TABLE + EXTENSION_TABLE), st.sampled_from("سلامب😀🇮🇷ç“")), max_size=600)


@settings(max_examples=400, deadline=None)
@given(st.one_of(gsm_text, any_text, mixed_text))
def test_segments_never_under_count(text):
    measured = measure(text)
    gsm = is_gsm(text)
    assert measured.encoding is (Encoding.GSM7 if gsm else Encoding.UCS2)
    units = septets(text) if gsm else utf16_units(text)
    assert measured.units == units
    single, multi = (160, 153) if gsm else (70, 67)
    capacity = single if measured.count == 1 else multi
    # The parts together hold at least the whole text, in the encoding it is sent in …
    assert measured.count * capacity >= units
    # … each part fits its capacity, and together they are the text, in order.
    assert all((septets(p) if gsm else utf16_units(p)) <= capacity for p in measured.parts)
    assert "".join(measured.parts) == text
    # One segment exactly when it fits one; otherwise no more parts than boundary effects need.
    assert (measured.count == 1) == (units <= single)
    if measured.count > 1:
        assert measured.count <= -(-units // (multi - 1))
