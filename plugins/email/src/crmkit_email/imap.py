"""Inbound mail by IMAP polling: the same handling as the SMTP listener, for a mailbox at a
provider (``crmkit email poll``, and ``crmkit worker`` through ``crmkit_worker_tick``).

Every message goes through :func:`crmkit_email.inbound.receive` — replies become activities,
unknown senders leads through the intake pipeline, DSN and ARF reports receipts, mailto
unsubscribes unsubscribes — exactly as if it had arrived over SMTP.

What was handled is tracked by UID, not by the ``\\Seen`` flag (a person reading the mailbox
in a mail client sets that too): the table ``email_imap_mailboxes`` keeps, per account and
mailbox, the UIDVALIDITY and the highest UID handled. A poll fetches the UIDs above it in
ascending order and advances it after each message. A poller killed between handling a message
and advancing the UID handles that one message again on the next poll, and
:func:`~crmkit_email.inbound.receive` is idempotent for a redelivered message (the activity's
external id is the Message-ID, the lead is found by its address), so the crash costs nothing
twice. When the server's UIDVALIDITY changes (the mailbox was recreated) every message is
looked at again, which the same idempotence makes harmless.

Only one poller works a mailbox at a time: it claims the mailbox's row with a lease (an
``UPDATE … WHERE`` that one process wins on every database), renews it after each message and
gives it up with the time of the next poll. A poller that finds its lease taken stops.

A message whose handling raises stops the poll (the next one retries it, so a database outage
loses nothing); after ``MAX_FAILURES`` failures on the same UID the message is skipped with an
error in the log, so one unreadable message cannot hold up the mailbox for ever.

The password is only ever passed to ``IMAP4.login``: it is not in the settings' repr, error
messages or log lines (imaplib's own debug output, which would show it, is never enabled).
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from crmkit.domain.values import new_id, utcnow
from crmkit.errors import CRMError
from crmkit.storage.sql.types import UTCDateTime

from crmkit_email.channel import EmailChannel
from crmkit_email.inbound import Outcome, receive
from crmkit_email.settings import EmailSettings

if TYPE_CHECKING:
    from crmkit.app import CRM

log = logging.getLogger(__name__)

TABLE = "email_imap_mailboxes"
#: Failures of one message before it is skipped.
MAX_FAILURES = 3
_FLAGS_SEEN = r"(\Seen)"


class ImapError(CRMError):
    """The IMAP server could not be reached or refused us (the message never holds a secret)."""


def define_table(md: sa.MetaData) -> sa.Table:
    return sa.Table(
        TABLE, md,
        sa.Column("account", sa.String(255), primary_key=True),  # user@host:port/mailbox
        sa.Column("uidvalidity", sa.BigInteger),
        sa.Column("last_uid", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("owner", sa.String(32)),  # the poller holding the lease
        sa.Column("leased_until", UTCDateTime()),
        sa.Column("next_poll_at", UTCDateTime()),
        sa.Column("last_polled_at", UTCDateTime()),
        sa.Column("failed_uid", sa.BigInteger),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
    )


@attrs.define
class PollReport:
    """What one poll did. ``skipped`` says why nothing was fetched (not due, or another
    poller holds the mailbox)."""

    account: str
    fetched: int = 0
    outcomes: list[Outcome] = attrs.field(factory=list)
    skipped: str = ""
    error: str = ""
    last_uid: int = 0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.kind] = counts.get(outcome.kind, 0) + 1
        return counts


def account_key(settings: EmailSettings) -> str:
    return f"{settings.imap_username}@{settings.imap_host}:{settings.imap_port}/{settings.imap_mailbox}"[:255]


def connect(settings: EmailSettings) -> imaplib.IMAP4:
    """A logged-in IMAP connection with the configured security."""
    where = f"IMAP {settings.imap_host}:{settings.imap_port} ({settings.imap_security})"
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    try:
        if settings.imap_security == "ssl":
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(settings.imap_host, settings.imap_port, ssl_context=context, timeout=settings.timeout)
        else:
            client = imaplib.IMAP4(settings.imap_host, settings.imap_port, timeout=settings.timeout)
            if settings.imap_security == "starttls":
                client.starttls(ssl_context=context)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ImapError(f"{where}: cannot connect: {exc}") from None
    try:
        client.login(settings.imap_username, settings.imap_password)
    except (OSError, imaplib.IMAP4.error) as exc:
        _close(client)
        # The server's answer ("[AUTHENTICATIONFAILED] …") never repeats the password.
        raise ImapError(f"{where}: login as {settings.imap_username!r} refused: {_text(exc)}") from None
    return client


def _text(exc: BaseException) -> str:
    return str(exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc)


def _close(client: imaplib.IMAP4) -> None:
    try:
        client.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def _quote_mailbox(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(result: tuple[str, list[Any]], what: str) -> list[Any]:
    typ, data = result
    if typ != "OK":
        raise ImapError(f"IMAP {what} failed: {_text(imaplib.IMAP4.error(data[0] if data else typ))}")
    return data


class MailboxState:
    """The mailbox's row in ``email_imap_mailboxes``: the lease and the last UID handled."""

    def __init__(self, crm: CRM, account: str):
        self.crm = crm
        self.account = account
        self.table: sa.Table = crm.backend.metadata.tables[TABLE]

    def _where(self, *conditions: Any) -> Any:
        return sa.and_(self.table.c.account == self.account, *conditions)

    def row(self) -> Any:
        with self.crm.read() as uow:
            return uow.connection.execute(sa.select(self.table).where(self._where())).first()  # type: ignore[union-attr]

    def claim(self, owner: str, now: datetime, lease: timedelta, *, due_only: bool) -> bool:
        """Take the mailbox for ``lease`` if nobody holds it (and, with ``due_only``, if its
        next poll is due). True when this caller won."""
        c = self.table.c
        if self.row() is None:
            try:
                with self.crm.uow() as uow:
                    uow.connection.execute(sa.insert(self.table).values(account=self.account, last_uid=0, failures=0))  # type: ignore[union-attr]
            except sa.exc.IntegrityError:
                pass  # another poller created it at the same moment
        conditions = [sa.or_(c.leased_until.is_(None), c.leased_until <= now)]
        if due_only:
            conditions.append(sa.or_(c.next_poll_at.is_(None), c.next_poll_at <= now))
        with self.crm.uow() as uow:
            won = uow.connection.execute(  # type: ignore[union-attr]
                sa.update(self.table).where(self._where(*conditions)).values(owner=owner, leased_until=now + lease)
            ).rowcount
        return won == 1

    def start(self, owner: str, uidvalidity: int) -> int | None:
        """The last UID handled in this UIDVALIDITY (0 after a change of UIDVALIDITY), or None
        when the lease was lost."""
        row = self.row()
        if row is None or row.owner != owner:
            return None
        if row.uidvalidity == uidvalidity:
            return int(row.last_uid)
        if row.uidvalidity is not None:
            log.warning("IMAP %s: UIDVALIDITY changed from %s to %s; looking at every message again (handled ones are recognised)",
                        self.account, row.uidvalidity, uidvalidity)
        self._update(owner, uidvalidity=uidvalidity, last_uid=0, failed_uid=None, failures=0)
        return 0

    def advance(self, owner: str, uid: int, lease: timedelta) -> bool:
        """Record ``uid`` as handled and renew the lease; False when the lease was lost."""
        return self._update(owner, last_uid=uid, failed_uid=None, failures=0, leased_until=utcnow() + lease)

    def failed(self, owner: str, uid: int, error: str) -> int:
        """Count a failure on ``uid``; returns how many times it failed in a row."""
        row = self.row()
        failures = (int(row.failures) if row is not None and row.failed_uid == uid else 0) + 1
        self._update(owner, failed_uid=uid, failures=failures, last_error=error[:2000])
        return failures

    def release(self, owner: str, next_poll_at: datetime, error: str = "") -> None:
        self._update(owner, owner=None, leased_until=None, next_poll_at=next_poll_at, last_polled_at=utcnow(), last_error=error[:2000] or None)

    def _update(self, holder: str, /, **values: Any) -> bool:
        with self.crm.uow() as uow:
            return bool(uow.connection.execute(  # type: ignore[union-attr]
                sa.update(self.table).where(self._where(self.table.c.owner == holder)).values(**values)).rowcount)


def poll(crm: CRM, *, now: datetime | None = None, due_only: bool = False,
         handle: Callable[[CRM, bytes], Outcome] | None = None) -> PollReport:
    """Fetch and handle the mailbox's new messages (at most ``imap_batch``).

    :param due_only: poll only when ``imap_poll_seconds`` have passed since the last poll (the
        worker's ticks); ``crmkit email poll`` polls at once.
    :param handle: what to do with each raw message (default: :func:`receive`).
    :raises ImapError: the server could not be reached, refused the login or the mailbox.
    """
    settings = EmailChannel.for_crm(crm).settings
    if not settings.imap_host:
        raise CRMError("IMAP polling is off: set imap_host, imap_username and imap_password in [plugins.email]")
    handle = handle or (lambda crm_, raw: receive(crm_, raw))
    at = now or utcnow()
    state = MailboxState(crm, account_key(settings))
    report = PollReport(state.account)
    owner, lease = new_id(), timedelta(seconds=settings.imap_lease_seconds)
    if due_only:
        row = state.row()  # a read first: a worker ticks every second, a poll is due once a minute
        if row is not None and row.next_poll_at is not None and row.next_poll_at > at:
            report.skipped = "not due yet"
            return report
    if not state.claim(owner, at, lease, due_only=due_only):
        report.skipped = "not due yet" if due_only and _held_by_nobody(state, at) else "another poller holds the mailbox"
        return report
    error = ""
    try:
        _poll_claimed(crm, settings, state, owner, lease, report, handle)
    except Exception as exc:
        error = str(exc)
        raise
    finally:
        report.error = error
        state.release(owner, utcnow() + timedelta(seconds=settings.imap_poll_seconds), error)
    return report


def _held_by_nobody(state: MailboxState, now: datetime) -> bool:
    row = state.row()
    return row is not None and (row.leased_until is None or row.leased_until <= now)


def _poll_claimed(crm: CRM, settings: EmailSettings, state: MailboxState, owner: str, lease: timedelta,
                  report: PollReport, handle: Callable[[CRM, bytes], Outcome]) -> None:
    client = connect(settings)
    try:
        # Read-only unless handled messages are flagged \Seen: nothing else is changed on the server.
        _check(client.select(_quote_mailbox(settings.imap_mailbox), readonly=not settings.imap_mark_seen), f"SELECT {settings.imap_mailbox!r}")
        _, values = client.response("UIDVALIDITY")
        if not values or values[0] is None:
            raise ImapError(f"IMAP {settings.imap_host}: the server sent no UIDVALIDITY for {settings.imap_mailbox!r}")
        uidvalidity = int(values[0])
        last = state.start(owner, uidvalidity)
        if last is None:
            report.skipped = "another poller took the mailbox over"
            return
        report.last_uid = last
        # "UID n:*" always matches the highest UID, even when it is below n: filter.
        found = _check(client.uid("SEARCH", f"UID {last + 1}:*"), "UID SEARCH")
        uids = sorted(uid for uid in (int(x) for x in (found[0] or b"").split()) if uid > last)[: settings.imap_batch]
        for uid in uids:
            raw = _fetch(client, uid)
            if raw is not None:
                report.fetched += 1
                try:
                    report.outcomes.append(handle(crm, raw))
                except Exception as exc:
                    failures = state.failed(owner, uid, f"UID {uid}: {exc}")
                    if failures < MAX_FAILURES:
                        raise
                    log.exception("IMAP %s: skipping UID %s after %s failures", state.account, uid, failures)
            if settings.imap_mark_seen and raw is not None:
                _mark_seen(client, state.account, uid)
            if not state.advance(owner, uid, lease):
                report.skipped = "another poller took the mailbox over"
                return
            report.last_uid = uid
    finally:
        _close(client)


def _mark_seen(client: imaplib.IMAP4, account: str, uid: int) -> None:
    """Flag a handled message \\Seen — a courtesy to people reading the mailbox: the UID
    bookkeeping does not depend on it, so a refusal is logged and the poll goes on."""
    try:
        typ, data = client.uid("STORE", str(uid), "+FLAGS.SILENT", _FLAGS_SEEN)
    except imaplib.IMAP4.error as exc:
        typ, data = "NO", [str(exc).encode()]
    if typ != "OK":
        log.warning("IMAP %s: could not flag UID %s as seen: %s", account, uid, _text(imaplib.IMAP4.error(data[0] if data else typ)))


_LITERAL = re.compile(rb"\bBODY\[\]")


def _fetch(client: imaplib.IMAP4, uid: int) -> bytes | None:
    """The message's bytes without setting \\Seen (None: expunged meanwhile)."""
    data = _check(client.uid("FETCH", str(uid), "(BODY.PEEK[])"), f"UID FETCH {uid}")
    for item in data:
        if isinstance(item, tuple) and _LITERAL.search(item[0]):
            return bytes(item[1])
    return None


def worker_tick(crm: CRM, now: datetime) -> None:
    """``crmkit_worker_tick``: poll the mailbox when it is due (and IMAP is configured)."""
    settings = EmailChannel.for_crm(crm).settings
    if not settings.imap_host:
        return
    try:
        report = poll(crm, now=now, due_only=True)
    except ImapError as exc:
        log.warning("%s (retrying in %g s)", exc, settings.imap_poll_seconds)
        return
    if report.fetched:
        log.info("IMAP %s: %s message(s): %s", report.account, report.fetched, report.counts())
