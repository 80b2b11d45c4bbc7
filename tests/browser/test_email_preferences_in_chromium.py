"""The e-mail preference page as a reader uses it: a marketing e-mail is sent to a real SMTP
sink, its footer link is opened in headless Chromium against ``crmkit serve`` (uvicorn on a
free port), a purpose is unticked, the form submitted — and the consent ledger holds the change
with source ``preference_page``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import tomli_w

crmkit = pytest.importorskip("crmkit")
from crmkit_email.testing import SmtpSink, free_port  # noqa: E402

PUBLIC = "https://crm.shop.example"


@pytest.fixture
def served(tmp_path: Path):
    """A CRM with a subscriber who got one marketing e-mail, and ``crmkit serve`` on it."""
    with SmtpSink() as sink:
        config = tmp_path / "crmkit.toml"
        config.write_text(tomli_w.dumps({
            "crmkit": {"database": f"sqlite:///{tmp_path / 'crm.db'}"},
            "plugins": {"email": {
                "host": sink.host, "port": sink.port, "security": "none", "from_address": "news@shop.example",
                "public_url": PUBLIC, "unsubscribe_secret": "browser-test-secret-0123456789",
                "preference_purposes": ["marketing=News and offers", "events=Invitations to events"],
            }},
        }))
        crm = crmkit.open(str(config), migrate=True)
        try:
            ada = crm.contacts.create({"first_name": "Ada", "email": "ada@example.org"})
            for purpose in ("marketing", "events"):
                crm.consents.record({"contact_id": ada.id, "channel": "email", "purpose": purpose, "status": "granted"})
            crm.messages.send(ada.id, "email", body="<p>Spring sale</p>", purpose="marketing")
            html = sink.deliveries[0].message.get_body(preferencelist=("html",)).get_content()
            [link] = re.findall(rf'href="({re.escape(PUBLIC)}/email/preferences/[^"]+)"', html)
            port = free_port()
            server = subprocess.Popen([sys.executable, "-m", "crmkit", "--config", str(config), "serve", "--port", str(port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
            base = f"http://127.0.0.1:{port}"
            url = base + link.removeprefix(PUBLIC)
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(url, timeout=2).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"crmkit serve did not come up: {server.stderr.read().decode() if server.stderr else ''}")
                    time.sleep(0.2)
                yield crm, ada, url
            finally:
                server.terminate()
                server.wait(timeout=30)
                if server.stderr:
                    server.stderr.close()
        finally:
            crm.close()


def test_a_reader_unticks_a_purpose_in_chromium(chromium, served, tmp_path):
    crm, ada, url = served
    context = chromium.new_context(java_script_enabled=False)  # the page needs no script
    try:
        page = context.new_page()
        page.goto(url, wait_until="load")
        assert page.title() == "E-mail preferences"
        news = page.get_by_label("News and offers")
        events = page.get_by_label("Invitations to events")
        assert news.is_checked() and events.is_checked()

        news.uncheck()
        page.get_by_role("button", name="Save preferences").click()
        page.wait_for_load_state("load")

        assert page.locator("#confirmation").inner_text() == "Your preferences were saved."
        assert not page.get_by_label("News and offers").is_checked() and page.get_by_label("Invitations to events").is_checked()
        assert context.cookies() == []  # nothing to ride on: the page sets no cookie
        page.screenshot(path=str(tmp_path / "preferences.png"))
    finally:
        context.close()

    latest = {c.purpose: (c.status.value, c.source) for c in crm.consents.history(ada.id)}
    assert latest == {"marketing": ("withdrawn", "preference_page"), "events": ("granted", None)}
    assert crm.messages.send(ada.id, "email", body="Sale", purpose="marketing")["status"] == "vetoed"
