"""crmkit-email's public pages in crmkit's HTTP API: the one-click unsubscribe endpoint (RFC 8058),
the open pixel and click redirects, and the preference page.

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


# --- open and click tracking ---------------------------------------------------------------

NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}


def tracking_routes() -> list[Any]:
    """``GET /email/o/<token>.gif`` (the pixel) and ``GET /email/c/<token>`` (a tracked link):
    public, the signed token is the credential; a token that is not genuine gets 404 — never
    a redirect (see :mod:`crmkit_email.tracking`)."""
    from litestar import Request
    from litestar.response import Redirect

    from crmkit_email import tracking

    @get(tracking.OPEN_PREFIX + "{name:str}", opt={PUBLIC: True}, include_in_schema=False, sync_to_thread=True)
    def opened(name: FromPath[str], request: Request[Any, Any, Any], crm: NamedDependency[Any]) -> Response[bytes]:
        settings = EmailChannel.for_crm(crm).settings
        row = tracking.opened_message(crm, settings, name)
        if row is None:
            return Response(b"", status_code=404, headers=NO_STORE)
        tracking.record(crm, settings, row, "opened", user_agent=request.headers.get("user-agent"))
        return Response(tracking.PIXEL, media_type="image/gif", headers=NO_STORE)

    @get(tracking.CLICK_PREFIX + "{token:str}", opt={PUBLIC: True}, include_in_schema=False, sync_to_thread=True)
    def clicked(token: FromPath[str], request: Request[Any, Any, Any], crm: NamedDependency[Any]) -> Response[Any]:
        settings = EmailChannel.for_crm(crm).settings
        found = tracking.clicked_link(crm, settings, token)
        if found is None:
            return _page("Link not valid", "<p>This link is not valid.</p>", 404)
        row, index, url = found
        tracking.record(crm, settings, row, "clicked", link=index, url=url, user_agent=request.headers.get("user-agent"))
        return Redirect(url, status_code=302, headers=NO_STORE)

    return [opened, clicked]


# --- the preference page -------------------------------------------------------------------

#: No framing (clickjacking), no caching, no referrer (the token is in the URL), no scripts.
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"}


def preference_routes() -> list[Any]:
    """``GET`` and ``POST /email/preferences/<token>`` (see :mod:`crmkit_email.preferences`)."""
    from typing import Annotated

    import jinja2
    from litestar import Request
    from litestar.enums import RequestEncodingType
    from litestar.params import Body

    from crmkit_email import preferences

    env = jinja2.Environment(loader=jinja2.PackageLoader("crmkit_email", "templates"), autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.get_template("preferences.html")

    def render(status: int = 200, **context: Any) -> Response[str]:
        values = {"title": "E-mail preferences", "message": "", "error": "", "prefs": None, "form_token": "", **context}
        return Response(template.render(**values), status_code=status, media_type="text/html", headers=PAGE_HEADERS)

    def not_valid() -> Response[str]:
        return render(404, title="Link not valid", error="This preference link is not valid.")

    path = preferences.PREFIX + "{token:str}"

    @get(path, opt={PUBLIC: True}, include_in_schema=False, sync_to_thread=True)
    def show(token: FromPath[str], crm: NamedDependency[Any]) -> Response[str]:
        settings = EmailChannel.for_crm(crm).settings
        contact_id = preferences.contact_for(crm, settings, token)
        if contact_id is None:
            return not_valid()
        return render(prefs=preferences.load(crm, settings, contact_id), form_token=preferences.form_token(settings, contact_id))

    @post(path, opt={PUBLIC: True}, include_in_schema=False, sync_to_thread=True, status_code=200)
    def save(token: FromPath[str], request: Request[Any, Any, Any], crm: NamedDependency[Any],
             data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]) -> Response[str]:
        settings = EmailChannel.for_crm(crm).settings
        contact_id = preferences.contact_for(crm, settings, token)
        if contact_id is None:
            return not_valid()
        fresh = preferences.form_token(settings, contact_id)
        if not preferences.form_token_ok(settings, contact_id, str(data.get("form", ""))):
            return render(400, prefs=preferences.load(crm, settings, contact_id), form_token=fresh,
                          error="This form was out of date, so nothing was changed. Please choose again and save.")
        shown = [key.removeprefix("shown:") for key in data if key.startswith("shown:")]
        chosen = [key.removeprefix("purpose:") for key in data if key.startswith("purpose:")]
        evidence = {"user_agent": request.headers.get("user-agent", "")[:300], "form": "email preference page"}
        changes = preferences.apply(crm, settings, contact_id, shown, chosen, evidence)
        message = "Your preferences were saved." if changes else "Your preferences were saved (nothing changed)."
        return render(prefs=preferences.load(crm, settings, contact_id), form_token=fresh, message=message)

    return [show, save]
