"""Segments: named, saved filters over contacts, with a membership table kept current from
contact events (``segment.entered`` / ``segment.left``) and rebuilt set-based in SQL on demand.

* :mod:`.conditions` — the condition format over contact fields, compiled to SQL and evaluated
  in Python with the same meaning;
* :mod:`.service` — ``crm.segments``;
* :mod:`.tables` — the tables (Alembic branch ``crmkit_segments``).

The built-in plugin :mod:`crmkit.builtin.segments_plugin` wires it into the CRM.
"""

from crmkit.segments.conditions import FIELDS, SegmentCondition, compile_condition
from crmkit.segments.service import MembershipChange, Segment, Segments, segments

__all__ = ["FIELDS", "MembershipChange", "Segment", "SegmentCondition", "Segments", "compile_condition", "segments"]
