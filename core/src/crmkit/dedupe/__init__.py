"""Duplicate detection for contacts: blocking, comparison, unsupervised Fellegi–Sunter scoring, clustering.

Storage-independent: feed it mappings with crmkit contact field names (see
:func:`~crmkit.dedupe.records.contact_record`) and get explained, decided pairs back::

    result = find_duplicates(records)
    for pair in result.pairs:
        print(pair.left_id, pair.right_id, pair.decision, pair.score)

Over a CRM's stored contacts use ``crm.dedupe`` (:class:`~crmkit.dedupe.scan.DuplicateScanner`):
``crm.dedupe.scan()`` streams the contacts table into the engine and returns explained
:class:`~crmkit.dedupe.scan.CandidatePair` s; ``crm.dedupe.auto_merge(result)`` merges the
``auto_merge`` ones through ``crm.merges``. (Import :mod:`crmkit.dedupe.scan` itself for the
result classes: it depends on the merge service, which the engine does not.)
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
