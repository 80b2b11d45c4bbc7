"""Done-when check of issue 5 end to end: a nurture sequence's second step reaches a real SMTP
server (aiosmtpd) through the channel layer and crmkit-email, sent by the worker's pass once
its delay has passed — not before, and only once.

``core/tests/test_sequences.py`` proves the sequence logic with a recording channel and
simulated clocks; this runs the production path a user runs: ``crmkit worker`` passes
(:class:`crmkit.worker.Worker`) on the wall clock, the e-mail plugin, a listening SMTP server.
"""

from __future__ import annotations

import time

from crmkit.worker import Worker

DELAY_SECONDS = 6  # long enough that the first passes finish before it, even on a loaded machine
NURTURE = {
    "name": "nurture",
    "description": "a welcome, then a tip a few seconds later",
    "steps": [
        {"channel": "email", "template": "welcome", "purpose": "marketing"},
        {"delay": f"{DELAY_SECONDS}s", "channel": "email", "subject": "Still curious, {{ contact.first_name }}?",
         "body": "Hi {{ contact.first_name }}, here is a tip.", "purpose": "marketing"},
    ],
}


def test_the_second_step_arrives_at_the_smtp_server_after_its_delay_and_once(email_crm, sink, subscribe, database_url):
    crm = email_crm(database_url, dispatch_inline=False)
    crm.messages.save_template("welcome", "Welcome {{ contact.first_name }}!", subject="Hello {{ contact.first_name }}", channel="email")
    crm.sequences.save(NURTURE)
    ada = subscribe(crm)
    enrolled = time.monotonic()
    enrollment = crm.sequences.enroll("nurture", ada.id)
    worker = Worker(crm, interval=0.1)

    worker.run(once=True)
    assert [d.message["Subject"] for d in sink.deliveries] == ["Hello Ada"]
    early = time.monotonic()
    worker.run(once=True)  # the delay has not passed: nothing more
    assert early - enrolled < DELAY_SECONDS and len(sink.deliveries) == 1

    time.sleep(max(0.0, DELAY_SECONDS + 0.5 - (time.monotonic() - enrolled)))
    worker.run(once=True)
    assert [d.message["Subject"] for d in sink.deliveries] == ["Hello Ada", "Still curious, Ada?"]
    second = sink.deliveries[1]
    assert second.rcpt_tos == ("ada@example.org",) and second.mail_from == "news@shop.example"
    assert "Hi Ada, here is a tip." in second.message.get_body(("plain",)).get_content()
    assert second.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # sent as marketing by the channel
    assert second.message_id != sink.deliveries[0].message_id

    worker.run(once=True)
    assert len(sink.deliveries) == 2
    done = crm.sequences.enrollment(enrollment.id)
    assert (done.status, done.step) == ("completed", 2)
    assert sorted(a.kind for a in crm.activities.for_contact(ada.id)) == ["email.sent", "email.sent"]
