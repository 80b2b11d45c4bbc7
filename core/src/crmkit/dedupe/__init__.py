"""Duplicate detection for contacts: blocking, comparison, unsupervised Fellegi–Sunter scoring, clustering.

Storage-independent: feed it mappings with crmkit contact field names (see
:func:`~crmkit.dedupe.records.contact_record`) and get explained, decided pairs back::

    result = find_duplicates(records)
    for pair in result.pairs:
        print(pair.left_id, pair.right_id, pair.decision, pair.score)
"""

from crmkit.dedupe.engine import (
    Cluster,
    DedupeConfig,
    DedupeResult,
    DedupeStats,
    Deduplicator,
    FieldEvidence,
    PairMatch,
    find_duplicates,
)
from crmkit.dedupe.records import contact_record

__all__ = [
    "Cluster", "DedupeConfig", "DedupeResult", "DedupeStats", "Deduplicator", "FieldEvidence", "PairMatch",
    "contact_record", "find_duplicates",
]
