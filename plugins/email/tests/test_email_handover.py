"""The SMTP hand-over against a real aiosmtpd server: the body goes out, ``hand_over`` runs, and
only then the final "." — so abandoning before it delivers nothing, and losing the connection
after it is an unknown outcome (the message may have arrived), counted as ambiguous."""

from __future__ import annotations


from crmkit.channels import SendStatus
from crmkit_email import mime
from crmkit_email.settings import EmailSettings
from crmkit_email.smtp import SmtpSender
from crmkit_email.testing import SmtpSink


def sender_for(sink: SmtpSink, **overrides: object) -> SmtpSender:
    return SmtpSender(EmailSettings(host=sink.host, port=sink.port, security="none", from_address="news@shop.example", **overrides))


def message(n: int) -> object:
    # A line starting with "." must arrive intact: the payload is dot-stuffed like smtplib's data().
    return mime.build(message_id=f"<m{n}@shop.example>", from_address="news@shop.example", to="ada@example.org",
                      subject="Hello", text=f"Message {n}\n.hidden line\n..two dots\n")


def test_hand_over_runs_between_the_body_and_the_final_dot(sink):
    sender, seen = sender_for(sink), []
    result = sender.send(message(1), "news@shop.example", "ada@example.org", hand_over=lambda: seen.append(len(sink.deliveries)) or True)
    assert result.status is SendStatus.SENT and result.provider_message_id == "<m1@shop.example>"
    assert seen == [0]  # called once, before the server had the message
    [delivery] = sink.deliveries
    assert b"\r\n.hidden line\r\n..two dots\r\n" in delivery.raw
    sender.close()


def test_a_refused_hand_over_delivers_nothing_and_the_next_message_goes_on_a_new_connection(sink):
    sender = sender_for(sink)
    result = sender.send(message(1), "news@shop.example", "ada@example.org", hand_over=lambda: False)
    assert result.status is SendStatus.TRANSIENT and "another worker" in (result.error or "")
    assert sender.send(message(2), "news@shop.example", "ada@example.org").status is SendStatus.SENT
    assert [d.message_id for d in sink.deliveries] == ["<m2@shop.example>"]  # the abandoned transaction was discarded
    assert sender.connections_opened == 2
    sender.close()


def test_no_answer_after_the_dot_is_an_unknown_outcome_and_counted_as_ambiguous(email_crm, subscribe):
    with SmtpSink(delay=1.5) as slow:  # the server takes longer to answer the "." than we wait
        crm = email_crm(port=slow.port, timeout=0.5)
        ada = subscribe(crm)
        sent = crm.messages.send(ada.id, "email", subject="Hi", body="Hello {{ contact.first_name }}", purpose="marketing")
        assert (sent["status"], sent["attempts"], sent["ambiguous"]) == ("retrying", 1, 1)
        assert "may have arrived" in sent["last_error"]
        slow.delay = 0
        assert crm.messages.drain(now=sent["next_attempt_at"]).sent == 1
        done = crm.messages.get(sent["id"])
        assert (done["status"], done["attempts"], done["ambiguous"]) == ("sent", 2, 1)
        # aiosmtpd drops a transaction whose client went away while it was still being handled;
        # another server may keep it: one copy or two, never none, and a second one is counted.
        assert list(slow.message_ids()) == [f"<{sent['id']}@shop.example>"]
        assert 1 <= slow.message_ids()[f"<{sent['id']}@shop.example>"] <= 1 + done["ambiguous"]
