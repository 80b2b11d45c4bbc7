"""The ``email`` channel: what crmkit's send jobs call.

One instance per CRM (``crmkit_register_channels`` creates it; ``crmkit_startup`` hands it the
CRM's settings). It builds the message (:mod:`crmkit_email.mime`), waits for the recipient
domain's throttle, and sends over a reused SMTP connection (:mod:`crmkit_email.smtp`).

Exactly once, as far as SMTP allows: SMTP has no two-phase commit, but it has a last step — the
"." that ends DATA; a server discards a transaction cut off before it. The sender calls
``message.hand_over()`` right before writing that ".", and crmkit commits ``handing_over``
first. A worker killed before that point leaves a message that certainly did not leave, and it
is resent freely; a worker killed after it (or a connection lost while waiting for the 250)
leaves one whose fate is unknown: it is resent too, with the same Message-ID (derived from the
crmkit message id), and counted in the message's ``ambiguous`` column. The window is one round
trip per kill, and every copy it can produce is counted.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs
from crmkit.channels import Capabilities, DeliveryReceipt, InboundMessage, OutboundMessage, SendResult
from crmkit.channels.templates import looks_like_html
from crmkit.errors import CRMError

from crmkit_email import bounces, mime
from crmkit_email.settings import EmailSettings
from crmkit_email.smtp import SmtpSender
from crmkit_email.throttle import DomainThrottle
from crmkit_email.tracking import decorate
from crmkit_email.unsubscribe import make_token

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.domain import Contact

NAME = "email"
#: Stand-ins :meth:`EmailChannel.local_sink` uses when the settings have none.
LOCAL_FROM = "hello@crmkit-demo.example"
LOCAL_PUBLIC_URL = "http://127.0.0.1:8000"


class EmailChannel:
    name = NAME
    capabilities = Capabilities(max_length=None, subject=True, templates=True, delivery_receipts=True, html=True)

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep):
        self.sleep = sleep
        self._settings: EmailSettings | None = None
        self._transactional: frozenset[str] = frozenset({"transactional"})
        self.sender: SmtpSender | None = None
        self.throttle: DomainThrottle | None = None

    def configure(self, settings: EmailSettings, transactional_purposes: list[str] | tuple[str, ...]) -> None:
        """Called once the CRM's settings are known (``crmkit_startup``)."""
        settings.check()
        if self.sender is not None:
            self.sender.close()
        self._settings = settings
        self._transactional = frozenset(transactional_purposes)
        self.sender = SmtpSender(settings)
        self.throttle = DomainThrottle(settings.throttle_per_second, settings.throttle_burst, settings.domain_rates())

    @classmethod
    def for_crm(cls, crm: CRM) -> EmailChannel:
        channel = crm.messages.channels.get(NAME)
        if not isinstance(channel, cls):
            raise CRMError("the email channel is not the crmkit-email plugin's (is another plugin registering 'email'?)")
        return channel

    @property
    def settings(self) -> EmailSettings:
        if self._settings is None:
            raise CRMError("the email channel is not configured yet (it is configured when the CRM opens)")
        return self._settings

    # --- the Channel protocol ---------------------------------------------------------

    def address_for(self, contact: Contact) -> str | None:
        return contact.email

    def send(self, message: OutboundMessage) -> SendResult:
        settings, sender, throttle = self.settings, self.sender, self.throttle
        assert sender is not None and throttle is not None
        if not settings.from_address:
            return SendResult.transient("[plugins.email] from_address is not set")
        try:
            built = self.build(message)
        except ValueError as exc:
            return SendResult.permanent(str(exc))
        domain = message.to.rpartition("@")[2]
        wait = throttle.reserve(domain, settings.throttle_max_wait)
        if wait is None:
            return SendResult.transient(f"throttled: {domain} is limited to {throttle.rate_for(domain):g} message(s) per second")
        if wait > 0:
            self.sleep(wait)
        return sender.send(built, settings.sender, message.to, hand_over=message.hand_over)

    def build(self, message: OutboundMessage) -> Any:
        """The RFC 5322 message for ``message`` (raises ValueError when it cannot be sent)."""
        settings = self.settings
        body = message.body
        # Whether the body is HTML was decided from the template when it was rendered (with
        # autoescaping); guessing from the rendered text would let data that looks like a tag
        # turn a text message into HTML. Only messages queued before that was recorded guess.
        is_html = looks_like_html(body) if message.html is None else message.html
        html = body if is_html else None
        unsubscribe: list[str] = []
        if message.purpose not in self._transactional:
            unsubscribe = self.unsubscribe_uris(message.id)
            if not any(uri.startswith(("https://", "http://")) for uri in unsubscribe):
                raise ValueError("non-transactional e-mail needs a one-click unsubscribe link: set public_url and "
                                 "unsubscribe_secret in [plugins.email] (RFC 8058), then requeue the message")
        # crmkit_email.tracking: open pixel and click links (tracked purposes), preference-page footer.
        text, html = decorate(settings, message, None if html is not None else body, html, marketing=bool(unsubscribe))
        return mime.build(
            message_id=mime.message_id_for(message.id, settings.id_domain), from_address=settings.from_address,
            from_name=settings.from_name, reply_to=settings.reply_to, to=message.to, subject=message.subject,
            text=text, html=html,
            list_unsubscribe=unsubscribe, one_click=bool(unsubscribe),
        )

    def unsubscribe_uris(self, message_id: str) -> list[str]:
        settings = self.settings
        if not settings.unsubscribe_secret:
            return []
        token = make_token(settings.unsubscribe_secret, message_id)
        uris = []
        if settings.unsubscribe_address:
            uris.append(f"mailto:{settings.unsubscribe_address}?subject={quote('unsubscribe ' + token)}")
        if settings.public_url:
            uris.append(f"{settings.public_url.rstrip('/')}/email/unsubscribe/{token}")
        return uris

    def parse_inbound(self, payload: Mapping[str, Any]) -> list[InboundMessage]:
        """``{"message": <raw RFC 5322 bytes>}`` → the message as an :class:`InboundMessage`
        (none for a bounce or complaint report: those are receipts)."""
        from crmkit_email.inbound import to_inbound

        raw = payload["message"]
        return [] if bounces.is_report(bounces.parse_message(raw)) else [to_inbound(raw, received_at=datetime.now(UTC))]

    def parse_callback(self, payload: Mapping[str, Any]) -> list[DeliveryReceipt]:
        """``{"message": <raw DSN or ARF report>}`` → its delivery receipts."""
        return bounces.receipts_from(payload["message"])

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()

    # --- a local stand-in (crmkit.channels.LocalSinkProvider) ----------------------------

    @contextlib.contextmanager
    def local_sink(self) -> Iterator[LocalSmtp]:
        """Run an aiosmtpd server on 127.0.0.1 (a free port) and send there for the ``with``
        block (``crmkit demo``): the configured relay is never contacted. Settings a real
        send needs but a demo may lack — a From address, unsubscribe links — get stand-ins;
        the configured settings come back when the block ends."""
        from crmkit_email.testing import SmtpSink

        configured = self._settings
        base = configured or EmailSettings()
        with SmtpSink() as sink:
            self.configure(attrs.evolve(
                base, host=sink.host, port=sink.port, security="none", username="", password="", ca_file="",
                from_address=base.from_address or LOCAL_FROM, public_url=base.public_url or LOCAL_PUBLIC_URL,
                unsubscribe_secret=base.unsubscribe_secret or secrets.token_urlsafe(24), throttle_per_second=0.0,
            ), sorted(self._transactional))
            try:
                yield LocalSmtp(sink)
            finally:
                if configured is not None:
                    self.configure(configured, sorted(self._transactional))
                else:
                    self.close()
                    self._settings = self.sender = self.throttle = None


class LocalSmtp:
    """What :meth:`EmailChannel.local_sink` yields: the running server, and its count."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.description = f"SMTP (aiosmtpd) on {sink.host}:{sink.port}"

    def delivered(self) -> int:
        with self.sink.lock:
            return len(self.sink.deliveries)
