"""Building the RFC 5322 message for an :class:`~crmkit.channels.OutboundMessage`.

The Message-ID is derived from the crmkit message id, so every attempt at one message — a retry,
or a resend by another worker after a crash — carries the same Message-ID and a receiver can
collapse copies. It is also the provider message id crmkit stores, which is what bounces and
complaints quote back.
"""

from __future__ import annotations

import hashlib
import re
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate
from html.parser import HTMLParser

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_HTML = re.compile(r"<\s*(html|body|p|div|br|table|a|span|h[1-6]|ul|ol|strong|em|b|i|img)\b", re.IGNORECASE)


def message_id_for(message_id: str, domain: str) -> str:
    """The Message-ID header of a crmkit message: the same for every attempt."""
    return f"<{message_id}@{domain}>"


def looks_like_html(body: str) -> bool:
    return bool(_HTML.search(body))


def build(*, message_id: str, from_address: str, to: str, subject: str | None, text: str | None = None,
          html: str | None = None, from_name: str = "", reply_to: str = "",
          list_unsubscribe: list[str] | None = None, one_click: bool = False) -> Message:
    """A text message, or multipart/alternative text + HTML (the text part derived from the
    HTML when only HTML is given).

    :param message_id: the full Message-ID header value (``<id@domain>``).
    :param list_unsubscribe: URIs for ``List-Unsubscribe`` (``mailto:…``, ``https://…``).
    :param one_click: add ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058;
        only meaningful with an https URI in ``list_unsubscribe``).

    Built with the ``compat32`` MIME classes: the modern ``EmailMessage`` parses every header
    it is given into objects, which costs several times the whole SMTP exchange on a local
    relay; these headers are built here and need no parsing.
    """
    if text is None and html is None:
        raise ValueError("a message needs a text or an HTML body")
    plain = _text_part(text if text is not None else html_to_text(html or ""), "plain")
    if html is None:
        msg: Message = plain
    else:
        # A boundary derived from the Message-ID (not random): a resend is then the same bytes
        # as the first attempt but for the Date. "=_" cannot occur in quoted-printable text.
        msg = MIMEMultipart("alternative", boundary=f"=_crmkit_{hashlib.sha256(message_id.encode()).hexdigest()[:32]}")
        msg.attach(plain)
        msg.attach(_text_part(html, "html"))
    msg["From"] = formataddr((from_name, from_address), charset="utf-8") if from_name else from_address
    msg["To"] = to
    msg["Subject"] = _header(subject or "")
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    if reply_to:
        msg["Reply-To"] = reply_to
    if list_unsubscribe:
        msg["List-Unsubscribe"] = ", ".join(f"<{uri}>" for uri in list_unsubscribe)
        if one_click:
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return msg


def _header(value: str) -> str | Header:
    return value if value.isascii() else Header(value, "utf-8")


def _text_part(body: str, subtype: str) -> MIMEText:
    if body.isascii():
        return MIMEText(body, subtype, "us-ascii")
    return MIMEText(body, subtype, _UTF8_QP)  # quoted-printable: readable in the raw message


class _TextExtractor(HTMLParser):
    """HTML to readable plain text: blocks become lines, links keep their target, scripts and
    styles vanish. (Written against the standard library: html2text is GPL, and inscriptis
    would pull lxml and requests in for the text part of an e-mail.)"""

    BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "hr", "section", "article"}
    SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag == "a":
            self.href = dict(attrs).get("href")
            self.link_text = []
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS and tag != "li":  # the next item's start breaks the line
            self.parts.append("\n")
        elif tag == "a":
            label = "".join(self.link_text).strip()
            if self.href and not self.href.startswith(("#", "mailto:")) and self.href != label:
                self.parts.append(f" ({self.href})")
            self.href = None

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.href is not None:
            self.link_text.append(data)
        self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
