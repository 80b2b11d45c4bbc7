"""Nurture sequences: ordered, delayed steps sent through the channel layer to enrolled
contacts until they reply, convert or unsubscribe.

* :mod:`.definition` — sequence definitions (steps, delays, exit conditions), checked in full
  when saved;
* :mod:`.exits` — the exit conditions, read from the database;
* :mod:`.service` — ``crm.sequences``: save, enroll, unenroll, ``tick`` and the event subscriber;
* :mod:`.tables` — the tables (Alembic branch ``crmkit_sequences``).

The built-in plugin :mod:`crmkit.builtin.sequences_plugin` wires it into the CRM.
"""

from crmkit.sequences.definition import Sequence, Step
from crmkit.sequences.service import Enrollment, Sequences, TickReport, sequences

__all__ = ["Enrollment", "Sequence", "Sequences", "Step", "TickReport", "sequences"]
