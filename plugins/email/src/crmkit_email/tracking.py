"""Open and click tracking, and the footer every marketing e-mail carries.

For a message whose purpose is in ``tracking_purposes`` (none by default), :func:`decorate`
adds a 1×1 pixel (``<public_url>/email/o/<token>.gif``) to the HTML body and points every
http(s) link at ``<public_url>/email/c/<token>``. It is called once, where the channel builds
the MIME message, so every path that sends e-mail gets it.

**No open redirect.** A click token is ``<message id>.<link index>.<signature>`` and carries no
URL: the click route reads the message's stored body, takes the link at that index and checks
the signature, an HMAC over message id, index and the URL's SHA-256. It redirects only to a URL
that was in that message; any other token — forged, tampered, or for a body that has changed —
gets a 404, never a redirect.

**De-bouncing.** Opens and clicks become ``email.opened`` / ``email.clicked`` activities and a
``message.receipt`` event (``receipt`` = ``opened``/``clicked``, for metrics and automations).
Mail clients reload images and scanners follow links, so one message's opens are recorded at
most once per ``tracking_debounce_seconds`` window (clicks once per link per window): the
activity's external id names the window, and the activities table's unique (channel, external
id) makes concurrent hits record once. Pixel hits from image proxies (Gmail's, Apple Mail
Privacy Protection's) and link scanners count like people: treat open rates as an upper bound.
No IP address is stored; the User-Agent is kept on the activity.
"""

from __future__ import annotations

import hashlib
import hmac
import html as htmllib
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from crmkit.domain.values import utcnow
from crmkit.errors import NotFound

from crmkit_email.settings import EmailSettings

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.channels import OutboundMessage

#: 43 bytes: a transparent 1×1 GIF.
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
OPEN_PREFIX, CLICK_PREFIX = "/email/o/", "/email/c/"
_OPEN = re.compile(r"^([A-Za-z0-9_-]{1,64})\.([0-9a-f]{32})\.gif$")
_CLICK = re.compile(r"^([A-Za-z0-9_-]{1,64})\.([0-9]{1,4})\.([0-9a-f]{32})$")
#: The href of an <a> tag, quoted (template output always is).
_LINK = re.compile(r"""<a\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def sign(secret: str, use: str, *parts: str) -> str:
    """HMAC-SHA256 (128 bits, hex) of ``parts`` for ``use``: a token for one use never
    verifies for another."""
    return hmac.new(secret.encode(), ":".join((f"crmkit-email-{use}", *parts)).encode(), hashlib.sha256).hexdigest()[:32]


def links(html: str) -> list[tuple[int, int, str]]:
    """The trackable links of ``html`` in order: (start, end) of the attribute value and the
    URL (entities decoded). Only http(s) links: mailto:, tel: and anchors stay as they are."""
    found = []
    for match in _LINK.finditer(html):
        group = 1 if match.group(1) is not None else 2
        url = htmllib.unescape(match.group(group)).strip()
        if url.lower().startswith(("http://", "https://")):
            found.append((match.start(group), match.end(group), url))
    return found


def _digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def open_url(settings: EmailSettings, message_id: str) -> str:
    token = f"{message_id}.{sign(settings.signing_secret('tracking'), 'open', message_id)}.gif"
    return f"{settings.public_url.rstrip('/')}{OPEN_PREFIX}{token}"


def click_url(settings: EmailSettings, message_id: str, index: int, url: str) -> str:
    signature = sign(settings.signing_secret("tracking"), "click", message_id, str(index), _digest(url))
    return f"{settings.public_url.rstrip('/')}{CLICK_PREFIX}{message_id}.{index}.{signature}"


def instrument(settings: EmailSettings, message_id: str, html: str) -> str:
    """``html`` with its links going through the click route and the pixel before
    ``</body>`` (or at the end)."""
    parts, last = [], 0
    for index, (start, end, url) in enumerate(links(html)):
        parts += [html[last:start], htmllib.escape(click_url(settings, message_id, index, url))]
        last = end
    parts.append(html[last:])
    pixel = f'<img src="{htmllib.escape(open_url(settings, message_id))}" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
    return append_html("".join(parts), pixel)


def append_html(html: str, fragment: str) -> str:
    """``fragment`` just before ``</body>``, or at the end of a body without one."""
    ends = list(_BODY_END.finditer(html))
    if not ends:
        return html + fragment
    at = ends[-1].start()
    return html[:at] + fragment + html[at:]


def decorate(settings: EmailSettings, message: OutboundMessage, text: str | None, html: str | None, *,
             marketing: bool) -> tuple[str | None, str | None]:
    """The bodies of a message as sent: tracked (when its purpose is in
    ``tracking_purposes`` and it has HTML) and, for every non-transactional message, with a
    footer linking to the preference page. Deterministic, so a resend is the same bytes."""
    from crmkit_email.preferences import footer_html, footer_text, page_url

    if not marketing:
        return text, html
    if html is not None and message.purpose in settings.tracking_purposes:
        html = instrument(settings, message.id, html)
    preferences = page_url(settings, message.contact_id)
    if preferences:
        html = append_html(html, footer_html(preferences)) if html is not None else None
        text = text.rstrip("\n") + footer_text(preferences) if text is not None else None
    return text, html


# --- the routes' side ------------------------------------------------------------------


def _message(crm: CRM, message_id: str) -> dict[str, Any] | None:
    try:
        row = crm.messages.get(message_id)
    except NotFound:
        return None
    return row if row["channel"] == "email" and row["status"] != "vetoed" else None


def opened_message(crm: CRM, settings: EmailSettings, name: str) -> dict[str, Any] | None:
    """The message a genuine pixel name (``<id>.<signature>.gif``) names, or None."""
    match = _OPEN.match(name)
    secret = settings.signing_secret("tracking")
    if not match or not secret or not hmac.compare_digest(match.group(2), sign(secret, "open", match.group(1))):
        return None
    return _message(crm, match.group(1))


def clicked_link(crm: CRM, settings: EmailSettings, token: str) -> tuple[dict[str, Any], int, str] | None:
    """(message, link index, URL) for a genuine click token, or None. The URL comes from the
    message's stored body, never from the request."""
    match = _CLICK.match(token)
    secret = settings.signing_secret("tracking")
    if not match or not secret:
        return None
    message_id, index = match.group(1), int(match.group(2))
    row = _message(crm, message_id)
    found = links(row["body"]) if row is not None else []
    if row is None or index >= len(found):
        return None
    url = found[index][2]
    if not hmac.compare_digest(match.group(3), sign(secret, "click", message_id, str(index), _digest(url))):
        return None
    return row, index, url


def record(crm: CRM, settings: EmailSettings, row: dict[str, Any], what: str, *, link: int | None = None,
           url: str | None = None, user_agent: str | None = None, now: datetime | None = None) -> bool:
    """Log an ``email.opened`` / ``email.clicked`` activity and a ``message.receipt`` event,
    once per message (and link) and de-bounce window. False when this window has one."""
    at = now or utcnow()
    window = int(at.timestamp()) // settings.tracking_debounce_seconds
    key = f"{row['provider_message_id'] or row['id']}:{what}{'' if link is None else f':{link}'}:{window}"
    payload: dict[str, Any] = {"user_agent": (user_agent or "")[:300]}
    if link is not None:
        payload.update(link=link, url=url)
    m = crm.messages.table("messages")
    with crm.uow() as uow:
        current = uow.connection.execute(sa.select(m).where(m.c.id == row["id"])).first()  # type: ignore[union-attr]
        if current is None or crm.messages.log_activity(uow, current, what, key, payload, occurred_at=at) is None:
            return False
        extra = {} if link is None else {"link": link}
        uow.emit("message.receipt", current.id, crm.messages.event_data(current, receipt=what, **extra))
    return True
