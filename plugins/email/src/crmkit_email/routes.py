"""The one-click unsubscribe endpoint (RFC 8058) in crmkit's HTTP API.

``List-Unsubscribe: <https://…/email/unsubscribe/<token>>`` with ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` lets a mailbox provider unsubscribe the reader with one POST. A
GET (the reader following the link) only shows a page with a confirm button: mail scanners and
link previews fetch every URL in a message, and must not unsubscribe anyone. Both are public —
the signed token is the credential — and both answer 404 for a token that is not genuine.

Imported only when ``crmkit.api.create_app`` collects routes, so the web stack stays optional.
"""

import html
from typing import Any

from crmkit.api.auth import PUBLIC
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from crmkit_email.channel import EmailChannel
from crmkit_email.unsubscribe import read_token, unsubscribe_message

PATH = "/email/unsubscribe/{token:str}"
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head><body style="font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">
<h1 style="font-size:1.4rem">{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> Response[str]:
    return Response(PAGE.format(title=html.escape(title), body=body), status_code=status, media_type="text/html")


def _message_id(crm: Any, token: str) -> str | None:
    return read_token(EmailChannel.for_crm(crm).settings.unsubscribe_secret, token)


def unsubscribe_routes() -> list[Any]:
    @get(PATH, opt={PUBLIC: True}, include_in_schema=False, sync_to_thread=True)
    def confirm(token: FromPath[str], crm: NamedDependency[Any]) -> Response[str]:
        if _message_id(crm, token) is None:
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
        form = ('<p>Stop receiving these e-mails?</p><form method="post">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                '<button type="submit">Unsubscribe</button></form>')
        return _page("Unsubscribe", form)

    @post(PATH, opt={PUBLIC: True}, include_in_schema=False, sync_to_thread=True, status_code=200)
    def unsubscribe(token: FromPath[str], crm: NamedDependency[Any]) -> Response[str]:
        message_id = _message_id(crm, token)
        if message_id is None or not unsubscribe_message(crm, message_id, via="one-click"):
            return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
        return _page("Unsubscribed", "<p>You will not receive these e-mails any more.</p>")

    return [confirm, unsubscribe]
