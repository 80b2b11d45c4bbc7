"""``crm.messages``: templates, sending through the veto chain, suppressions, receipts and the
dead-letter list.

:meth:`MessageService.send` validates the request, renders the message and queues it (or
records its veto) in one transaction, together with its activity; with an idempotency key a
repeated call returns the first message instead of sending again. In the embedded default the
message is then handed to its channel at once; with ``dispatch_inline=False`` it waits for
:meth:`MessageService.drain` (``crmkit messages drain`` in another process).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit import domain
from crmkit.channels import templates
from crmkit.channels.jobs import SendJobs, SendReport
from crmkit.channels.protocol import Channel, DeliveryReceipt, OutboundMessage, ReceiptStatus
from crmkit.channels.registry import collect_channels
from crmkit.channels.settings import ChannelSettings
from crmkit.channels.vetoes import VetoChain
from crmkit.domain.values import Direction, new_id, utcnow
from crmkit.errors import CRMError, FieldIssue, NotFound, ValidationFailed
from crmkit.plugins import Registry
from crmkit.storage.uow import UnitOfWork

if TYPE_CHECKING:
    from crmkit.app import CRM

SETTINGS_SECTION = "channels"
#: Receipts that put the address on the suppression list, and the reason recorded.
SUPPRESSING_RECEIPTS = {ReceiptStatus.HARD_BOUNCE: "hard_bounce", ReceiptStatus.COMPLAINT: "complaint", ReceiptStatus.UNSUBSCRIBED: "unsubscribed"}
#: Receipts that change a sent message's status (opens and clicks are only logged).
STATUS_RECEIPTS = {ReceiptStatus.DELIVERED, ReceiptStatus.SOFT_BOUNCE, ReceiptStatus.HARD_BOUNCE, ReceiptStatus.COMPLAINT}
SUPPRESSION_REASONS = ("hard_bounce", "complaint", "stop", "unsubscribed", "manual")


def _issue(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldIssue(field, code, message)])


class MessageService:
    """Created by the CRM for every open; the channel tables come from the built-in
    ``crmkit.builtin.channels_plugin`` (disable it and every call says so)."""

    def __init__(self, crm: CRM):
        self.crm = crm
        self.channels: Registry[Channel] = collect_channels(crm.plugins)

    # --- wiring -------------------------------------------------------------------------

    def table(self, name: str) -> sa.Table:
        table = self.crm.backend.metadata.tables.get(name)
        if table is None:
            raise CRMError(f"messaging is unavailable: table {name!r} is missing (is the built-in plugin crmkit.builtin.channels_plugin disabled?)")
        return table

    @cached_property
    def settings(self) -> ChannelSettings:
        return self.crm.settings_for(SETTINGS_SECTION)  # type: ignore[no-any-return]

    @cached_property
    def vetoes(self) -> VetoChain:
        return VetoChain(self.crm, self.settings)

    @cached_property
    def jobs(self) -> SendJobs:
        return SendJobs(self)

    def channel(self, name: str, field: str = "channel") -> Channel:
        if name not in self.channels:
            known = ", ".join(sorted(self.channels)) or "none installed"
            raise _issue(field, "unknown_channel", f"no channel named {name!r} (known: {known})")
        return self.channels[name]

    # --- templates ----------------------------------------------------------------------

    def save_template(self, name: str, body: str, *, subject: str | None = None, channel: str | None = None,
                      actor: str | None = None) -> dict[str, Any]:
        """Create or replace a template after checking it (syntax, variables, sandbox)."""
        issues = []
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            issues.append(FieldIssue("name", "invalid", "a template name is 1 to 100 characters"))
        if not isinstance(body, str) or not body.strip():
            issues.append(FieldIssue("body", "required", "a template needs a body"))
        if channel is not None and channel not in self.channels:
            issues.append(FieldIssue("channel", "unknown_channel", f"no channel named {channel!r}"))
        if issues:
            raise ValidationFailed(issues)
        with self.crm.read() as uow:
            custom = uow.custom_fields.list([], limit=None)
        checked = templates.check({"body": body, "subject": subject}, custom)
        t, now = self.table("message_templates"), utcnow()
        with self.crm.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            existing = conn.execute(sa.select(t).where(t.c.name == name)).first()
            values = {"channel": channel, "subject": subject, "body": body, "uses": list(checked.uses), "updated_at": now}
            if existing is None:
                conn.execute(sa.insert(t).values(id=new_id(), name=name, created_at=now, version=1, **values))
            else:
                conn.execute(sa.update(t).where(t.c.id == existing.id).values(version=existing.version + 1, **values))
        return self.template(name)

    def template(self, name: str) -> dict[str, Any]:
        t = self.table("message_templates")
        with self.crm.read() as uow:
            row = uow.connection.execute(sa.select(t).where(t.c.name == name)).first()  # type: ignore[union-attr]
        if row is None:
            raise NotFound("template", name)
        return dict(row._mapping)

    def templates(self) -> list[dict[str, Any]]:
        t = self.table("message_templates")
        with self.crm.read() as uow:
            return [dict(r._mapping) for r in uow.connection.execute(sa.select(t).order_by(t.c.name))]  # type: ignore[union-attr]

    # --- sending ------------------------------------------------------------------------

    def send(self, contact_id: str, channel: str, *, template: str | None = None, body: str | None = None,
             subject: str | None = None, purpose: str, idempotency_key: str | None = None, deal_id: str | None = None,
             campaign_id: str | None = None, actor: str | None = None, now: datetime | None = None) -> dict[str, Any]:
        """Queue a message (or record its veto) and, in the embedded default, send it now.

        :param template: the name of a saved template, or
        :param body: a body given directly (rendered as a template too, so it is checked the
            same way).
        :param purpose: what the message is for (``marketing``, ``newsletter``,
            ``transactional`` …): consent is checked per channel and purpose.
        :param idempotency_key: a second send with the same key returns the first message and
            sends nothing. Without a key every call is a new message.
        :return: the message as stored (``status``: ``queued``, ``sent``, ``vetoed``,
            ``retrying`` or ``dead``).
        """
        at = now or utcnow()
        key = idempotency_key or f"auto:{new_id()}"
        existing = self._by_key(key)
        if existing is not None:
            return existing
        issues: list[FieldIssue] = []
        if (template is None) == (body is None):
            issues.append(FieldIssue("template", "template_or_body", "give either a template name or a body"))
        if not isinstance(purpose, str) or not purpose.strip() or len(purpose) > 64:
            issues.append(FieldIssue("purpose", "required", "say what the message is for (e.g. marketing, transactional)"))
        if len(key) > 255:
            issues.append(FieldIssue("idempotency_key", "too_long", "at most 255 characters"))
        if channel not in self.channels:
            known = ", ".join(sorted(self.channels)) or "none installed"
            issues.append(FieldIssue("channel", "unknown_channel", f"no channel named {channel!r} (known: {known})"))
        if issues:
            raise ValidationFailed(issues)
        provider = self.channels[channel]
        row = self._compose(provider, contact_id, template, body, subject, purpose, key, deal_id, campaign_id, at)
        try:
            self._queue(row, contact_id, actor, at)
        except sa.exc.IntegrityError:
            found = self._by_key(key)  # the same key was queued concurrently: that message is the answer
            if found is None:
                raise
            return found
        if row["status"] == "queued" and self.crm.dispatch_inline and row["next_attempt_at"] is None:
            self.jobs.deliver([row["id"]], at)
        return self.get(row["id"])

    def _queue(self, row: dict[str, Any], contact_id: str, actor: str | None, at: datetime) -> None:
        """Insert the message, queued or vetoed, with its activity and event."""
        with self.crm.uow(actor) as uow:
            conn = uow.connection
            assert conn is not None
            contact = uow.contacts.get(contact_id)
            verdict = self.vetoes.check(conn, self.outbound(_Row(row), attempt=1), contact, at)
            if verdict is not None and verdict.kind == "veto":
                row.update(status="vetoed", veto_reason=verdict.reason)
            elif verdict is not None:
                row["next_attempt_at"] = verdict.until
            conn.execute(sa.insert(self.table("messages")).values(**row))
            if row["status"] == "vetoed":
                self.log_activity(uow, _Row(row), "vetoed", f"{row['id']}:vetoed", {"reason": row["veto_reason"]})
                uow.emit("message.vetoed", row["id"], self.event_data(_Row(row), reason=row["veto_reason"]))
            else:
                uow.emit("message.queued", row["id"], self.event_data(_Row(row)))

    def _compose(self, channel: Channel, contact_id: str, template: str | None, body: str | None, subject: str | None,
                 purpose: str, key: str, deal_id: str | None, campaign_id: str | None, now: datetime) -> dict[str, Any]:
        """Validate the references, render, and check the result fits the channel."""
        with self.crm.read() as uow:
            contact = uow.contacts.find(contact_id)
            if contact is None:
                raise _issue("contact_id", "not_found", f"no contact {contact_id!r}")
            deal = uow.deals.find(deal_id) if deal_id else None
            campaign = uow.campaigns.find(campaign_id) if campaign_id else None
            custom = uow.custom_fields.list([], limit=None)
        issues = []
        if deal_id and deal is None:
            issues.append(FieldIssue("deal_id", "not_found", f"no deal {deal_id!r}"))
        if campaign_id and campaign is None:
            issues.append(FieldIssue("campaign_id", "not_found", f"no campaign {campaign_id!r}"))
        address = channel.address_for(contact)
        if not address:
            issues.append(FieldIssue("contact_id", "no_address", f"contact {contact_id} has no {channel.name} address"))
        if issues:
            raise ValidationFailed(issues)
        if template is not None:
            saved = self.template(template)
            if saved["channel"] not in (None, channel.name):
                raise _issue("template", "wrong_channel", f"template {template!r} is for {saved['channel']}, not {channel.name}")
            sources = {"body": saved["body"], "subject": saved["subject"]}
            uses = set(saved["uses"])
        else:
            if not channel.capabilities.templates:
                sources, uses = {"body": body, "subject": subject}, set()
            else:
                checked = templates.check({"body": body, "subject": subject}, custom)
                sources, uses = {"body": body, "subject": subject}, set(checked.uses)
        context = {"contact": templates.entity_context(contact), "deal": templates.entity_context(deal), "campaign": templates.entity_context(campaign)}
        missing = sorted(name for name in uses if context.get(name) is None)
        if missing:
            raise ValidationFailed([FieldIssue(f"{name}_id", "required", f"the message uses {{{{ {name} }}}}: give {name}_id") for name in missing])
        html = channel.capabilities.html and templates.looks_like_html(sources["body"] or "")
        if channel.capabilities.templates:
            rendered = {field: templates.render(src, context, field, html=html and field == "body") if src is not None else None
                        for field, src in sources.items()}
        else:
            rendered = dict(sources)
        limit = channel.capabilities.max_length
        if limit is not None and len(rendered["body"] or "") > limit:
            raise _issue("body", "too_long", f"the rendered message is {len(rendered['body'] or '')} characters; {channel.name} allows {limit}")
        return {
            "id": new_id(), "idempotency_key": key, "channel": channel.name, "contact_id": contact_id, "deal_id": deal_id,
            "campaign_id": campaign_id, "template": template, "purpose": purpose, "address": address,
            "subject": rendered["subject"] if channel.capabilities.subject else None, "body": rendered["body"],
            "html": html, "status": "queued", "attempts": 0, "ambiguous": 0, "next_attempt_at": None, "last_error": None, "veto_reason": None,
            "provider_message_id": None, "created_at": now, "updated_at": now, "sent_at": None,
        }

    def outbound(self, row: Any, attempt: int) -> OutboundMessage:
        return OutboundMessage(id=row.id, channel=row.channel, contact_id=row.contact_id, to=row.address, body=row.body,
                               subject=row.subject, purpose=row.purpose, idempotency_key=row.idempotency_key, attempt=attempt,
                               html=row.html)

    def drain(self, limit: int | None = None, now: datetime | None = None) -> SendReport:
        """Send every due message (``crmkit messages drain``; safe to run in many processes)."""
        return self.jobs.drain(limit=limit, now=now)

    # --- reading ------------------------------------------------------------------------

    def _by_key(self, key: str) -> dict[str, Any] | None:
        m = self.table("messages")
        with self.crm.read() as uow:
            row = uow.connection.execute(sa.select(m).where(m.c.idempotency_key == key)).first()  # type: ignore[union-attr]
        return None if row is None else dict(row._mapping)

    def get(self, message_id: str) -> dict[str, Any]:
        m = self.table("messages")
        with self.crm.read() as uow:
            row = uow.connection.execute(sa.select(m).where(m.c.id == message_id)).first()  # type: ignore[union-attr]
        if row is None:
            raise NotFound("message", message_id)
        return dict(row._mapping)

    def list(self, *, contact_id: str | None = None, status: str | None = None, channel: str | None = None,
             ambiguous: bool | None = None, limit: int | None = 100) -> list[dict[str, Any]]:
        """Messages, newest first. ``ambiguous=True``: only those handed over at least once
        without an answer (their recipient may hold a second copy); False: only the others."""
        m = self.table("messages")
        stmt = sa.select(m).order_by(m.c.created_at.desc(), m.c.id.desc()).limit(limit)
        for column, value in (("contact_id", contact_id), ("status", status), ("channel", channel)):
            if value is not None:
                stmt = stmt.where(m.c[column] == value)
        if ambiguous is not None:
            stmt = stmt.where(m.c.ambiguous > 0 if ambiguous else m.c.ambiguous == 0)
        with self.crm.read() as uow:
            return [dict(r._mapping) for r in uow.connection.execute(stmt)]  # type: ignore[union-attr]

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Messages that failed permanently or ran out of retries, newest first."""
        return self.list(status="dead", limit=limit)

    def requeue(self, message_id: str, *, actor: str | None = None) -> dict[str, Any]:
        """Give a dead letter another full set of attempts (after fixing its cause)."""
        m = self.table("messages")
        with self.crm.uow(actor) as uow:
            done = uow.connection.execute(  # type: ignore[union-attr]
                sa.update(m).where(m.c.id == message_id, m.c.status == "dead").values(status="queued", attempts=0, next_attempt_at=None, updated_at=utcnow())
            ).rowcount
        if not done:
            raise _issue("id", "not_dead", f"message {message_id} is not a dead letter") if self.get(message_id) else NotFound("message", message_id)
        return self.get(message_id)

    # --- suppressions and receipts ------------------------------------------------------

    def suppress(self, channel: str, address: str, reason: str, *, contact_id: str | None = None,
                 detail: Mapping[str, Any] | None = None, actor: str | None = None) -> None:
        """Put an address on the channel's suppression list (idempotent per reason)."""
        self.channel(channel)
        if reason not in SUPPRESSION_REASONS:
            raise _issue("reason", "invalid", f"{reason!r} is not one of {', '.join(SUPPRESSION_REASONS)}")
        if not isinstance(address, str) or not address.strip():
            raise _issue("address", "required", "give the address to suppress")
        with self.crm.uow(actor) as uow:
            self.suppress_in(uow, channel, address, reason, contact_id=contact_id, detail=detail)

    def suppress_in(self, uow: UnitOfWork, channel: str, address: str, reason: str, *, contact_id: str | None = None,
                    detail: Mapping[str, Any] | None = None) -> None:
        s = self.table("message_suppressions")
        conn = uow.connection
        assert conn is not None
        if conn.execute(sa.select(s.c.id).where(s.c.channel == channel, s.c.address == address, s.c.reason == reason)).first() is None:
            conn.execute(sa.insert(s).values(id=new_id(), channel=channel, address=address, reason=reason, contact_id=contact_id,
                                             detail=dict(detail or {}), created_at=utcnow()))

    def unsuppress(self, channel: str, address: str, reason: str | None = None, *, actor: str | None = None) -> int:
        """Remove suppression entries (all reasons, or one); returns how many."""
        s = self.table("message_suppressions")
        with self.crm.uow(actor) as uow:
            stmt = sa.delete(s).where(s.c.channel == channel, s.c.address == address)
            return int(uow.connection.execute(stmt.where(s.c.reason == reason) if reason else stmt).rowcount)  # type: ignore[union-attr]

    def suppressions(self, channel: str | None = None) -> list[dict[str, Any]]:
        s = self.table("message_suppressions")
        stmt = sa.select(s).order_by(s.c.created_at, s.c.id)
        with self.crm.read() as uow:
            return [dict(r._mapping) for r in uow.connection.execute(stmt.where(s.c.channel == channel) if channel else stmt)]  # type: ignore[union-attr]

    def handle_callback(self, channel: str, payload: Mapping[str, Any]) -> int:
        """Parse a provider's status callback with its channel and record every receipt."""
        receipts = self.channel(channel).parse_callback(payload)
        return sum(1 for receipt in receipts if self.record_receipt(channel, receipt))

    def record_receipt(self, channel: str, receipt: DeliveryReceipt) -> bool:
        """Record a delivery receipt as an activity (once per provider id and status), update
        the message, and suppress the address on a hard bounce, complaint or unsubscribe.
        Returns False for a receipt about a message crmkit did not send."""
        m = self.table("messages")
        with self.crm.uow() as uow:
            conn = uow.connection
            assert conn is not None
            row = conn.execute(sa.select(m).where(m.c.channel == channel, m.c.provider_message_id == receipt.provider_message_id)).first()
            if row is None:
                return False
            payload = {"provider_message_id": receipt.provider_message_id, **dict(receipt.detail)}
            activity = self.log_activity(uow, row, receipt.status.value, f"{receipt.provider_message_id}:{receipt.status.value}", payload,
                                         occurred_at=receipt.occurred_at)
            if activity is None:
                return True  # already recorded: a provider retrying its callback
            if receipt.status in STATUS_RECEIPTS:
                conn.execute(sa.update(m).where(m.c.id == row.id).values(status=receipt.status.value, updated_at=utcnow()))
            if receipt.status in SUPPRESSING_RECEIPTS:
                self.suppress_in(uow, channel, row.address, SUPPRESSING_RECEIPTS[receipt.status], contact_id=row.contact_id, detail=payload)
            uow.emit("message.receipt", row.id, self.event_data(row, receipt=receipt.status.value))
        return True

    # --- activities and events ----------------------------------------------------------

    def log_activity(self, uow: UnitOfWork, row: Any, what: str, external_id: str, payload: Mapping[str, Any],
                     occurred_at: datetime | None = None) -> domain.Activity | None:
        """Log ``<channel>.<what>`` on the contact, idempotently per (channel, external id);
        None when it was already logged."""
        activities = uow.activities
        if activities.first(activities.where(channel=row.channel, external_id=external_id)) is not None:
            return None
        return self.crm.activities.log_in(uow, {
            "kind": f"{row.channel}.{what}", "contact_id": row.contact_id, "deal_id": row.deal_id, "channel": row.channel,
            "direction": Direction.OUTBOUND.value, "subject": (row.subject or row.body or "")[:500] or None, "external_id": external_id,
            "occurred_at": occurred_at or utcnow(),
            "payload": {"message_id": row.id, "purpose": row.purpose, "template": row.template, **payload},
        })

    def event_data(self, row: Any, **extra: Any) -> dict[str, Any]:
        # No body or address: the outbox is read by every subscriber, the message table is not.
        return {"channel": row.channel, "contact_id": row.contact_id, "purpose": row.purpose, **extra}


class _Row:
    """Attribute access over a dict, so a message not yet inserted reads like a row."""

    def __init__(self, values: Mapping[str, Any]):
        self.__dict__.update(values)
