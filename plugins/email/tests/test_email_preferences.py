"""The preference page through crmkit's HTTP API: the footer link of a marketing e-mail opens
a form of the reader's subscriptions; a POST with the signed form token changes them in the
consent ledger (source preference_page); forged links and stale forms change nothing."""

from __future__ import annotations

import re
import time

import pytest
from crmkit_email import preferences
from crmkit_email.channel import EmailChannel

pytest.importorskip("litestar")
api = pytest.importorskip("crmkit.api")

PURPOSES = ["marketing=News and offers", "events=Invitations to events"]


@pytest.fixture
def reader(email_crm, sink, subscribe):
    crm = email_crm(preference_purposes=PURPOSES)
    ada = subscribe(crm, email="ada@example.org", purpose="marketing")
    for purpose in ("surveys", "transactional"):
        crm.consents.record({"contact_id": ada.id, "channel": "email", "purpose": purpose, "status": "granted"})
    crm.messages.send(ada.id, "email", body="<p>Spring sale</p>", purpose="marketing")
    html = sink.deliveries[0].message.get_body(preferencelist=("html",)).get_content()
    [url] = re.findall(r'href="(https://crm\.shop\.example/email/preferences/[^"]+)"', html)
    return crm, ada, url.removeprefix("https://crm.shop.example")


def form_of(page: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    fields.update({name: "1" for name in re.findall(r'name="(purpose:[^"]+)" value="1" checked', page)})
    return fields


def post(client, path, fields):
    return client.post(path, data=fields)


def ledger(crm, contact_id):
    return [(c.purpose, c.status.value, c.source) for c in crm.consents.history(contact_id)]


def test_the_page_lists_purposes_and_saving_records_the_change(reader):
    from litestar.testing import TestClient

    crm, ada, path = reader
    with TestClient(api.create_app(crm)) as client:
        page = client.get(path)
        assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"] and page.headers["referrer-policy"] == "no-referrer"
        text = page.text
        assert "News and offers" in text and "Invitations to events" in text and "Surveys" in text
        assert "transactional" not in text  # sent under contract: not the reader's to switch off here
        fields = form_of(text)
        assert {k for k in fields if k.startswith("purpose:")} == {"purpose:marketing", "purpose:surveys"}

        del fields["purpose:marketing"]  # untick "News and offers"
        fields["purpose:events"] = "1"  # tick "Invitations to events"
        done = post(client, path, fields)
        assert done.status_code == 200 and "Your preferences were saved." in done.text
        assert set(form_of(done.text)) >= {"purpose:surveys", "purpose:events"} and "purpose:marketing" not in form_of(done.text)

    assert ledger(crm, ada.id)[-2:] == [("marketing", "withdrawn", "preference_page"), ("events", "granted", "preference_page")]
    assert crm.messages.send(ada.id, "email", body="More", purpose="marketing")["status"] == "vetoed"
    [activity] = [a for a in crm.activities.for_contact(ada.id) if a.kind == "email.preferences_updated"]
    assert activity.payload["changes"] == [{"purpose": "marketing", "status": "withdrawn"}, {"purpose": "events", "status": "granted"}]


def test_after_a_one_click_unsubscribe_the_page_is_the_way_back(reader, sink):
    from litestar.testing import TestClient

    crm, ada, path = reader
    crm.messages.suppress("email", "ada@example.org", "unsubscribed", contact_id=ada.id)
    with TestClient(api.create_app(crm)) as client:
        fields = form_of(client.get(path).text)
        assert not any(k.startswith("purpose:") for k in fields)  # shown as unsubscribed from everything
        fields["purpose:surveys"] = "1"
        assert post(client, path, fields).status_code == 200
    assert crm.messages.suppressions("email") == []  # lifted, because something was chosen
    # marketing was granted in the ledger but hidden by the suppression: now explicitly withdrawn
    assert ledger(crm, ada.id)[-1] == ("marketing", "withdrawn", "preference_page")
    assert crm.messages.send(ada.id, "email", body="Survey", purpose="surveys")["status"] == "sent"
    assert crm.messages.send(ada.id, "email", body="Sale", purpose="marketing")["status"] == "vetoed"


def test_forged_links_and_stale_forms_change_nothing(reader):
    from litestar.testing import TestClient

    crm, ada, path = reader
    before = ledger(crm, ada.id)
    settings = EmailChannel.for_crm(crm).settings
    with TestClient(api.create_app(crm)) as client:
        fields = form_of(client.get(path).text)
        forged = path.rsplit(".", 1)[0] + "." + "0" * 32
        assert client.get(forged).status_code == 404 and post(client, forged, fields).status_code == 404
        other = crm.contacts.create({"first_name": "Bob", "email": "bob@example.org"})
        assert client.get(path.replace(ada.id, other.id)).status_code == 404  # a signature is for one contact

        stale = {**fields, "form": preferences.form_token(settings, ada.id, now=time.time() - preferences.FORM_MAX_AGE - 60)}
        answer = post(client, path, {k: v for k, v in stale.items() if k != "purpose:marketing"})
        assert answer.status_code == 400 and "nothing was changed" in answer.text
        without = post(client, path, {k: v for k, v in fields.items() if k not in ("form", "purpose:marketing")})
        assert without.status_code == 400
        bob_form = preferences.form_token(settings, other.id)  # a form token for someone else
        assert post(client, path, {**fields, "form": bob_form}).status_code == 400
        assert client.get(path).status_code == 200  # GETs never change anything
    assert ledger(crm, ada.id) == before


def test_labels_and_names_are_escaped(email_crm, sink):
    from litestar.testing import TestClient

    crm = email_crm(preference_purposes=['promo=<script>alert("x")</script> & more'])
    eve = crm.contacts.create({"first_name": "Eve", "email": "eve@example.org"})
    crm.consents.record({"contact_id": eve.id, "channel": "email", "purpose": 'x"><img src=y>', "status": "granted"})
    url = preferences.page_url(EmailChannel.for_crm(crm).settings, eve.id)
    with TestClient(api.create_app(crm)) as client:
        text = client.get(url.removeprefix("https://crm.shop.example")).text
    assert "<script>" not in text and "&lt;script&gt;" in text and "&amp; more" in text
    assert "<img src=y>" not in text and "&lt;img src=y&gt;" in text
