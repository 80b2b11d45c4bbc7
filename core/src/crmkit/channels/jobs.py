"""Send jobs: rows of ``messages`` drained like the outbox.

A message is queued in the transaction that decided to send it. A drainer *claims* due
messages with a lease (an UPDATE only one process wins; ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL and MariaDB, ``BEGIN IMMEDIATE`` on SQLite), runs the veto chain again, calls the
channel outside any transaction and records the outcome — the message's new state and its
activity — in one small transaction right after the provider answers. Transient failures are
retried with exponential backoff (:func:`crmkit.events.backoff`) up to ``max_attempts``; a
permanent failure, or the last transient one, moves the message to the dead-letter state
(``dead``).

Crashes. A process killed mid-send leaves its lease to expire and another drainer takes the
message over. Where the message stood decides what that means:

* still ``queued``/``retrying``: it never reached the provider's last step (for SMTP, the
  final ``.``; a server discards a transaction cut off before it), so it is simply resent;
* ``handing_over``: the channel called ``message.hand_over()`` and crmkit committed that state
  before the irrevocable step, but no outcome was recorded. The message may have arrived. It
  is resent (so nothing is lost) and its ``ambiguous`` count goes up, so the one case where a
  recipient can get a second copy is counted and visible (``crmkit messages list
  --ambiguous``), never silent. The copies carry the same Message-ID.

A channel that never calls ``hand_over`` is at least once, without that accounting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.channels.protocol import SendResult, SendStatus
from crmkit.domain.values import utcnow
from crmkit.events import backoff

if TYPE_CHECKING:
    from crmkit.channels.dispatch import MessageService
    from crmkit.storage.uow import UnitOfWork

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
DUE_STATUSES = ("queued", "retrying")
#: A channel is handing the message over (committed before the provider's irrevocable step).
HANDING_OVER = "handing_over"
#: What a drainer may claim: due messages, and hand-overs whose worker's lease ran out.
CLAIMABLE = (*DUE_STATUSES, HANDING_OVER)
UNKNOWN_AFTER_CRASH = ("outcome unknown: the message was being handed over when its worker stopped "
                       "(it may have arrived); sending it again with the same Message-ID")


@attrs.define
class SendReport:
    sent: int = 0
    vetoed: int = 0
    deferred: int = 0
    retrying: int = 0
    dead: int = 0

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


class SendJobs:
    def __init__(self, service: MessageService):
        self.service = service
        self.crm = service.crm
        self.lease = LEASE  # a worker may shorten it (crmkit worker --lease); it must outlast a claimed batch

    @property
    def table(self) -> sa.Table:
        return self.service.table("messages")

    def _due(self, now: datetime) -> sa.ColumnElement[bool]:
        m = self.table.c
        # A hand-over always carries its lease in next_attempt_at, so it is due only once that expired.
        return sa.and_(m.status.in_(CLAIMABLE), sa.or_(m.next_attempt_at.is_(None), m.next_attempt_at <= now))

    def claim(self, now: datetime, ids: Iterable[str] | None = None, limit: int = 100) -> list[str]:
        """Lease due messages (the given ones, or the oldest ``limit``) and return the ids won."""
        m = self.table.c
        stmt = sa.select(m.id).where(self._due(now)).order_by(m.created_at, m.id)
        stmt = stmt.where(m.id.in_(list(ids))) if ids is not None else stmt.limit(limit)
        engine = self.crm.backend.engine
        if engine.dialect.name != "sqlite":
            stmt = stmt.with_for_update(skip_locked=True)
        with engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            won = list(conn.execute(stmt).scalars())
            if won:
                conn.execute(sa.update(self.table).where(m.id.in_(won)).values(next_attempt_at=now + self.lease))
        return won

    def deliver(self, ids: Iterable[str], now: datetime | None = None) -> SendReport:
        """Send the given messages if they are due (the inline path right after queueing)."""
        at = now or utcnow()
        report = SendReport()
        for message_id in self.claim(at, ids):
            report.add(self.deliver_claimed(message_id, at))
        return report

    def drain(self, limit: int | None = None, now: datetime | None = None) -> SendReport:
        """Send every due message: new ones, retries whose time came, deferrals that ended."""
        report, done = SendReport(), 0
        while limit is None or done < limit:
            at = now or utcnow()
            claimed = self.claim(at, limit=min(100, limit - done) if limit else 100)
            if not claimed:
                break
            for message_id in claimed:
                report.add(self.deliver_claimed(message_id, at))
            done += len(claimed)
        return report

    def deliver_claimed(self, message_id: str, now: datetime) -> str:
        """Veto check, send, record. Returns the outcome (a :class:`SendReport` field)."""
        service = self.service
        row = self._row(message_id)
        if row.status == HANDING_OVER:  # its worker died between the hand-over and the answer
            if self._failed(row, SendResult.unknown(UNKNOWN_AFTER_CRASH), now, retry_now=True) == "dead":
                return "dead"
            row = self._row(message_id)
            if row.status not in DUE_STATUSES:
                return "deferred"  # another drainer recovered it first
        with self.crm.read() as uow:
            contact = uow.contacts.get(row.contact_id)
            message = service.outbound(row, attempt=row.attempts + 1)
            try:
                verdict = service.vetoes.check(uow.connection, message, contact, now)  # type: ignore[arg-type]
            except Exception as exc:  # a veto plugin's bug must not send, nor lose the message
                log.warning("message %s: veto check failed: %s", message_id, exc)
                return self._failed(row, SendResult.transient(f"veto check failed: {exc}"), now)
        if verdict is not None and verdict.kind == "veto":
            with self.crm.uow() as w:
                if self._update(w, row, status="vetoed", veto_reason=verdict.reason, next_attempt_at=None, updated_at=now):
                    service.log_activity(w, row, "vetoed", f"{row.id}:vetoed", {"reason": verdict.reason})
                    w.emit("message.vetoed", row.id, service.event_data(row, reason=verdict.reason))
            return "vetoed"
        if verdict is not None:
            with self.crm.uow() as w:
                self._update(w, row, next_attempt_at=verdict.until, updated_at=now)
            return "deferred"
        channel = service.channels[row.channel] if row.channel in service.channels else None
        if channel is None:
            return self._failed(row, SendResult.transient(f"channel {row.channel!r} is not registered (is its plugin installed?)"), now)
        handover = _HandOver(self, row)
        try:
            result = channel.send(attrs.evolve(message, hand_over=handover))
            if not isinstance(result, SendResult):
                result = SendResult.transient(f"channel {row.channel!r} returned {result!r} instead of a SendResult")
        except Exception as exc:  # an exception from a provider is a transient failure
            log.warning("message %s: channel %r raised: %s", message_id, row.channel, exc, exc_info=True)
            result = SendResult.transient(f"{type(exc).__name__}: {exc}")
        if handover.refused:
            return "deferred"  # another drainer holds the message now; it records the outcome
        if result.status is SendStatus.SENT:
            with self.crm.uow() as w:
                if self._update(w, row, status="sent", attempts=row.attempts + 1, provider_message_id=result.provider_message_id,
                                sent_at=now, next_attempt_at=None, last_error=None, updated_at=now):
                    service.log_activity(w, row, "sent", f"{row.id}:sent", {"provider_message_id": result.provider_message_id, "attempt": row.attempts + 1})
                    w.emit("message.sent", row.id, service.event_data(row, provider_message_id=result.provider_message_id))
            return "sent"
        return self._failed(row, result, now)

    def _row(self, message_id: str) -> Any:
        with self.crm.read() as uow:
            return uow.connection.execute(sa.select(self.table).where(self.table.c.id == message_id)).one()  # type: ignore[union-attr]

    def hand_over(self, row: Any) -> bool:
        """Commit ``handing_over`` for the attempt in hand, in its own transaction, before the
        channel's irrevocable step. False when this drainer no longer holds the message (its
        lease expired and another one claimed it): the channel must then abandon the send."""
        m = self.table.c
        with self.crm.backend.engine.connect().execution_options(crmkit_write=True) as conn, conn.begin():
            done = conn.execute(
                sa.update(self.table)
                .where(m.id == row.id, m.status.in_(DUE_STATUSES), m.attempts == row.attempts, m.next_attempt_at == row.next_attempt_at)
                .values(status=HANDING_OVER, updated_at=utcnow())
            ).rowcount
        return bool(done)

    def _failed(self, row: Any, result: SendResult, now: datetime, *, retry_now: bool = False) -> str:
        attempts = row.attempts + 1
        ambiguous = row.ambiguous + (result.status is SendStatus.UNKNOWN)
        dead = result.status is SendStatus.PERMANENT or attempts >= self.service.settings.max_attempts
        # retry_now: the caller sends again at once, so the message keeps the caller's lease.
        retry_at = None if dead else row.next_attempt_at if retry_now else now + backoff(attempts)
        payload = {"error": result.error, "attempt": attempts, "permanent": result.status is SendStatus.PERMANENT, "dead": dead,
                   "retry_at": (now if retry_now else retry_at).isoformat() if retry_at else None,
                   "ambiguous": result.status is SendStatus.UNKNOWN}
        with self.crm.uow() as w:
            if self._update(w, row, status="dead" if dead else "retrying", attempts=attempts, ambiguous=ambiguous,
                            last_error=result.error, next_attempt_at=retry_at, updated_at=now):
                self.service.log_activity(w, row, "failed", f"{row.id}:failed:{attempts}", payload)
                w.emit("message.dead" if dead else "message.failed", row.id,
                       self.service.event_data(row, error=result.error, attempt=attempts, ambiguous=ambiguous))
        return "dead" if dead else "retrying"

    def _update(self, uow: UnitOfWork, row: Any, **values: Any) -> bool:
        """Write the outcome unless another drainer already finished the message or took it
        over (its lease expired while this one was sending): only the attempt this drainer
        started — same status family, same attempt count — changes."""
        m = self.table.c
        result = uow.connection.execute(  # type: ignore[union-attr]
            sa.update(self.table).where(m.id == row.id, m.status.in_(CLAIMABLE), m.attempts == row.attempts).values(**values)
        )
        return bool(result.rowcount)


class _HandOver:
    """The ``hand_over`` callable one attempt gives its channel: commits the hand-over once
    and remembers whether it was refused."""

    def __init__(self, jobs: SendJobs, row: Any):
        self.jobs, self.row = jobs, row
        self.called = False
        self.refused = False

    def __call__(self) -> bool:
        if not self.called:
            self.called = True
            self.refused = not self.jobs.hand_over(self.row)
        return not self.refused
