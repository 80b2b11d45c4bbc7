"""The e-mail preference page: a recipient sees their subscriptions per purpose and changes
them, without an account or a cookie.

``<public_url>/email/preferences/<token>`` is linked from the footer of every
non-transactional message. The token is ``<contact id>.<signature>`` (HMAC under
``unsubscribe_secret``, its own prefix): it is the credential, like the unsubscribe link's.

A purpose is shown as subscribed when the consent ledger's latest e-mail entry for it is
``granted`` and the address is not on the suppression list as ``unsubscribed`` (what a one-click
unsubscribe records). The purposes shown are ``preference_purposes`` and every other e-mail
purpose in the contact's ledger, transactional ones excepted (they are sent under contract).

Saving (POST only; a GET never changes anything, since mail scanners fetch links) records a
ledger entry with source ``preference_page`` for each purpose whose state changes, and — when
any purpose stays ticked — lifts the ``unsubscribed`` suppression, so the page is also the way
back after a one-click unsubscribe. Purposes left unticked are then recorded as withdrawn, so
lifting the suppression resumes exactly what the reader chose. Bounces and complaints stay
suppressed (the page says so). All of it commits in one transaction, with an
``email.preferences_updated`` activity.

Forgery: the page sets no cookie, so there is no session to ride — the URL token is the
credential, and a cross-site form cannot know it. The form also carries a signed, timestamped
form token (valid ``FORM_MAX_AGE``) bound to the contact, so a POST comes from a page rendered
recently, and the responses forbid framing (clickjacking), caching and referrers (the token is
in the URL).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa
from crmkit.domain.values import ConsentStatus
from crmkit.errors import ConfigError, NotFound

from crmkit_email.settings import EmailSettings
from crmkit_email.tracking import sign

if TYPE_CHECKING:
    from crmkit.app import CRM

PREFIX = "/email/preferences/"
SOURCE = "preference_page"
FORM_MAX_AGE = 24 * 3600
#: Suppressions the page cannot lift (the address does not work, or its owner complained).
HARD_REASONS = {"hard_bounce": "e-mail to this address bounced", "complaint": "a message was reported as spam",
                "stop": "the address asked us to stop", "manual": "the address was blocked by our team"}
_CONTACT_ID = 64


def page_url(settings: EmailSettings, contact_id: str) -> str | None:
    """The contact's preference page, or None when links cannot be made (no public_url or
    no secret)."""
    secret = settings.signing_secret("preferences")
    if not settings.public_url or not secret:
        return None
    return f"{settings.public_url.rstrip('/')}{PREFIX}{contact_id}.{sign(secret, 'preferences', contact_id)}"


def footer_html(url: str) -> str:
    from html import escape

    return (f'<p style="font-size:12px;color:#666;margin-top:24px">'
            f'<a href="{escape(url)}" style="color:#666">Manage your e-mail preferences</a></p>')


def footer_text(url: str) -> str:
    return f"\n\n--\nManage your e-mail preferences: {url}\n"


def read_token(settings: EmailSettings, token: str) -> str | None:
    """The contact id a genuine page token names, or None."""
    contact_id, dot, signature = token.strip().rpartition(".")
    secret = settings.signing_secret("preferences")
    if not dot or not secret or not 0 < len(contact_id) <= _CONTACT_ID:
        return None
    return contact_id if hmac.compare_digest(signature, sign(secret, "preferences", contact_id)) else None


def form_token(settings: EmailSettings, contact_id: str, now: float | None = None) -> str:
    issued = str(int(now if now is not None else time.time()))
    return f"{issued}.{sign(settings.signing_secret('preferences'), 'preferences-form', contact_id, issued)}"


def form_token_ok(settings: EmailSettings, contact_id: str, token: str, now: float | None = None) -> bool:
    issued, _, signature = (token or "").partition(".")
    if not issued.isdigit() or not hmac.compare_digest(signature, sign(settings.signing_secret("preferences"), "preferences-form", contact_id, issued)):
        return False
    return 0 <= (now if now is not None else time.time()) - int(issued) <= FORM_MAX_AGE


@attrs.frozen
class Subscription:
    purpose: str
    label: str
    subscribed: bool
    ledger: ConsentStatus | None  # the latest ledger entry (None: never recorded)


@attrs.frozen
class Preferences:
    contact_id: str
    address: str | None
    subscriptions: list[Subscription]
    unsubscribed: bool  # on the suppression list as unsubscribed (one-click, mailto)
    blocked: list[str]  # why nothing can be sent at all (bounces, complaints …)


def _transactional(crm: CRM) -> set[str]:
    try:
        return set(crm.settings_for("channels").transactional_purposes)
    except ConfigError:
        return {"transactional"}


def load(crm: CRM, settings: EmailSettings, contact_id: str) -> Preferences:
    """The contact's subscriptions as the page shows them (NotFound for an unknown contact)."""
    contact = crm.contacts.get(contact_id)
    latest: dict[str, ConsentStatus] = {}
    for entry in crm.consents.history(contact_id):  # oldest first: the last one wins
        if entry.channel == "email":
            latest[entry.purpose] = entry.status
    reasons: set[str] = set()
    if contact.email:
        s = crm.messages.table("message_suppressions")
        with crm.read() as uow:
            reasons = set(uow.connection.execute(  # type: ignore[union-attr]
                sa.select(s.c.reason).where(s.c.channel == "email", s.c.address == contact.email)).scalars())
    labels = settings.preference_labels()
    transactional = _transactional(crm)
    names = [*labels, *sorted(p for p in latest if p not in labels)]
    unsubscribed = "unsubscribed" in reasons
    subscriptions = [Subscription(p, labels.get(p, p.replace("_", " ").capitalize()),
                                  latest.get(p) is ConsentStatus.GRANTED and not unsubscribed, latest.get(p))
                     for p in names if p not in transactional]
    return Preferences(contact_id, contact.email, subscriptions, unsubscribed, [HARD_REASONS[r] for r in sorted(reasons) if r in HARD_REASONS])


def apply(crm: CRM, settings: EmailSettings, contact_id: str, shown: Iterable[str], chosen: Iterable[str],
          evidence: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Make the contact subscribed to exactly ``chosen`` among the ``shown`` purposes (those
    the form listed; others are left alone). Returns the (purpose, status) entries recorded."""
    chosen_set = set(chosen)
    current = load(crm, settings, contact_id)
    shown_set = set(shown) & {s.purpose for s in current.subscriptions}
    lift = bool(chosen_set & shown_set) and current.unsubscribed
    recorded: list[tuple[str, str]] = []
    with crm.uow() as uow:
        for sub in current.subscriptions:
            if sub.purpose not in shown_set:
                continue
            want = ConsentStatus.GRANTED if sub.purpose in chosen_set else ConsentStatus.WITHDRAWN
            # A withdrawal is recorded where the ledger grants (a suppression may hide that);
            # "never asked" needs none.
            if sub.ledger is want or (sub.ledger is None and want is ConsentStatus.WITHDRAWN):
                continue
            crm.consents.record_in(uow, {"contact_id": contact_id, "channel": "email", "purpose": sub.purpose, "status": want.value,
                                         "source": SOURCE, "evidence": dict(evidence)})
            recorded.append((sub.purpose, want.value))
        if lift and current.address:
            s = crm.messages.table("message_suppressions")
            uow.connection.execute(sa.delete(s).where(s.c.channel == "email", s.c.address == current.address, s.c.reason == "unsubscribed"))  # type: ignore[union-attr]
        if recorded or lift:
            crm.activities.log_in(uow, {
                "kind": "email.preferences_updated", "contact_id": contact_id, "channel": "email", "direction": "inbound",
                "subject": "E-mail preferences updated",
                "payload": {"changes": [{"purpose": p, "status": st} for p, st in recorded], "unsuppressed": lift, "source": SOURCE},
            })
    return recorded


def contact_for(crm: CRM, settings: EmailSettings, token: str) -> str | None:
    """The contact a genuine token names, if it still exists."""
    contact_id = read_token(settings, token)
    if contact_id is None:
        return None
    try:
        crm.contacts.get(contact_id)
    except NotFound:
        return None
    return contact_id
