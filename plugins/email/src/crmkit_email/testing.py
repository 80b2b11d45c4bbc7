"""A real SMTP server for tests and benchmarks: :class:`SmtpSink` runs aiosmtpd on 127.0.0.1 in
a thread and records every message it accepts (raw bytes, envelope, Message-ID).

Replies can be scripted per recipient (``sink.replies["ada@example.org"] = "550 5.1.1 no such
user"``), so tests see the server's real answers travel through smtplib.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from collections import Counter
from typing import Any

import attrs


@attrs.frozen
class Delivery:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> Any:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Handler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:  # noqa: N802
        reply = self.sink.replies.get(address.lower())
        if reply and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.sink.delay:
            await asyncio.sleep(self.sink.delay)  # a remote server's processing before it takes the message
        with self.sink.lock:
            self.sink.deliveries.append(Delivery(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.original_content or envelope.content)))
            self.sink.sessions.add(id(session))
        return "250 2.0.0 Ok: queued"


class SmtpSink:
    """``with SmtpSink() as sink:`` — ``sink.port``, ``sink.deliveries``, ``sink.message_ids()``.

    :param tls_context: offer STARTTLS with this server context.
    :param credentials: ``{username: password}`` to require AUTH (over TLS only).
    :param delay: seconds each message takes the server before it is accepted.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None, tls_context: ssl.SSLContext | None = None,
                 credentials: dict[str, str] | None = None, delay: float = 0.0):
        self.host = host
        self.delay = delay
        self.port = port or free_port(host)
        self.tls_context = tls_context
        self.credentials = credentials
        self.replies: dict[str, str] = {}
        self.deliveries: list[Delivery] = []
        self.sessions: set[int] = set()  # one per SMTP connection that delivered something
        self.lock = threading.Lock()
        self._controller: Any = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and self.credentials.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 235/535 reply

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        kwargs: dict[str, Any] = {"decode_data": False, "enable_SMTPUTF8": True}
        if self.tls_context is not None:
            kwargs.update(tls_context=self.tls_context, require_starttls=False)
        if self.credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def message_ids(self) -> Counter[str]:
        """How many times each Message-ID arrived."""
        with self.lock:
            return Counter(d.message_id for d in self.deliveries)
