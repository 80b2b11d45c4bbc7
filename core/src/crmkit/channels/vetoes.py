"""The veto chain: every message passes it when it is queued and again right before it is
handed to the provider (consent can be withdrawn, or an address suppressed, while a message
waits for a retry).

In order, the first that objects wins:

1. **Consent** (the ledger, per contact × channel × purpose). A purpose listed in
   ``transactional_purposes`` (by default ``transactional``: receipts, password resets, sent
   under contract rather than consent) needs no grant; every other purpose needs the latest
   ledger entry to be ``granted``. A latest entry of ``withdrawn`` vetoes any purpose, the
   transactional ones included.
2. **Suppression list** (per channel × address): hard bounces, complaints, STOP and manual
   entries block everything; an ``unsubscribed`` entry blocks non-transactional purposes.
3. **Frequency cap**: at most ``frequency_cap`` non-transactional messages per contact and
   channel in ``frequency_window_hours`` (counting those sent and those waiting).
4. **Plugins**: every ``crmkit_veto_send`` implementation; a returned string vetoes.
5. **Quiet hours** in the recipient's time zone do not veto: a non-transactional message
   falling inside them is deferred to their end.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
import sqlalchemy as sa

from crmkit.channels.protocol import OutboundMessage
from crmkit.channels.settings import ChannelSettings
from crmkit.domain import Contact
from crmkit.domain.values import ConsentStatus

if TYPE_CHECKING:
    from crmkit.app import CRM

#: Suppression reasons that still let transactional messages through.
SOFT_SUPPRESSIONS = frozenset({"unsubscribed"})
#: Message states that count towards the frequency cap.
COUNTED_STATUSES = ("queued", "retrying", "handing_over", "sent", "delivered")


@attrs.frozen
class Verdict:
    kind: Literal["veto", "defer"]
    reason: str
    until: datetime | None = None  # for a deferral: when to try again


class VetoChain:
    def __init__(self, crm: CRM, settings: ChannelSettings):
        self.crm = crm
        self.settings = settings
        self.quiet = settings.quiet_hours()

    def is_transactional(self, purpose: str) -> bool:
        return purpose in self.settings.transactional_purposes

    def check(self, conn: sa.Connection, message: OutboundMessage, contact: Contact, now: datetime) -> Verdict | None:
        """The first objection to sending ``message`` now, or None. ``conn`` reads the
        messages and suppression tables (the caller's transaction)."""
        for reason in (self._consent(conn, message), self._suppressed(conn, message), self._capped(conn, message, now), self._plugins(message, contact)):
            if reason:
                return Verdict("veto", reason)
        return self._quiet_hours(message, contact, now)

    def _consent(self, conn: sa.Connection, message: OutboundMessage) -> str | None:
        t = self.crm.backend.metadata.tables["consents"]
        row = conn.execute(
            sa.select(t.c.status).where(t.c.contact_id == message.contact_id, t.c.channel == message.channel, t.c.purpose == message.purpose)
            .order_by(t.c.recorded_at.desc(), t.c.id.desc()).limit(1)
        ).first()
        status = None if row is None else ConsentStatus(row.status)
        if status is ConsentStatus.WITHDRAWN:
            return f"consent: withdrawn for {message.channel} / {message.purpose}"
        if status is not ConsentStatus.GRANTED and not self.is_transactional(message.purpose):
            state = "never recorded" if status is None else status.value
            return f"consent: no granted consent for {message.channel} / {message.purpose} ({state})"
        return None

    def _suppressed(self, conn: sa.Connection, message: OutboundMessage) -> str | None:
        s = self.crm.backend.metadata.tables["message_suppressions"]
        reasons = set(conn.execute(sa.select(s.c.reason).where(s.c.channel == message.channel, s.c.address == message.to)).scalars())
        if self.is_transactional(message.purpose):
            reasons -= SOFT_SUPPRESSIONS
        return f"suppressed: {', '.join(sorted(reasons))}" if reasons else None

    def _capped(self, conn: sa.Connection, message: OutboundMessage, now: datetime) -> str | None:
        cap = self.settings.frequency_cap
        if cap <= 0 or self.is_transactional(message.purpose):
            return None
        m = self.crm.backend.metadata.tables["messages"].c
        since = now - timedelta(hours=self.settings.frequency_window_hours)
        count = conn.execute(
            sa.select(sa.func.count()).where(
                m.contact_id == message.contact_id, m.channel == message.channel, m.id != message.id, m.created_at >= since,
                m.status.in_(COUNTED_STATUSES), m.purpose.not_in(self.settings.transactional_purposes),
            )
        ).scalar_one()
        if count >= cap:
            return f"frequency cap: {count} {message.channel} message(s) in {self.settings.frequency_window_hours} h (cap {cap})"
        return None

    def _plugins(self, message: OutboundMessage, contact: Contact) -> str | None:
        for plugin, reason in self.crm.plugins.call_each("crmkit_veto_send", message=message, contact=contact, crm=self.crm):
            if reason:
                return f"{plugin}: {reason}"
        return None

    def timezone_of(self, contact: Contact) -> ZoneInfo:
        for name in (contact.custom.get(self.settings.timezone_field), self.settings.default_timezone):
            if isinstance(name, str) and name:
                try:
                    return ZoneInfo(name)
                except (ZoneInfoNotFoundError, ValueError):
                    continue  # a bad value on one contact must not stop its messages
        return ZoneInfo("UTC")

    def _quiet_hours(self, message: OutboundMessage, contact: Contact, now: datetime) -> Verdict | None:
        if self.quiet is None or self.is_transactional(message.purpose):
            return None
        until = quiet_hours_end(now, self.timezone_of(contact), *self.quiet)
        return None if until is None else Verdict("defer", f"quiet hours until {until.isoformat()}", until)


def quiet_hours_end(now: datetime, tz: ZoneInfo, start: time, end: time) -> datetime | None:
    """When the quiet window around ``now`` (local to ``tz``) ends, in UTC; None when ``now``
    is outside it. A window may span midnight (21:00–08:00)."""
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if start == end:
        return None
    if start < end:
        inside, end_day = start <= clock < end, local.date()
    else:
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)
