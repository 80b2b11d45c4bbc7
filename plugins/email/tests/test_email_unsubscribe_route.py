"""RFC 8058 one-click unsubscribe through crmkit's HTTP API: the link in List-Unsubscribe works
without an API key, GET only asks, POST unsubscribes, forged tokens get 404."""

from __future__ import annotations

import pytest

pytest.importorskip("litestar")
api = pytest.importorskip("crmkit.api")


@pytest.fixture
def sent(email_crm, sink, subscribe):
    crm = email_crm()
    ada = subscribe(crm, email="ada@example.org")
    message = crm.messages.send(ada.id, "email", body="Spring sale", purpose="marketing")
    header = sink.deliveries[0].message["List-Unsubscribe"]
    url = next(u.strip().strip("<>") for u in header.split(",") if "https://" in u)
    return crm, ada, message, url.removeprefix("https://crm.shop.example")


def test_one_click_post_unsubscribes_without_an_api_key(sent):
    from litestar.testing import TestClient

    crm, ada, message, path = sent
    with TestClient(api.create_app(crm)) as client:
        page = client.get(path)
        assert page.status_code == 200 and '<form method="post">' in page.text
        assert crm.messages.suppressions("email") == []  # a GET (a link scanner) changes nothing

        done = client.post(path, content=b"List-Unsubscribe=One-Click", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200 and "Unsubscribed" in done.text
        assert client.post(path, content=b"List-Unsubscribe=One-Click").status_code == 200  # a repeat is harmless

    assert [(s["address"], s["reason"]) for s in crm.messages.suppressions("email")] == [("ada@example.org", "unsubscribed")]
    [activity] = [a for a in crm.activities.for_contact(ada.id) if a.kind == "email.unsubscribed"]
    assert activity.payload["via"] == "one-click" and activity.payload["message_id"] == message["id"]
    assert crm.messages.send(ada.id, "email", body="More", purpose="marketing")["status"] == "vetoed"


def test_a_forged_or_unknown_token_is_404(sent):
    from litestar.testing import TestClient

    crm, _, message, path = sent
    forged = path.rsplit(".", 1)[0] + "." + "0" * 32
    with TestClient(api.create_app(crm)) as client:
        assert client.get(forged).status_code == 404
        assert client.post(forged).status_code == 404
        assert client.post("/email/unsubscribe/not-a-token").status_code == 404
    assert crm.messages.suppressions("email") == []
