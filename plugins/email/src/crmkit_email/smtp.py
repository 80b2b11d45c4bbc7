"""Sending over SMTP with :mod:`smtplib`: one connection reused across a batch, and every
failure classified as transient (retry later) or permanent (dead letter).

Classification follows the reply code of the command that failed: 5xx on MAIL, RCPT or DATA is
permanent (no such mailbox, content refused), 4xx is transient (greylisting, mailbox busy,
rate limits). Failures that are about the connection or our own account rather than the
message — refused or dropped connections, timeouts, TLS, authentication — are transient
whatever their code: the message is fine, and once the cause is fixed the retries deliver it.

One transaction is smtplib's own commands — ``mail``, ``rcpt``, ``putcmd("data")`` /
``getreply``, ``send`` — in the order :meth:`smtplib.SMTP.sendmail` uses, split at one point:
the body goes out, then the caller's ``hand_over`` runs (crmkit commits "handing over"), and
only then the final ``.`` that makes the server take the message. A process killed before the
``.`` leaves a transaction the server discards; the only window in which a message can arrive
without crmkit knowing is the one round trip between that ``.`` and the server's answer, and
a connection lost there is reported as an unknown outcome, not as a plain transient failure.
"""

from __future__ import annotations

import copy
import email.generator
import io
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from email.message import Message

from crmkit.channels import SendResult, SendStatus

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
                # The body and DATA's final "." go out as separate writes (the hand-over sits
                # between them); with Nagle's algorithm the small second write waits for the
                # server's delayed ACK of the first, tens of ms per message.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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

    def send(self, msg: Message, sender: str, recipient: str, *, hand_over: Callable[[], bool] | None = None) -> SendResult:
        """One SMTP transaction; the result's provider id is the message's Message-ID.

        :param hand_over: called after the body is written and before the final ``.``; when it
            returns False (or raises) the transaction is abandoned by dropping the connection,
            which makes the server discard it.
        """
        with self._lock:
            try:
                conn = self._usable()
            except _ConnectionProblem as exc:
                return SendResult.transient(str(exc))
            try:
                result = self._transaction(conn, msg, sender, recipient, hand_over)
            except BaseException:
                self._drop()  # mid-transaction: only closing the socket leaves the server a clean state
                raise
            if result.status is SendStatus.SENT:
                self._sent_on_conn += 1
                self._last_used = self.clock()
            return result

    def _transaction(self, conn: smtplib.SMTP, msg: Message, sender: str, recipient: str,
                     hand_over: Callable[[], bool] | None) -> SendResult:
        try:
            data, options = _flatten(conn, msg, sender, recipient)
            code, reply = conn.mail(sender, options)
            if code != 250:
                return self._refused(code, f"sender {sender} refused", reply)
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(code, f"recipient {recipient} refused", reply)
            conn.putcmd("data")
            code, reply = conn.getreply()
            if code != 354:
                return self._refused(code, "message refused", reply)
            conn.send(_dot_stuffed(data))
        except (smtplib.SMTPException, OSError) as exc:
            # Nothing was handed over: the server drops the transaction with the connection.
            self._drop()
            return SendResult.transient(f"{type(exc).__name__}: {exc}")
        if hand_over is not None and not hand_over():
            self._drop()
            return SendResult.transient("not sent: another worker took this message over")
        try:
            conn.send(b".\r\n")
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return SendResult.unknown(f"no answer after the message was handed over (it may have arrived): {type(exc).__name__}: {exc}")
        if code != 250:
            return self._refused(code, "message refused", reply)
        return SendResult.sent(str(msg["Message-ID"]))

    def _refused(self, code: int, what: str, reply: bytes) -> SendResult:
        """A refusal ends this transaction only: RSET keeps the connection for the next
        message (421, the server closing, or a failed RSET drop it)."""
        conn = self._conn
        if code == 421 or conn is None:
            self._drop()
        else:
            try:
                conn.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        return _by_code(code, what, reply)

    def _drop(self) -> None:
        """Close the socket without QUIT (a QUIT written inside DATA would be message text)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None


def _flatten(conn: smtplib.SMTP, msg: Message, sender: str, recipient: str) -> tuple[bytes, list[str]]:
    """The message's bytes and MAIL options, as :meth:`smtplib.SMTP.send_message` and
    :meth:`~smtplib.SMTP.sendmail` make them (SMTPUTF8 for non-ASCII addresses, SIZE)."""
    options: list[str] = []
    msg_copy = copy.copy(msg)
    del msg_copy["Bcc"]
    del msg_copy["Resent-Bcc"]
    with io.BytesIO() as out:
        if not (sender + recipient).isascii():
            if not conn.has_extn("smtputf8"):
                raise smtplib.SMTPNotSupportedError("the address needs SMTPUTF8, which the server does not offer")
            generator = email.generator.BytesGenerator(out, policy=msg.policy.clone(utf8=True))
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        else:
            generator = email.generator.BytesGenerator(out)
        generator.flatten(msg_copy, linesep="\r\n")
        data = out.getvalue()
    if conn.does_esmtp and conn.has_extn("size"):
        options.insert(0, f"size={len(data)}")
    return data, options


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload without its terminator: leading dots doubled (RFC 5321 4.5.2), as
    :meth:`smtplib.SMTP.data` does, ending in CRLF so the ``.`` can follow on its own line."""
    stuffed = _LEADING_DOT.sub(b"..", data)
    return stuffed if stuffed.endswith(b"\r\n") else stuffed + b"\r\n"


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
