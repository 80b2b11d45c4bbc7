"""The errors file: every rejected row as it was read, plus where it was and why.

For CSV and XLSX input it is a CSV file with the original columns followed by ``_row`` (where
the row was in the input) and ``_errors`` (``field: message [code]; …``). For JSON Lines input
it is JSON Lines with ``_row`` and ``_errors`` added to each object. Importers ignore those two
columns, so a person fixes the rows in place and imports the errors file as it is.

The file is created when the first row is rejected; an import with no rejected rows removes a
stale errors file of an earlier run at the same path, so the file always describes the last run.
Undecodable bytes are written back unchanged (``surrogateescape``), for the person to fix.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from crmkit.errors import FieldIssue


def default_errors_path(source: Path, format: str) -> Path:
    suffix = ".jsonl" if format == "jsonl" else ".csv"
    return source.with_name(f"{source.stem}.errors{suffix}")


def describe(issues: Iterable[FieldIssue]) -> str:
    """``email: 'x' is not a valid e-mail address [invalid_email]; phone: … [invalid_phone]``."""
    return "; ".join(f"{i.field}: {i.message} [{i.code}]" for i in issues)


class ErrorsFile:
    """Collects rejected rows; use as a context manager. ``path`` is None until a row was written."""

    def __init__(self, path: Path, *, format: str, columns: Sequence[str] | None):
        self.target = path
        self.format = format
        self.columns = list(columns) if columns is not None else None
        self.count = 0
        self._handle: IO[str] | None = None
        self._writer: Any = None

    @property
    def path(self) -> Path | None:
        return self.target if self.count else None

    def _open(self) -> None:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.target.open("w", encoding="utf-8", errors="surrogateescape", newline="")
        if self.format != "jsonl":
            self._writer = csv.writer(self._handle)
            self._writer.writerow([*(c for c in self.columns or () if c not in ("_row", "_errors")), "_row", "_errors"])

    def write(self, number: int, raw: Any, issues: Sequence[FieldIssue]) -> None:
        if self._handle is None:
            self._open()
        assert self._handle is not None
        self.count += 1
        reasons = describe(issues)
        if self.format == "jsonl":
            record = {k: v for k, v in raw.items() if k not in ("_row", "_errors")} if isinstance(raw, dict) else {"_line": raw}
            self._handle.write(json.dumps({**record, "_row": number, "_errors": reasons}, ensure_ascii=False, default=str) + "\n")
            return
        cells = list(raw)
        if self.columns is not None:
            # An errors file re-imported: its own _row/_errors columns are replaced, not repeated.
            keep = [i for i, c in enumerate(self.columns) if c not in ("_row", "_errors")]
            cells = [cells[i] if i < len(cells) else "" for i in keep] + cells[len(self.columns):]
        self._writer.writerow([*cells, number, reasons])

    def close(self, *, remove_stale: bool = True) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        elif remove_stale and self.target.is_file():
            self.target.unlink()

    def __enter__(self) -> ErrorsFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        # An import that failed part-way keeps whatever errors file it had (and an old one).
        self.close(remove_stale=exc_type is None)
