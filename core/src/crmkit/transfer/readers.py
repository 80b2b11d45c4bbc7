"""Streaming readers for import files: CSV (any delimiter, any common encoding), JSON Lines and,
when openpyxl is installed, XLSX.

A reader yields one :class:`SourceRow` at a time and never holds more than its buffers, so a
file of a million rows is read in bounded memory. A row that cannot be read (bytes that are not
valid in the file's encoding, a line that is not JSON, a ragged CSV row) comes back with
``problem`` set instead of raising: the importer rejects that row with the reason and goes on.

Encoding: a byte order mark decides (UTF-8, UTF-16, UTF-32); without one the whole file is
scanned once (cheaply, in C) and read as UTF-8 unless most of its non-ASCII bytes are not
UTF-8, in which case it is a legacy file and read as cp1252 (latin-1 when it has bytes cp1252
does not define). UTF-8 files are decoded with ``surrogateescape``, so a few rows saved in
another encoding are rejected one by one rather than failing the whole file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import attrs

from crmkit.errors import FieldIssue, ValidationFailed

FORMATS = ("csv", "jsonl", "xlsx")
DELIMITERS = ",;\t|"
_SNIFF_BYTES = 64 * 1024
_SCAN_CHUNK = 1024 * 1024
#: Lone surrogates are what ``surrogateescape`` turns undecodable bytes into.
_UNDECODED = re.compile("[\udc80-\udcff]")
_GOOD_NON_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")
#: Bytes cp1252 leaves undefined; a legacy file containing them is read as latin-1.
_CP1252_HOLES = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)


@attrs.define(slots=True)
class SourceRow:
    """One row of an import file.

    :ivar number: where a person finds it: the spreadsheet row (the header is row 1) for CSV
        and XLSX, the line number for JSON Lines.
    :ivar values: column (or key) → value as read.
    :ivar raw: what to write back to an errors file: the row's cells in column order (CSV,
        XLSX) or the object (JSON Lines).
    :ivar problem: why the row could not be read, or None.
    """

    number: int
    values: dict[str, Any]
    raw: Any
    problem: FieldIssue | None = None


def file_error(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed.single(field, code, message)


def detect_format(path: Path, forced: str | None = None) -> str:
    if forced:
        if forced not in FORMATS:
            raise file_error("format", "invalid_choice", f"{forced!r} is not one of: {', '.join(FORMATS)}")
        return forced
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    return "csv"


def detect_encoding(path: Path) -> str:
    """The encoding to read ``path`` with (see the module docstring for the rules)."""
    with path.open("rb") as handle:
        head = handle.read(4)
        for bom, name in _BOMS:
            if head.startswith(bom):
                return name
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        good = bad = 0
        holes = False
        while chunk := handle.read(_SCAN_CHUNK):
            if chunk.isascii():
                continue
            text = decoder.decode(chunk)
            bad += len(_UNDECODED.findall(text))
            good += len(_GOOD_NON_ASCII.findall(text))
            holes = holes or bool(_CP1252_HOLES.search(chunk))
        bad += len(_UNDECODED.findall(decoder.decode(b"", final=True)))
    if bad == 0 or good >= bad:
        return "utf-8"
    return "latin-1" if holes else "cp1252"


def undecoded_issue(values: dict[str, Any], encoding: str) -> FieldIssue | None:
    """An issue naming the first column holding bytes that are not valid ``encoding``."""
    for column, value in values.items():
        if isinstance(value, str) and not value.isascii():
            found = _UNDECODED.search(value)
            if found is not None:
                byte = ord(found.group()) - 0xDC00
                return FieldIssue(
                    str(column), "invalid_encoding",
                    f"byte 0x{byte:02x} is not valid {encoding}; fix the text and save the file as {encoding}, "
                    "or pass --encoding with the file's real encoding",
                )
    return None


def _normalise_header(name: Any, position: int) -> str:
    text = "" if name is None else str(name).strip().lstrip("\ufeff").strip()
    return text or f"column_{position + 1}"


def _check_headers(columns: list[str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise file_error(column, "duplicate_column", f"the header names column {column!r} twice")
        seen.add(column)


class _CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for the progress bar)."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


class RowSource:
    """An open import file: its ``columns`` (None for JSON Lines, where keys vary per line),
    how it was read, and an iterator over its rows. Use as a context manager."""

    def __init__(self, path: str | Path, *, format: str | None = None, encoding: str | None = None, delimiter: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise file_error("file", "not_found", f"{self.path} does not exist or is not a file")
        self.format = detect_format(self.path, format)
        self.size = self.path.stat().st_size
        self.encoding: str | None = None
        self.delimiter: str | None = None
        self.columns: list[str] | None = None
        self._counter: _CountingReader | None = None
        self._text: IO[str] | None = None
        self._rows: Iterator[SourceRow]
        self._workbook: Any = None
        if self.format == "xlsx":
            self._rows = self._open_xlsx()
            return
        if encoding:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise file_error("encoding", "unknown_encoding", f"{encoding!r} is not an encoding Python knows") from None
        self.encoding = encoding or detect_encoding(self.path)
        self._counter = _CountingReader(self.path.open("rb"))
        buffered = io.BufferedReader(self._counter, buffer_size=256 * 1024)
        self._text = io.TextIOWrapper(buffered, encoding=self.encoding, errors="surrogateescape", newline="")
        self._rows = self._open_jsonl() if self.format == "jsonl" else self._open_csv(delimiter)

    @property
    def bytes_read(self) -> int:
        return self._counter.count if self._counter is not None else 0

    def __iter__(self) -> Iterator[SourceRow]:
        return self._rows

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._text is not None:
            self._text.close()
        if self._workbook is not None:
            self._workbook.close()

    # --- CSV ----------------------------------------------------------------------------

    @staticmethod
    def _sniff_delimiter(lines: list[str]) -> str:
        """The header decides when exactly one candidate delimiter appears in it (headers rarely
        contain punctuation); otherwise csv.Sniffer looks at the first lines."""
        header = lines[0] if lines else ""
        counts = {d: header.count(d) for d in DELIMITERS}
        present = [d for d, n in counts.items() if n]
        if len(present) == 1:
            return present[0]
        try:
            return csv.Sniffer().sniff("".join(lines[:50]), delimiters=DELIMITERS).delimiter
        except csv.Error:
            best = max(counts, key=lambda d: counts[d])
            return best if counts[best] else ","

    def _open_csv(self, delimiter: str | None) -> Iterator[SourceRow]:
        assert self._text is not None
        if delimiter is not None and len(delimiter) != 1:
            raise file_error("delimiter", "invalid", "the delimiter must be one character (use '\\t' for tab)")
        # Whole lines for sniffing, handed to the CSV reader before the rest of the stream.
        head: list[str] = []
        size = 0
        try:
            while size < _SNIFF_BYTES and (line := self._text.readline()):
                head.append(line)
                size += len(line)
        except UnicodeDecodeError as exc:
            raise file_error("file", "invalid_encoding", f"{self.path} cannot be read as {self.encoding}: {exc}") from None
        self.delimiter = delimiter or self._sniff_delimiter(head)
        reader = csv.reader(itertools.chain(head, self._text), delimiter=self.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise file_error("file", "empty", f"{self.path} is empty (no header row)") from None
        self.columns = [_normalise_header(name, i) for i, name in enumerate(header)]
        _check_headers(self.columns)
        return self._csv_rows(reader, self.columns)

    def _csv_rows(self, reader: Any, columns: list[str]) -> Iterator[SourceRow]:
        width = len(columns)
        encoding = self.encoding or "utf-8"
        number = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a NUL byte or an over-long field
                number += 1
                yield SourceRow(number, {}, [], FieldIssue("_row", "unreadable", f"the CSV row cannot be parsed: {exc}"))
                continue
            number += 1
            if not any(cells):
                continue  # a blank line, or a row of empty cells (spreadsheets leave those)
            if len(cells) > width and not any(c.strip() for c in cells[width:]):
                cells = cells[:width]  # trailing empty cells some spreadsheets add
            values = dict(zip(columns, cells, strict=False))
            if len(cells) != width:
                problem = FieldIssue("_row", "wrong_column_count", f"the row has {len(cells)} values but the header has {width} columns")
                yield SourceRow(number, values, cells, problem)
                continue
            problem = None if all(map(str.isascii, cells)) else undecoded_issue(values, encoding)
            yield SourceRow(number, values, cells, problem)

    # --- JSON Lines ---------------------------------------------------------------------

    def _open_jsonl(self) -> Iterator[SourceRow]:
        return self._jsonl_rows()

    def _jsonl_rows(self) -> Iterator[SourceRow]:
        assert self._text is not None
        encoding = self.encoding or "utf-8"
        for number, line in enumerate(self._text, start=1):
            if not line.strip():
                continue
            if not line.isascii() and _UNDECODED.search(line):
                text = line.rstrip("\r\n")
                yield SourceRow(number, {}, text, undecoded_issue({"_row": text}, encoding))
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield SourceRow(number, {}, line.rstrip("\r\n"), FieldIssue("_row", "invalid_json", f"the line is not valid JSON: {exc}"))
                continue
            if not isinstance(value, dict):
                yield SourceRow(number, {}, value, FieldIssue("_row", "invalid_json", "each line must be a JSON object"))
                continue
            yield SourceRow(number, value, value)

    # --- XLSX ---------------------------------------------------------------------------

    def _open_xlsx(self) -> Iterator[SourceRow]:
        try:
            import openpyxl
        except ImportError:
            raise file_error("file", "unsupported_format", "reading .xlsx files needs openpyxl: pip install 'crmkit[xlsx]'") from None
        try:
            self._workbook = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises several unrelated types for a broken file
            raise file_error("file", "unreadable", f"{self.path} is not a readable .xlsx workbook: {exc}") from None
        rows = self._workbook.active.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise file_error("file", "empty", f"{self.path} is empty (no header row)")
        self.columns = [_normalise_header(name, i) for i, name in enumerate(header)]
        _check_headers(self.columns)
        return self._xlsx_rows(rows, self.columns)

    @staticmethod
    def _xlsx_rows(rows: Iterator[tuple[Any, ...]], columns: list[str]) -> Iterator[SourceRow]:
        for number, cells in enumerate(rows, start=2):
            if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
                continue
            texts = ["" if c is None else c.isoformat() if hasattr(c, "isoformat") else str(c) for c in cells]
            texts = (texts + [""] * len(columns))[: len(columns)]
            yield SourceRow(number, dict(zip(columns, texts, strict=True)), texts)
