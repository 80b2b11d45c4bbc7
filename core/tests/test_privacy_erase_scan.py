"""After ``erase``, a scan of every column of every table finds none of the person's e-mail
addresses, phone number (in any format) or names (issue 4, Tests).

One person's data is spread through as many features as there are: the intake and the HTTP API
(with an ``Idempotency-Key``, whose stored response holds the record), a custom field,
activities, a deal moved through stages, tasks (one written by an automation rule), consents
with evidence, a duplicate record merged into it (the merge keeps a snapshot), a segment, a
nurture sequence, audit entries, outbox events, webhook deliveries to a real receiver, e-mail
sent to a real SMTP server and replies received, texts sent through a local Twilio, their
status callbacks, an inbound text and a STOP. Then the person is erased through the API and
the database is reflected (``MetaData.reflect``: the tables as they are, not as the code
thinks they are) and every value of every row is cast to text and searched.

A second person, never erased, is spread the same way: the scan must find them, which proves
the scan can see what it is looking for.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w
from crmkit.api import create_app
from crmkit.api.testing import api_client

email_testing = pytest.importorskip("crmkit_email.testing", reason="the crmkit-email plugin is not installed")
sms_testing = pytest.importorskip("crmkit_sms.testing", reason="the crmkit-sms plugin is not installed")
from crmkit_email.inbound import receive as receive_email  # noqa: E402
from crmkit_sms.inbound import handle_inbound, handle_status  # noqa: E402

ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER = "AC" + "7" * 32, "erase-scan-twilio-token", "+14155550199"
PERSON = {"first": "Zebulon", "last": "Quixotic", "email": "zebulon.quixotic@erase-me.example",
          "other_email": "zq.work@erase-me.example", "phone": "+14155550178", "written_phone": "(415) 555-0178"}
CONTROL = {"first": "Philippa", "last": "Vandermeer", "email": "philippa.vandermeer@keep-me.example",
           "other_email": "pv.work@keep-me.example", "phone": "+14155550166", "written_phone": "415.555.0166"}


class Receiver:
    """A webhook receiver on 127.0.0.1 that accepts everything."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Any, Any, Receiver]]:
    with email_testing.SmtpSink() as smtp, sms_testing.TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as twilio, Receiver() as hooks:
        yield smtp, twilio, hooks


@pytest.fixture
def spread_crm(crm_factory, database_url, tmp_path: Path, servers, monkeypatch) -> Any:
    smtp, twilio, _ = servers
    monkeypatch.setenv("SCAN_TWILIO_TOKEN", AUTH_TOKEN)
    config = tmp_path / "crmkit.toml"
    config.write_text(tomli_w.dumps({"crmkit": {"database": database_url, "default_region": "US"}, "plugins": {
        "email": {"host": smtp.host, "port": smtp.port, "security": "none", "from_address": "news@shop.example",
                  "public_url": "https://crm.shop.example", "unsubscribe_secret": "scan-unsubscribe-secret-0123456789",
                  "unsubscribe_address": "unsubscribe@shop.example"},
        "sms": {"provider": "twilio", "brand_name": "Shop", "help_contact": "help@shop.example",
                "public_url": "https://crm.shop.example",
                "twilio": {"account_sid": ACCOUNT_SID, "auth_token": "${SCAN_TWILIO_TOKEN}", "from_number": OUR_NUMBER,
                           "base_url": twilio.url}},
        "channels": {"frequency_cap": 0},
    }}))
    return crm_factory(str(config))


def setup_features(crm: Any, receiver: Receiver) -> None:
    """What the CRM is configured with before anyone arrives."""
    crm.webhooks.add(receiver.url(), ["*"])
    crm.custom_fields.define("contact", "nickname", "text")
    crm.pipelines.create("Sales", [("New", 0.1), ("Demo", 0.4), ("Won", 1.0, "won")])
    crm.automations.add({
        "name": "Call new web leads", "trigger": {"type": "contact.created", "source": "webform"},
        "actions": [{"type": "create_task", "title": "Call {{ contact.first_name }} {{ contact.last_name }} ({{ contact.email }})",
                     "due_in_days": 2}, {"type": "add_tag", "tag": "web"}],
    })
    crm.segments.save("web leads", {"field": "tags", "op": "contains", "value": "web"})
    crm.messages.save_template("welcome", "Dear {{ contact.first_name }} {{ contact.last_name }}, welcome ({{ contact.email }}).",
                               subject="Welcome, {{ contact.first_name }}", channel="email")
    crm.sequences.save({"name": "nurture", "steps": [
        {"channel": "email", "subject": "A tip for {{ contact.last_name }}", "body": "Hi {{ contact.first_name }}, here is a tip.",
         "purpose": "marketing"}]})


def spread(crm: Any, client: Any, who: dict[str, str], n: int, copy_to: str | None = None) -> str:
    """Spread one person through every feature; return their contact id. ``copy_to``: an
    address their reply is also sent to (another person's)."""
    name = f"{who['first']} {who['last']}"
    # Before they are a contact: HELP from their number (logged on no contact, answered).
    handle_inbound(crm, "twilio", {"MessageSid": f"SMhelp{n}", "From": who["phone"], "To": OUR_NUMBER, "Body": "HELP",
                                   "AccountSid": ACCOUNT_SID})
    contact = crm.intake.submit({"first_name": who["first"], "last_name": who["last"], "email": who["email"],
                                 "phone": who["written_phone"], "job_title": f"Head of {who['last']} Labs",
                                 "address": {"street": f"1 {who['last']} Way", "city": "Springfield", "postcode": "90210"},
                                 "custom": {"nickname": f"{who['first'][:3]} {who['last']}"}},
                                source="webform", external_ids={"shop": f"{who['email']}"}).contact
    # The API: an update through the intake with an Idempotency-Key (its response is kept).
    response = client.post("/contacts", json={"email": who["email"], "tags": ["vip"], "custom": {"nickname": who["first"]}},
                           headers={"Idempotency-Key": f"signup-{n}"})
    assert response.status_code == 200, response.text
    # A second record of the same person, merged into the first.
    dup = crm.contacts.create({"first_name": who["first"][0] + ".", "last_name": who["last"], "email": who["other_email"]})
    crm.activities.log({"kind": "note", "contact_id": dup.id, "subject": f"{who['first']} called from {who['other_email']}",
                        "payload": {"caller": name, "number": who["written_phone"]}})
    crm.merges.merge(contact.id, dup.id, prefer="a")

    crm.activities.log({"kind": "call", "contact_id": contact.id, "subject": f"Spoke to {name}",
                        "payload": {"notes": f"{who['first']} wants a demo; call {who['phone']}", "email": who["email"]}})
    deal = crm.deals.create({"title": f"{who['last']} licence", "contact_id": contact.id, "pipeline": "Sales", "amount": "1200"})
    crm.deals.move(deal.id, "Demo")
    crm.tasks.create({"title": f"Send {who['first']} the contract", "contact_id": contact.id, "deal_id": deal.id,
                      "notes": f"{who['email']} / {who['phone']}"})
    for channel in ("email", "sms"):
        crm.consents.record({"contact_id": contact.id, "channel": channel, "purpose": "marketing", "status": "granted",
                             "evidence": {"form": "signup", "name": name, "email": who["email"], "phone": who["phone"]}})
    crm.contacts.update(contact.id, {"location": f"near {who['last']} Park", "tags": ["vip", "web", who["last"].lower()]})
    crm.sequences.enroll("nurture", contact.id)
    crm.sequences.tick()

    # E-mail out (to the SMTP server) and back in (a reply, and a mail from the merged-away address).
    sent = crm.messages.send(contact.id, "email", template="welcome", purpose="marketing")
    assert sent["status"] == "sent", sent
    for sender, text in ((who["email"], f"Thanks! {who['first']}"), (who["other_email"], f"Also me, {name}")):
        reply = EmailMessage()
        reply["From"], reply["Subject"] = f"{name} <{sender}>", f"Re: Welcome, {who['first']}"
        reply["To"] = ", ".join(["news@shop.example", *([copy_to] if copy_to else [])])
        reply["Message-ID"] = make_msgid(domain="erase-me.example" if "erase" in sender else "keep-me.example")
        reply.set_content(f"{text}\n-- \n{name}\n{who['written_phone']}")
        assert receive_email(crm, reply.as_bytes()).kind in ("activity", "lead")
    crm.messages.suppress("email", who["other_email"], "unsubscribed", contact_id=contact.id, detail={"via": who["other_email"]})

    # Texts out (through the local Twilio), their status callbacks, a reply and a STOP.
    texted = crm.messages.send(contact.id, "sms", body="Hi {{ contact.first_name }}, your demo is at 10.", purpose="marketing")
    assert texted["status"] == "sent", texted
    handle_status(crm, "twilio", {"MessageSid": texted["provider_message_id"], "MessageStatus": "delivered", "To": who["phone"],
                                  "From": OUR_NUMBER, "AccountSid": ACCOUNT_SID})
    for sid, body in ((f"SMin{n}a", f"Yes, {who['first']} here"), (f"SMin{n}b", "STOP")):
        handle_inbound(crm, "twilio", {"MessageSid": sid, "From": who["phone"], "To": OUR_NUMBER, "Body": body, "AccountSid": ACCOUNT_SID})
    crm.webhooks.deliver()
    return contact.id


def search_terms(who: dict[str, str]) -> list[str]:
    local = who["email"].partition("@")[0]
    digits = who["phone"][2:]  # national number, no +1
    return [who["email"], who["other_email"], local, who["first"], who["last"], who["phone"], who["written_phone"],
            digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}", f"{digits[:3]}-{digits[3:6]}-{digits[6:]}",
            f"{digits[:3]}.{digits[3:6]}.{digits[6:]}", f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"]


def scan(engine: sa.Engine, who: dict[str, str]) -> list[str]:
    """Every (table.column: value) in the database holding one of ``who``'s identifiers."""
    terms = [t.lower() for t in search_terms(who)]
    digits = who["phone"][2:]
    metadata = sa.MetaData()
    metadata.reflect(engine)
    found = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = list(table.columns)
            stmt = sa.select(*(sa.cast(column, sa.Text).label(column.name) for column in columns))
            for row in conn.execute(stmt):
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    text = str(value).lower()
                    # Also any formatting of the number: the value with everything but digits gone.
                    if any(term in text for term in terms) or digits in re.sub(r"\D", "", text):
                        found.append(f"{table.name}.{column.name}: {text[:300]}")
    return found


def test_after_erase_no_table_holds_the_persons_email_phone_or_names(spread_crm, servers):
    crm = spread_crm
    smtp, twilio, receiver = servers
    setup_features(crm, receiver)
    app = create_app(crm)
    with api_client(crm, app=app) as client:
        erased_id = spread(crm, client, PERSON, 1)
        kept_id = spread(crm, client, CONTROL, 2, copy_to=PERSON["email"])
        # The spreading reached where it should (else the scan below would prove little).
        export = client.get(f"/contacts/{erased_id}/personal-data").json()
        assert {"activities", "deals", "tasks", "consents", "messages", "audit_log", "webhook_deliveries", "merges",
                "segments", "automation_runs", "sequence_enrollments", "email_mentions", "sms_mentions"} <= set(export), sorted(export)
        assert len(smtp.deliveries) >= 4 and len(twilio.messages) >= 2 and receiver.bodies
        before = scan(crm.backend.engine, PERSON)
        assert {entry.split(":")[0] for entry in before} >= {"contacts.email", "messages.body", "outbox_events.data",
                                                               "audit_log.changes", "webhook_deliveries.payload", "merges.snapshot"}

        response = client.delete(f"/contacts/{erased_id}/personal-data")
        assert response.status_code == 200, response.text
    crm.events.drain()
    crm.webhooks.deliver()

    leaks = scan(crm.backend.engine, PERSON)
    assert not leaks, "personal data left after erasure:\n" + "\n".join(leaks)
    # The scan sees what it looks for: the other person is everywhere still.
    kept = {entry.split(":")[0] for entry in scan(crm.backend.engine, CONTROL)}
    assert kept >= {"contacts.email", "messages.body", "outbox_events.data", "audit_log.changes", "webhook_deliveries.payload",
                    "merges.snapshot", "activities.payload", "consents.evidence", "tasks.title"}, sorted(kept)
    assert crm.contacts.get(kept_id).email in (CONTROL["email"], CONTROL["other_email"])
    # The record of the erasure remains, with nothing personal in it.
    erased_events = [json.loads(json.dumps(e.changes)) for e in crm.audit.query(subject_id=erased_id, type="contact.erased")]
    assert erased_events == [{}]


def test_an_erased_persons_opt_outs_still_apply_to_their_address_until_they_consent_again(crm_factory, tmp_path, servers):
    smtp, _, _ = servers
    config = tmp_path / "crmkit.toml"
    config.write_text(tomli_w.dumps({"crmkit": {"database": f"sqlite:///{tmp_path / 'optout.db'}"}, "plugins": {"email": {
        "host": smtp.host, "port": smtp.port, "security": "none", "from_address": "news@shop.example",
        "public_url": "https://crm.shop.example", "unsubscribe_secret": "scan-unsubscribe-secret-0123456789"}}}))
    crm = crm_factory(str(config))
    bounced = crm.contacts.create({"first_name": "Zebulon", "email": PERSON["email"]})
    unsubscribed = crm.contacts.create({"first_name": "Philippa", "email": CONTROL["email"]})
    crm.messages.suppress("email", PERSON["email"], "hard_bounce", contact_id=bounced.id)
    crm.messages.suppress("email", CONTROL["email"], "unsubscribed")  # on no contact: found by its address
    crm.privacy.erase(bounced.id)
    crm.privacy.erase(unsubscribed.id)
    assert not scan(crm.backend.engine, PERSON) and not scan(crm.backend.engine, CONTROL)
    assert sorted(s["reason"] for s in crm.messages.suppressions()) == ["hard_bounce", "unsubscribed"]

    again = crm.contacts.create({"first_name": "Zeb", "email": PERSON["email"].upper()})
    vetoed = crm.messages.send(again.id, "email", body="Your receipt", purpose="transactional")
    assert vetoed["status"] == "vetoed" and "suppressed before an erasure: hard_bounce" in vetoed["veto_reason"]
    # An unsubscribe does not stop transactional mail, before an erasure or after it.
    other = crm.contacts.create({"first_name": "Pip", "email": CONTROL["email"]})
    receipt = crm.messages.send(other.id, "email", body="Your receipt", purpose="transactional")
    assert receipt["status"] == "sent", receipt
    crm.consents.record({"contact_id": other.id, "channel": "email", "purpose": "marketing", "status": "granted"})
    # Consent given after the erasure lifts the old opt-out.
    crm.consents.record({"contact_id": again.id, "channel": "email", "purpose": "marketing", "status": "granted"})
    for recipient in (again, other):
        news = crm.messages.send(recipient.id, "email", body="News", purpose="marketing")
        assert news["status"] == "sent", news
    assert sorted(d.rcpt_tos[0] for d in smtp.deliveries) == sorted([CONTROL["email"], CONTROL["email"], PERSON["email"]])
