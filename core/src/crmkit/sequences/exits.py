"""Exit conditions, read from the database: the tick checks them before every step (the events
that would have exited an enrollment may still wait in the outbox), and the event subscriber
uses the same definitions to exit at once.

* **replied**: an inbound activity on the contact after the enrollment — a message received on
  any channel (``email.received``, ``sms.received`` …, whatever its direction says) or any
  activity logged as ``inbound`` (a call they made);
* **converted**: the contact's lifecycle stage is ``customer`` or beyond (``evangelist``), or a
  deal of theirs is won;
* **unsubscribed**: a step's message was vetoed for consent or suppression (the veto chain of
  the channel layer decides), consent for a channel and purpose the sequence sends on was
  withdrawn, or the provider reported an unsubscribe, complaint or hard bounce.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from crmkit.domain.values import Direction, LifecycleStage, Outcome

CONVERTED_STAGES = (LifecycleStage.CUSTOMER.value, LifecycleStage.EVANGELIST.value)
#: Veto reasons that mean the person does not want these messages; the channel layer writes
#: its consent and suppression vetoes with these prefixes (crmkit.channels.vetoes).
UNSUBSCRIBING_VETOES = ("consent:", "suppressed:")
#: Delivery receipts after which the address is suppressed for good.
UNSUBSCRIBING_RECEIPTS = frozenset({"unsubscribed", "complaint", "hard_bounce"})


def is_reply(kind: str | None, direction: str | None) -> bool:
    return (kind or "").endswith(".received") or direction == Direction.INBOUND.value


def replied(conn: sa.Connection, tables: Mapping[str, sa.Table], contact_id: str, since: datetime) -> bool:
    a = tables["activities"].c
    reply = sa.or_(a.kind.like("%.received"), a.direction == Direction.INBOUND.value)
    stmt = sa.select(a.id).where(a.contact_id == contact_id, a.occurred_at >= since, reply).limit(1)
    return conn.execute(stmt).first() is not None


def converted(conn: sa.Connection, tables: Mapping[str, sa.Table], contact_id: str) -> bool:
    c, d = tables["contacts"].c, tables["deals"].c
    if conn.execute(sa.select(c.id).where(c.id == contact_id, c.lifecycle_stage.in_(CONVERTED_STAGES))).first() is not None:
        return True
    return conn.execute(sa.select(d.id).where(d.contact_id == contact_id, d.status == Outcome.WON.value).limit(1)).first() is not None


def unsubscribing_veto(message: Mapping[str, Any]) -> str | None:
    """The veto reason when a step's message was refused for consent or suppression."""
    reason = message.get("veto_reason") or ""
    return reason if message.get("status") == "vetoed" and reason.startswith(UNSUBSCRIBING_VETOES) else None
