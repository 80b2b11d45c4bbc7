"""Bounces and complaints: real-format DSN (Postfix, Exim, delivered/delayed) and ARF samples,
parsed into receipts, and end to end — a message sent to the SMTP sink, then its bounce fed to
``crmkit email receive`` — suppressing the address."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from crmkit.channels.protocol import ReceiptStatus
from crmkit.cli import build_cli
from crmkit_email.bounces import receipts_from

SAMPLES = Path(__file__).with_name("samples")
MID = "<0f8e1a2b3c4d5e6f7a8b9c0d1e2f3a4b@shop.example>"


def sample(name: str, message_id: str = MID) -> bytes:
    return (SAMPLES / name).read_bytes().replace(b"{message_id}", message_id.encode()).replace(b"\n", b"\r\n")


def test_postfix_user_unknown_is_a_hard_bounce():
    [receipt] = receipts_from(sample("postfix_hard_bounce.eml"))
    assert receipt.provider_message_id == MID and receipt.status is ReceiptStatus.HARD_BOUNCE
    assert receipt.detail["recipient"] == "nobody@example.org" and receipt.detail["status"] == "5.1.1"
    assert receipt.detail["diagnostic"].startswith("550 5.1.1 <nobody@example.org>: Recipient address rejected")
    assert receipt.detail["reporting_mta"] == "mx.shop.example"
    assert receipt.occurred_at == datetime(2026, 3, 2, 12, 0, 1, tzinfo=UTC)  # no Last-Attempt-Date: the Arrival-Date


def test_exim_mailbox_full_is_a_soft_bounce_found_through_the_returned_message():
    [receipt] = receipts_from(sample("exim_mailbox_full.eml"))
    assert receipt.status is ReceiptStatus.SOFT_BOUNCE and receipt.detail["status"] == "5.2.2"
    assert receipt.provider_message_id == MID and receipt.detail["recipient"] == "full@example.net"


def test_delivered_gives_a_receipt_and_delayed_none():
    [receipt] = receipts_from(sample("delivered_and_delayed.eml"))
    assert receipt.status is ReceiptStatus.DELIVERED and receipt.detail["recipient"] == "ada@example.org"
    assert receipt.occurred_at == datetime(2026, 3, 2, 12, 59, 59, tzinfo=UTC)


def test_an_arf_abuse_report_is_a_complaint_and_not_spam_is_nothing():
    [receipt] = receipts_from(sample("arf_abuse.eml"))
    assert receipt.status is ReceiptStatus.COMPLAINT and receipt.provider_message_id == MID
    assert receipt.detail == {"feedback_type": "abuse", "user_agent": "SomeGenerator/1.0", "recipient": "<ada@example.org>",
                              "source_ip": "192.0.2.5"}
    assert receipts_from(sample("arf_not_spam.eml")) == []


def test_ordinary_mail_and_reports_without_a_message_id_give_nothing():
    assert receipts_from(b"From: ada@example.org\r\nSubject: hi\r\n\r\nhello\r\n") == []
    headless = sample("postfix_hard_bounce.eml").replace(b"Message-ID: " + MID.encode() + b"\r\n", b"")
    assert receipts_from(headless) == []


def test_a_bare_message_id_is_normalised():
    [receipt] = receipts_from(sample("postfix_hard_bounce.eml", MID.strip("<>")))
    assert receipt.provider_message_id == MID


def receive(crm, raw: bytes) -> dict:
    result = CliRunner().invoke(build_cli(), ["--config", str(crm.config.path), "email", "receive", "--json"], input=raw)
    assert result.exit_code == 0, result.output
    import json

    return json.loads(result.stdout)


@pytest.mark.parametrize(("name", "reason", "status"), [
    ("postfix_hard_bounce.eml", "hard_bounce", "hard_bounce"),
    ("arf_abuse.eml", "complaint", "complaint"),
])
def test_a_bounce_or_complaint_suppresses_the_address_end_to_end(email_crm, sink, subscribe, name, reason, status):
    crm = email_crm()
    ada = subscribe(crm, email="ada@example.org")
    sent = crm.messages.send(ada.id, "email", body="Spring sale", purpose="marketing")
    message_id = sink.deliveries[0].message_id
    assert message_id == sent["provider_message_id"]

    outcome = receive(crm, sample(name, message_id))
    assert outcome["outcome"] == "receipts" and outcome["receipts"] == 1
    assert crm.messages.get(sent["id"])["status"] == status
    assert [(s["address"], s["reason"]) for s in crm.messages.suppressions("email")] == [("ada@example.org", reason)]
    assert f"email.{status}" in [a.kind for a in crm.activities.for_contact(ada.id)]
    # A provider sending the same report again changes nothing.
    assert receive(crm, sample(name, message_id))["receipts"] == 1
    assert len(crm.messages.suppressions("email")) == 1
    # And nothing reaches the address any more, transactional mail included.
    again = crm.messages.send(ada.id, "email", body="Another sale", purpose="marketing")
    receipt = crm.messages.send(ada.id, "email", body="Your receipt", purpose="transactional")
    assert again["status"] == receipt["status"] == "vetoed" and reason in again["veto_reason"]
    assert len(sink.deliveries) == 1


def test_a_soft_bounce_marks_the_message_but_keeps_the_address(email_crm, sink, subscribe):
    crm = email_crm()
    full = subscribe(crm, email="full@example.net")
    sent = crm.messages.send(full.id, "email", body="Spring sale", purpose="marketing")
    assert receive(crm, sample("exim_mailbox_full.eml", sent["provider_message_id"]))["receipts"] == 1
    assert crm.messages.get(sent["id"])["status"] == "soft_bounce" and crm.messages.suppressions("email") == []


def test_a_report_about_a_message_not_sent_from_here_is_ignored(email_crm):
    crm = email_crm()
    outcome = receive(crm, sample("postfix_hard_bounce.eml"))
    assert outcome == {"outcome": "receipts", "receipts": 0, "contact_id": None, "activity_id": None,
                       "detail": "a report about no message sent from here"}
    assert crm.messages.suppressions() == []
