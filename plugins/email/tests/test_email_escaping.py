"""Data cannot inject markup into e-mail: an HTML template renders with autoescaping and a text
template stays a text message whatever the contact's fields contain — checked on the wire, at a
real SMTP server."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser


def received(sink, index: int):
    return BytesParser(policy=policy.default).parsebytes(sink.deliveries[index].raw)


def test_a_contact_named_like_a_script_is_escaped_in_html_and_cannot_make_a_text_message_html(email_crm, sink):
    crm = email_crm()
    evil = crm.contacts.create({"first_name": "<script>alert(1)</script>", "last_name": "<a href='https://evil.example'>x</a>",
                                "email": "evil@example.org"})
    crm.messages.send(evil.id, "email", subject="Hi", purpose="transactional",
                      body="<p>Hello {{ contact.first_name }} {{ contact.last_name }}</p>")
    crm.messages.send(evil.id, "email", subject="Hi", purpose="transactional", body="Hello {{ contact.last_name }}")
    html = received(sink, 0).get_body(("html",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert "&lt;a href=&#39;https://evil.example&#39;&gt;" in html and "<a " not in html
    text_message = received(sink, 1)
    assert text_message.get_content_type() == "text/plain"  # the tag-like name did not make it HTML
    assert text_message.get_content().strip() == "Hello <a href='https://evil.example'>x</a>"
