"""Merging duplicate contacts: survivorship rules, consent safety, an audit trail and undo.

``crm.merges`` is a :class:`~crmkit.merge.service.MergeService`; the rules themselves are pure
domain code in :mod:`crmkit.merge.survivorship` and :mod:`crmkit.merge.consents`.
"""

from crmkit.merge.consents import ConsentConflict
from crmkit.merge.records import MERGED_ID_SYSTEMS, MergedAway, MergeError, MergeRecord, MergeResult, UndoResult
from crmkit.merge.survivorship import DEFAULT_RULES, FieldDecision, Rule, RuleKind

__all__ = [
    "DEFAULT_RULES", "MERGED_ID_SYSTEMS", "ConsentConflict", "FieldDecision", "MergeError", "MergeRecord", "MergeResult",
    "MergedAway", "Rule", "RuleKind", "UndoResult",
]
