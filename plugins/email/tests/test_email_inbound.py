"""Inbound mail over real TCP: smtplib → the aiosmtpd listener → activities, leads, receipts,
unsubscribes."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from crmkit_email.channel import EmailChannel
from crmkit_email.inbound import listener
from crmkit_email.testing import free_port


@pytest.fixture
def inbound(email_crm):
    crm = email_crm()
    port = free_port()
    server = listener(crm, "127.0.0.1", port)
    server.start()
    yield crm, port, server.handler
    server.stop()


def mail(sender: str, subject: str, body: str, *, to: str = "sales@shop.example", message_id: str | None = "<q-1@mail.example.org>",
         html: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = "Tue, 03 Mar 2026 09:15:00 +0100"
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


def deliver(port: int, msg: EmailMessage | bytes, to: str = "sales@shop.example") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        if isinstance(msg, bytes):
            client.sendmail("bounces@mx.example", [to], msg)
        else:
            client.send_message(msg, to_addrs=[to])


def test_an_unknown_sender_becomes_exactly_one_lead_even_when_delivered_twice(inbound):
    crm, port, handler = inbound
    question = mail('"Grace Hopper" <Grace@Navy.example>', "Pricing for 50 seats?", "Hello, what would 50 seats cost?")
    deliver(port, question)
    deliver(port, question)  # the sending server retried: same Message-ID

    [lead] = crm.contacts.list(limit=None)
    assert (lead.first_name, lead.last_name, lead.email) == ("Grace", "Hopper", "grace@navy.example")
    assert lead.lifecycle_stage.value == "lead"
    [activity] = crm.activities.for_contact(lead.id)
    assert (activity.kind, activity.direction.value, activity.channel) == ("email.received", "inbound", "email")
    assert activity.external_id == "<q-1@mail.example.org>" and activity.subject == "Pricing for 50 seats?"
    assert activity.payload["text"].strip() == "Hello, what would 50 seats cost?"
    assert activity.occurred_at.isoformat() == "2026-03-03T08:15:00+00:00"
    assert [o.kind for o in handler.outcomes] == ["lead", "activity"]


def test_a_known_sender_gets_the_reply_on_their_timeline(inbound):
    crm, port, _ = inbound
    ada = crm.contacts.create({"first_name": "Ada", "email": "ada@example.org"})
    deliver(port, mail("Ada <ada@example.org>", "Re: Spring sale", "", message_id="<r-7@example.org>",
                       html="<p>Is the <b>blue</b> one in stock?</p>"))
    [activity] = crm.activities.for_contact(ada.id)
    assert activity.kind == "email.received" and activity.payload["text"].strip() == "Is the blue one in stock?"
    assert len(crm.contacts.list(limit=None)) == 1


def test_a_message_without_message_id_is_still_logged_once(inbound):
    crm, port, _ = inbound
    raw = mail("ada@example.org", "no id", "hi", message_id=None).as_bytes()
    deliver(port, raw)
    deliver(port, raw)
    [contact] = crm.contacts.list(limit=None)
    [activity] = crm.activities.for_contact(contact.id)
    assert activity.external_id.startswith("sha256:")


def test_a_bounce_delivered_to_the_listener_suppresses_the_address(inbound, sink, subscribe):
    crm, port, handler = inbound
    ada = subscribe(crm, email="ada@example.org")
    sent = crm.messages.send(ada.id, "email", body="Spring sale", purpose="marketing")
    dsn = (Path(__file__).with_name("samples") / "postfix_hard_bounce.eml").read_bytes()
    deliver(port, dsn.replace(b"{message_id}", sent["provider_message_id"].encode()).replace(b"\n", b"\r\n"), to="news@shop.example")
    assert handler.outcomes[-1].kind == "receipts" and handler.outcomes[-1].receipts == 1
    assert [s["reason"] for s in crm.messages.suppressions("email")] == ["hard_bounce"]
    assert len(crm.contacts.list(limit=None)) == 1  # the MAILER-DAEMON did not become a lead


def test_a_mailto_unsubscribe_stops_marketing_but_not_receipts(inbound, sink, subscribe):
    crm, port, handler = inbound
    ada = subscribe(crm, email="ada@example.org")
    sent = crm.messages.send(ada.id, "email", body="Spring sale", purpose="marketing")
    header = sink.deliveries[0].message["List-Unsubscribe"]
    mailto = header.split(",")[0].strip().strip("<>")
    address, _, query = mailto.removeprefix("mailto:").partition("?subject=")
    from urllib.parse import unquote

    deliver(port, mail("ada@example.org", unquote(query), "", to=address, message_id="<u-1@example.org>"), to=address)
    assert handler.outcomes[-1].kind == "unsubscribed"
    assert [(s["address"], s["reason"]) for s in crm.messages.suppressions("email")] == [("ada@example.org", "unsubscribed")]
    assert "email.unsubscribed" in [a.kind for a in crm.activities.for_contact(ada.id)]
    assert crm.messages.send(ada.id, "email", body="More", purpose="marketing")["status"] == "vetoed"
    assert crm.messages.send(ada.id, "email", body="Receipt", purpose="transactional")["status"] == "sent"
    # A forged token unsubscribes nobody.
    forged = f"unsubscribe {sent['id']}.{'0' * 32}"
    deliver(port, mail("eve@example.org", forged, "", to=address, message_id="<u-2@example.org>"), to=address)
    assert handler.outcomes[-1].kind == "ignored" and len(crm.messages.suppressions("email")) == 1


def test_the_listen_command_serves_until_sigterm(email_crm, tmp_path):
    crm = email_crm()
    EmailChannel.for_crm(crm)  # configured: the settings are valid
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "crmkit", "--config", str(crm.config.path), "email", "listen", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                deliver(port, mail("linus@example.org", "Hello", "A question.", message_id="<l-1@example.org>"))
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert f"listener on 127.0.0.1:{port}" in output
    [lead] = crm.contacts.list(limit=None)
    assert lead.email == "linus@example.org" and crm.activities.for_contact(lead.id)[0].kind == "email.received"


def test_automatic_mail_from_strangers_creates_no_lead_but_known_senders_keep_it(inbound):
    crm, port, handler = inbound
    away = mail("Grace <grace@navy.example>", "Out of office", "Back on Monday.", message_id="<ooo-1@navy.example>")
    away["Auto-Submitted"] = "auto-replied"
    deliver(port, away)
    listmail = mail("digest@lists.example", "Weekly digest", "News.", message_id="<d-1@lists.example>")
    listmail["List-Id"] = "<weekly.lists.example>"
    deliver(port, listmail)
    assert [o.kind for o in handler.outcomes] == ["ignored", "ignored"] and crm.contacts.list(limit=None) == []

    ada = crm.contacts.create({"first_name": "Ada", "email": "ada@example.org"})
    ooo = mail("ada@example.org", "Out of office", "Back on Monday.", message_id="<ooo-2@example.org>")
    ooo["Auto-Submitted"] = "auto-replied"
    deliver(port, ooo)
    assert [a.subject for a in crm.activities.for_contact(ada.id)] == ["Out of office"]


def test_an_unknown_sender_is_one_lead_on_every_database_even_when_redelivered(email_crm, database_url):
    """The issue's acceptance test on SQLite, PostgreSQL and MariaDB: the lead and its activity
    are keyed on the sender and the Message-ID in the database, not in the listener's memory —
    a second listener (another process, after a restart) receiving the same message adds nothing."""
    crm = email_crm(database_url)
    question = mail("Ada Lovelace <ada@engine.example>", "A question", "Do you ship abroad?", message_id="<redelivered@engine.example>")
    for _ in range(2):  # the sending server retried after our listener restarted
        port = free_port()
        server = listener(crm, "127.0.0.1", port)
        server.start()
        try:
            deliver(port, question)
        finally:
            server.stop()
    [lead] = crm.contacts.list(limit=None)
    assert lead.email == "ada@engine.example" and lead.lifecycle_stage.value == "lead"
    assert [(a.kind, a.external_id) for a in crm.activities.for_contact(lead.id)] == [("email.received", "<redelivered@engine.example>")]
