"""What a campaign will cost before it is sent: the text rendered for each recipient (a name
can turn a one-segment text into two, or into UCS-2), counted in segments, times the price.

Recipients the send would skip are counted apart with the reason: no usable phone number, a
render error, and — when the purpose is given — whatever the veto chain would refuse (no
consent, a STOP, the frequency cap, a plugin's rule), exactly as ``crm.messages.send`` checks it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
from crmkit import domain
from crmkit.channels import OutboundMessage, templates
from crmkit.domain.values import new_id, utcnow
from crmkit.errors import FieldIssue, ValidationFailed

from crmkit_sms.channel import NAME, SmsChannel
from crmkit_sms.segments import Encoding, measure

if TYPE_CHECKING:
    from crmkit.app import CRM

BATCH = 500


@attrs.frozen
class Estimate:
    recipients: int
    segments: int
    price_per_segment: Decimal
    by_encoding: dict[str, dict[str, int]]  # encoding -> {"messages": n, "segments": s}
    skipped: dict[str, int]  # reason -> contacts

    @property
    def cost(self) -> Decimal:
        return self.price_per_segment * self.segments

    def as_dict(self) -> dict[str, Any]:
        return {"recipients": self.recipients, "segments": self.segments, "price_per_segment": str(self.price_per_segment),
                "cost": str(self.cost), "by_encoding": self.by_encoding, "skipped": self.skipped}


def estimate(crm: CRM, contact_ids: Iterable[str] | None, price_per_segment: Decimal | str | float, *,
             body: str | None = None, template: str | None = None, purpose: str | None = None,
             campaign_id: str | None = None, now: datetime | None = None) -> Estimate:
    """Segments and cost of sending ``body`` (or the saved ``template``) to ``contact_ids``
    (None: every contact with a phone number).

    :param purpose: also skip the recipients the veto chain would refuse for this purpose.
    :param campaign_id: the campaign the text may refer to as ``{{ campaign }}``.
    :raises ValidationFailed: naming the field (a bad price, template, body or campaign).
    """
    price = _price(price_per_segment)
    source, campaign = _source(crm, body, template, campaign_id)
    channel = SmsChannel.for_crm(crm)
    context_campaign = templates.entity_context(campaign)
    totals = {e.value: {"messages": 0, "segments": 0} for e in Encoding}
    skipped: Counter[str] = Counter()
    at = now or utcnow()
    for contact in _contacts(crm, contact_ids):
        address = channel.address_for(contact)
        if address is None:
            skipped["no_phone"] += 1
            continue
        try:
            text = templates.render(source, {"contact": templates.entity_context(contact), "deal": None, "campaign": context_campaign})
        except ValidationFailed:
            skipped["render_failed"] += 1
            continue
        if purpose is not None:
            reason = _veto(crm, contact, address, text, purpose, at)
            if reason is not None:
                skipped[reason] += 1
                continue
        counted = measure(text)
        totals[counted.encoding.value]["messages"] += 1
        totals[counted.encoding.value]["segments"] += counted.count
    return Estimate(recipients=sum(t["messages"] for t in totals.values()), segments=sum(t["segments"] for t in totals.values()),
                    price_per_segment=price, by_encoding=totals, skipped=dict(sorted(skipped.items())))


def _price(value: Decimal | str | float) -> Decimal:
    try:
        price = Decimal(str(value).strip())
    except ArithmeticError:
        price = Decimal("NaN")
    if not price.is_finite() or price < 0:
        raise ValidationFailed.single("price_per_segment", "invalid_number", f"{value!r} is not a price (a number, 0 or more)")
    return price


def _source(crm: CRM, body: str | None, template: str | None, campaign_id: str | None) -> tuple[str, domain.Campaign | None]:
    """The template source to render, checked as a send would check it."""
    if (body is None) == (template is None):
        raise ValidationFailed.single("template", "template_or_body", "give either a template name or a body")
    if template is not None:
        saved = crm.messages.template(template)
        if saved["channel"] not in (None, NAME):
            raise ValidationFailed.single("template", "wrong_channel", f"template {template!r} is for {saved['channel']}, not {NAME}")
        source, uses = saved["body"], set(saved["uses"])
    else:
        with crm.read() as uow:
            custom = uow.custom_fields.list([], limit=None)
        source, uses = body, set(templates.check({"body": body}, custom).uses)
    campaign = crm.campaigns.find(campaign_id) if campaign_id else None
    issues = []
    if campaign_id and campaign is None:
        issues.append(FieldIssue("campaign_id", "not_found", f"no campaign {campaign_id!r}"))
    if "deal" in uses:
        issues.append(FieldIssue("body", "per_deal", "the text uses {{ deal }}, which differs per deal: estimate it per deal"))
    if "campaign" in uses and not campaign_id:
        issues.append(FieldIssue("campaign_id", "required", "the text uses {{ campaign }}: give campaign_id"))
    if issues:
        raise ValidationFailed(issues)
    return str(source), campaign


def _contacts(crm: CRM, contact_ids: Iterable[str] | None) -> Iterator[domain.Contact]:
    """The contacts in batches (an id that does not exist is an error naming it)."""
    if contact_ids is None:
        after: tuple[Any, ...] | None = None
        while True:
            with crm.read() as uow:
                page = uow.contacts.list([uow.contacts.table.c.phone.is_not(None)], limit=BATCH, after=after)
            yield from page
            if len(page) < BATCH:
                return
            after = (page[-1].created_at, page[-1].id)
    ids = list(dict.fromkeys(contact_ids))
    for start in range(0, len(ids), BATCH):
        chunk = ids[start:start + BATCH]
        with crm.read() as uow:
            found = {c.id: c for c in uow.contacts.list([uow.contacts.table.c.id.in_(chunk)])}
        missing = [ident for ident in chunk if ident not in found]
        if missing:
            raise ValidationFailed.single("contact_ids", "not_found", f"no contact {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        yield from (found[ident] for ident in chunk)


def _veto(crm: CRM, contact: domain.Contact, address: str, text: str, purpose: str, at: datetime) -> str | None:
    message = OutboundMessage(id=new_id(), channel=NAME, contact_id=contact.id, to=address, body=text, purpose=purpose,
                              idempotency_key=f"estimate:{contact.id}")
    with crm.read() as uow:
        verdict = crm.messages.vetoes.check(uow.connection, message, contact, at)
    if verdict is None or verdict.kind != "veto":
        return None  # quiet hours only delay a message: it is still sent, and billed
    return verdict.reason.split(":")[0]  # "consent", "suppressed", "frequency cap" or the plugin's name


