"""Sending over SMTP with :mod:`smtplib`: one connection reused across a batch, and every
failure classified as transient (retry later) or permanent (dead letter).

Classification follows the reply code of the command that failed: 5xx on MAIL, RCPT or DATA is
permanent (no such mailbox, content refused), 4xx is transient (greylisting, mailbox busy,
rate limits). Failures that are about the connection or our own account rather than the
message — refused or dropped connections, timeouts, TLS, authentication — are transient
whatever their code: the message is fine, and once the cause is fixed the retries deliver it.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from email.message import Message

from crmkit.channels import SendResult

from crmkit_email.settings import EmailSettings

log = logging.getLogger(__name__)


class _ConnectionProblem(Exception):
    """Connecting, TLS or login failed (transient, and the connection is unusable)."""


class SmtpSender:
    """Holds at most one open SMTP connection. Thread-safe: sends are serialised on it."""

    def __init__(self, settings: EmailSettings, *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self._conn: smtplib.SMTP | None = None
        self._sent_on_conn = 0
        self._last_used = 0.0
        self._lock = threading.Lock()
        self.connections_opened = 0  # for tests and the benchmark: reuse is observable

    # --- connection -------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file or None)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            if s.security == "ssl":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls_context())
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            try:
                conn.ehlo()
                if s.security == "starttls":
                    if not conn.has_extn("starttls"):
                        # Never fall back to plain text silently: the password would travel in clear.
                        raise _ConnectionProblem(f"{s.host}:{s.port} does not offer STARTTLS (security = \"starttls\")")
                    conn.starttls(context=self._tls_context())
                    conn.ehlo()
                if s.username:
                    conn.login(s.username, s.password)
            except BaseException:
                _quietly_close(conn)
                raise
        except _ConnectionProblem:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            # smtplib's message carries the server's reply only, never the password.
            raise _ConnectionProblem(f"authentication as {s.username!r} failed: {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise _ConnectionProblem(f"cannot connect to {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None
        self.connections_opened += 1
        self._sent_on_conn = 0
        return conn

    def _usable(self) -> smtplib.SMTP:
        conn = self._conn
        if conn is not None and self._sent_on_conn >= self.settings.max_messages_per_connection:
            self.close_unlocked()
            conn = None
        if conn is not None and self.clock() - self._last_used > self.settings.idle_check_seconds:
            # Servers drop idle connections; a NOOP costs one round trip only after a pause.
            try:
                alive = conn.noop()[0] == 250
            except (smtplib.SMTPException, OSError):
                alive = False
            if not alive:
                self.close_unlocked()
                conn = None
        if conn is None:
            conn = self._conn = self._connect()
        return conn

    def check(self) -> str | None:
        """Connect, secure and log in once: None when that works, else what failed."""
        with self._lock:
            try:
                self.close_unlocked()
                self._conn = self._connect()
            except _ConnectionProblem as exc:
                return str(exc)
            self.close_unlocked()
        return None

    def close(self) -> None:
        """QUIT and drop the connection (the worker calls this when its queue runs dry)."""
        with self._lock:
            self.close_unlocked()

    def close_unlocked(self) -> None:
        if self._conn is not None:
            _quietly_close(self._conn)
            self._conn = None

    # --- sending ----------------------------------------------------------------------

    def send(self, msg: Message, sender: str, recipient: str) -> SendResult:
        """One SMTP transaction; the result's provider id is the message's Message-ID."""
        with self._lock:
            try:
                conn = self._usable()
            except _ConnectionProblem as exc:
                return SendResult.transient(str(exc))
            try:
                refused = conn.send_message(msg, from_addr=sender, to_addrs=[recipient])
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients.get(recipient, (None, b""))
                return _by_code(code, f"recipient {recipient} refused", reply)
            except smtplib.SMTPSenderRefused as exc:
                return _by_code(exc.smtp_code, f"sender {sender} refused", exc.smtp_error)
            except smtplib.SMTPDataError as exc:
                return _by_code(exc.smtp_code, "message refused", exc.smtp_error)
            except smtplib.SMTPResponseException as exc:
                self.close_unlocked()
                return _by_code(exc.smtp_code, "server error", exc.smtp_error)
            except (smtplib.SMTPException, OSError) as exc:
                # Dropped connection or timeout mid-transaction: the server may or may not
                # have taken the message; the retry carries the same Message-ID.
                self.close_unlocked()
                return SendResult.transient(f"{type(exc).__name__}: {exc}")
            self._sent_on_conn += 1
            self._last_used = self.clock()
            if refused:  # only one recipient, so this cannot be partial; kept for safety
                code, reply = refused[recipient]
                return _by_code(code, f"recipient {recipient} refused", reply)
            return SendResult.sent(str(msg["Message-ID"]))


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _by_code(code: int | None, what: str, reply: bytes | str) -> SendResult:
    error = f"{what}: {code} {_text(reply)}".strip()
    if code is not None and 500 <= code < 600:
        return SendResult.permanent(error)
    return SendResult.transient(error)


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        try:
            conn.close()
        except OSError:
            pass
