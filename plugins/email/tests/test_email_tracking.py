"""Open pixel and click redirects through crmkit's HTTP API, on messages sent to a real SMTP
sink: links in a tracked marketing e-mail go through signed /email/c/ tokens that redirect only
to the message's own URLs; opens and clicks become de-bounced activities and receipt events."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from crmkit.domain.values import utcnow
from crmkit_email.channel import EmailChannel
from crmkit_email.tracking import record

pytest.importorskip("litestar")
api = pytest.importorskip("crmkit.api")

HTML = ('<html><body><p>Spring sale for {{ contact.first_name }}: <a href="https://shop.example/sale?a=1&amp;b=2">see it</a>, '
        "<a href='https://shop.example/blue'>the blue one</a>, <a href=\"mailto:help@shop.example\">help</a>, "
        '<a href="#top">top</a>.</p></body></html>')
BASE = "https://crm.shop.example"


@pytest.fixture
def tracked(email_crm, sink, subscribe):
    crm = email_crm(tracking_purposes=["marketing"])
    ada = subscribe(crm, email="ada@example.org")
    message = crm.messages.send(ada.id, "email", body=HTML, subject="Sale", purpose="marketing")
    [delivery] = sink.deliveries
    html = delivery.message.get_body(preferencelist=("html",)).get_content()
    return crm, ada, message, html


def paths(html: str, prefix: str) -> list[str]:
    return [url.removeprefix(BASE) for url in re.findall(rf"""["']({re.escape(BASE + prefix)}[^"']+)["']""", html)]


def test_links_are_rewritten_and_redirect_only_to_the_message_urls(tracked):
    from litestar.testing import TestClient

    crm, ada, message, html = tracked
    clicks = paths(html, "/email/c/")
    assert len(clicks) == 2  # the mailto: and #anchor links stay as they were
    assert 'href="mailto:help@shop.example"' in html and 'href="#top"' in html
    assert "https://shop.example/sale" not in html  # not readable from the message either
    [pixel] = paths(html, "/email/o/")
    assert "/email/preferences/" in html  # the footer (not tracked)

    with TestClient(api.create_app(crm)) as client:
        first = client.get(clicks[0], follow_redirects=False)
        assert first.status_code == 302 and first.headers["location"] == "https://shop.example/sale?a=1&b=2"
        assert client.get(clicks[1], follow_redirects=False).headers["location"] == "https://shop.example/blue"
        assert client.get(clicks[0], follow_redirects=False).status_code == 302  # again: redirected, not re-recorded
        opened = client.get(pixel)
        assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif" and opened.content[:6] == b"GIF89a"
        assert opened.headers["cache-control"].startswith("no-store")

    kinds = sorted(a.kind for a in crm.activities.for_contact(ada.id) if a.kind in ("email.opened", "email.clicked"))
    assert kinds == ["email.clicked", "email.clicked", "email.opened"]
    click = next(a for a in crm.activities.for_contact(ada.id) if a.kind == "email.clicked" and a.payload["link"] == 1)
    assert click.payload["url"] == "https://shop.example/blue" and click.payload["message_id"] == message["id"]


def test_tampered_tokens_never_redirect(tracked):
    from litestar.testing import TestClient

    crm, ada, message, html = tracked
    click = paths(html, "/email/c/")[0]
    mid, index, signature = click.removeprefix("/email/c/").split(".")
    other = crm.messages.send(crm.contacts.create({"first_name": "Eve", "email": "eve@example.org"}).id, "email",
                              body='<p><a href="https://evil.example/phish">x</a></p>', purpose="transactional")
    forged = [
        f"/email/c/{mid}.{index}.{'0' * 32}",  # a made-up signature
        f"/email/c/{mid}.1.{signature}",  # another link's index with this signature
        f"/email/c/{other['id']}.0.{signature}",  # another message's link with this signature
        f"/email/c/{mid}.7.{signature}",  # no such link
        "/email/c/https%3A%2F%2Fevil.example",  # a URL where the token goes
        f"/email/c/{mid}.{index}.{signature}?url=https://evil.example",
    ]
    with TestClient(api.create_app(crm)) as client:
        for path in forged[:-1]:
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 404 and "location" not in response.headers, path
        # Query strings are ignored: the target is always the message's own URL.
        assert client.get(forged[-1], follow_redirects=False).headers["location"] == "https://shop.example/sale?a=1&b=2"
        assert client.get(f"/email/o/{mid}.{'0' * 32}.gif").status_code == 404
    assert [a.kind for a in crm.activities.for_contact(ada.id) if a.kind == "email.clicked"] == ["email.clicked"]


def test_repeated_opens_are_recorded_once_per_window_and_emit_receipt_events(tracked, events):
    crm, ada, message, _ = tracked
    settings = EmailChannel.for_crm(crm).settings
    row = crm.messages.get(message["id"])
    start = utcnow()
    assert record(crm, settings, row, "opened", now=start)
    assert not record(crm, settings, row, "opened", now=start + timedelta(seconds=5))  # a client reloading images
    assert record(crm, settings, row, "opened", now=start + timedelta(seconds=settings.tracking_debounce_seconds + 1))
    opens = [a for a in crm.activities.for_contact(ada.id) if a.kind == "email.opened"]
    assert len(opens) == 2
    receipts = [e.data for e in events.events if e.type == "message.receipt" and e.subject_id == message["id"]]
    assert [r["receipt"] for r in receipts] == ["opened", "opened"] and receipts[0]["contact_id"] == ada.id


def test_untracked_purposes_and_text_mail_are_left_alone(email_crm, sink, subscribe):
    crm = email_crm(tracking_purposes=["marketing"])
    ada = subscribe(crm, email="ada@example.org", purpose="newsletter")
    crm.messages.send(ada.id, "email", body='<p><a href="https://shop.example/">news</a></p>', purpose="newsletter")
    crm.messages.send(ada.id, "email", body="Receipt: https://shop.example/order/1", purpose="transactional")
    newsletter, receipt = (d.message for d in sink.deliveries)
    html = newsletter.get_body(preferencelist=("html",)).get_content()
    assert 'href="https://shop.example/"' in html and "/email/o/" not in html and "/email/preferences/" in html
    text = receipt.get_body(preferencelist=("plain",)).get_content()
    assert "/email/" not in text  # transactional: no tracking, no preference footer


def test_open_and_click_rates_count_each_message_once(email_crm, sink, subscribe, database_url):
    from crmkit.metrics import metrics

    crm = email_crm(database_url=database_url, tracking_purposes=["marketing"])
    campaign = crm.campaigns.create({"name": "Spring"})
    sent = []
    for i in range(4):
        contact = subscribe(crm, email=f"reader{i}@example.org")
        sent.append(crm.messages.send(contact.id, "email", body='<p><a href="https://shop.example/">sale</a></p>', purpose="marketing",
                                      campaign_id=campaign.id))
    crm.messages.send(contact.id, "email", body="Receipt", purpose="transactional")  # untracked: not counted
    settings = EmailChannel.for_crm(crm).settings
    later = utcnow() + timedelta(seconds=settings.tracking_debounce_seconds * 2)
    for row, times in ((sent[0], 3), (sent[1], 1)):
        for n in range(times):  # repeated opens of one message count once
            record(crm, settings, crm.messages.get(row["id"]), "opened", now=later + timedelta(seconds=n * settings.tracking_debounce_seconds))
    record(crm, settings, crm.messages.get(sent[0]["id"]), "clicked", link=0, url="https://shop.example/", now=later)

    opens = metrics(crm).compute("email.open_rate")
    assert (opens.value, opens.sample_size, opens.details) == (0.5, 4, {"opened": 2, "sent": 4})
    assert metrics(crm).compute("email.click_rate").value == 0.25
    [row] = metrics(crm).compute("email.open_rate", by="campaign").breakdown
    assert (row.label, row.value) == ("Spring", 0.5)
