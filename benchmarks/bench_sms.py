"""SMS dispatch: what ``crm.messages`` adds per text over posting the same request to the
provider yourself.

A local server speaking Twilio's Messages API (:class:`crmkit_sms.testing.TwilioServer`, a
real HTTP/1.1 server on 127.0.0.1) takes every request. N contacts with a phone number and a
granted marketing consent get the same templated text:

(a) ``crm.messages.send`` one by one, sent inline — validation, rendering, the veto chain
    (consent, suppression, frequency cap, plugin vetoes) in the queueing transaction, the HTTP
    call, and the outcome's transaction with its activity and event;
(b) ``crm.messages.send`` with ``dispatch_inline=False`` to queue, then ``crm.messages.drain``
    — only the drain is timed: claim, veto chain again, HTTP call, record;
(c) the adapter alone: ``SmsChannel.deliver`` (build the form, post it, read the answer) —
    what the plugin adds to the HTTP call, apart from the core's message pipeline;
(d) the **baseline**: one ``httpx.Client`` (connection reused, like the channel's) posting the
    same forms — ``To``, ``From``, ``Body`` with the name filled in — with the same basic auth.

All four must deliver the same (To, Body) pairs before a ratio is reported. Figures are µs per
message; the server's own time is in every path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import crmkit
import httpx
import tomli_w
from crmkit_sms.channel import SmsChannel
from crmkit_sms.testing import TwilioServer

from benchmarks.harness import best_of, result, scratch_database, timed

if TYPE_CHECKING:
    from crmkit.app import CRM

MESSAGES = {True: 200, False: 1_000}
REPEATS = {True: 2, False: 3}
ACCOUNT, TOKEN, SENDER = "AC" + "b" * 32, "bench-token", "+14155550199"
BODY = "Hi {{ contact.first_name }}, our spring sale starts today: 20% off everything. Reply STOP to opt out."
NAMES = ("Ada", "Ben", "Chen", "Dana", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal")


def open_crm(directory: Path, database_url: str, server: TwilioServer, *, inline: bool) -> CRM:
    config = directory / f"crmkit-{'inline' if inline else 'queued'}.toml"
    config.write_text(tomli_w.dumps({"crmkit": {"database": database_url}, "plugins": {"sms": {
        "provider": "twilio", "brand_name": "Bench",
        "twilio": {"account_sid": ACCOUNT, "auth_token": TOKEN, "from_number": SENDER, "base_url": server.url},
    }}}))
    return crmkit.open(str(config), migrate=True, dispatch_inline=inline)


def add_recipients(crm: CRM, count: int) -> list[Any]:
    contacts = []
    for i in range(count):
        contact = crm.contacts.create({"first_name": NAMES[i % len(NAMES)], "phone": f"+1415555{i:04d}"})
        crm.consents.record({"contact_id": contact.id, "channel": "sms", "purpose": "marketing", "status": "granted"})
        contacts.append(contact)
    return contacts


def delivered(server: TwilioServer, since: int) -> list[tuple[str, str]]:
    return sorted((form["To"], form["Body"]) for form in server.messages[since:])


def run(quick: bool, *, database: str | None = None) -> list[dict[str, Any]]:
    count, repeats = MESSAGES[quick], REPEATS[quick]
    with TwilioServer(ACCOUNT, TOKEN) as server, scratch_database(database) as url, tempfile.TemporaryDirectory() as tmp:
        crm = open_crm(Path(tmp), url, server, inline=True)
        queued = open_crm(Path(tmp), url, server, inline=False)
        client = httpx.Client(timeout=10)
        try:
            contacts = add_recipients(crm, count)
            forms = [{"To": c.phone, "From": SENDER, "Body": BODY.replace("{{ contact.first_name }}", c.first_name)} for c in contacts]
            endpoint = f"{server.url}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
            outputs: dict[str, list[tuple[str, str]]] = {}

            def through_crm() -> None:
                start = len(server.messages)
                for contact in contacts:
                    assert crm.messages.send(contact.id, "sms", body=BODY, purpose="marketing")["status"] == "sent"
                outputs["send"] = delivered(server, start)

            def queue() -> None:
                for contact in contacts:
                    assert queued.messages.send(contact.id, "sms", body=BODY, purpose="marketing")["status"] == "queued"

            def drain() -> None:
                start = len(server.messages)
                assert queued.messages.drain().sent == count
                outputs["drain"] = delivered(server, start)

            def adapter() -> None:
                start = len(server.messages)
                for form in forms:
                    assert channel.deliver(form["To"], form["Body"]).result.provider_message_id
                outputs["adapter"] = delivered(server, start)

            def bare_httpx() -> None:
                start = len(server.messages)
                for form in forms:
                    response = client.post(endpoint, data=form, auth=(ACCOUNT, TOKEN))
                    assert response.status_code == 201 and response.json()["sid"]
                outputs["bare"] = delivered(server, start)

            channel = SmsChannel.for_crm(crm)
            (send_s, _), (adapter_s, _), (bare_s, _) = best_of(repeats, through_crm, adapter, bare_httpx)
            drain_s = float("inf")
            for _ in range(repeats):  # queueing is not the part measured here: time the drain alone
                queue()
                seconds, _ = timed(drain)
                drain_s = min(drain_s, seconds)
            assert outputs["send"] == outputs["drain"] == outputs["adapter"] == outputs["bare"], "the paths delivered different messages"
        finally:
            client.close()
            queued.close()
            crm.close()
    per = 1e6 / count
    note = f"{count} messages to a local Twilio-format server, best of {repeats}"
    return [
        result(f"messages.send inline, {count} texts", send_s * per, bare_s * per, "µs/message",
               f"{note}; baseline: httpx.Client posting the same forms"),
        result(f"messages.drain of {count} queued texts", drain_s * per, bare_s * per, "µs/message",
               f"{note}; only the drain timed; baseline: httpx.Client posting the same forms"),
        result(f"SmsChannel.deliver (the Twilio adapter alone), {count} texts", adapter_s * per, bare_s * per, "µs/message",
               f"{note}; baseline: httpx.Client posting the same forms"),
    ]
