"""Sending through crm.messages to a real SMTP server (aiosmtpd on 127.0.0.1): the message on the
wire, connection reuse, failure classification, throttling, settings."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from crmkit.errors import PluginError
from crmkit_email.channel import EmailChannel
from crmkit_email.testing import SmtpSink
from crmkit_email.throttle import DomainThrottle
from crmkit_email.unsubscribe import read_token


def parsed(delivery):
    return BytesParser(policy=policy.default).parsebytes(delivery.raw)


def test_a_marketing_message_arrives_with_a_stable_message_id_and_one_click_unsubscribe(email_crm, sink, subscribe):
    crm = email_crm()
    ada = subscribe(crm)
    sent = crm.messages.send(ada.id, "email", subject="Spring sale, {{ contact.first_name }}",
                             body="<h1>Hi {{ contact.first_name }}</h1><p>Everything is <b>20%</b> off.</p>", purpose="marketing")
    assert sent["status"] == "sent"
    [delivery] = sink.deliveries
    msg = parsed(delivery)
    assert delivery.mail_from == "news@shop.example" and delivery.rcpt_tos == ("ada@example.org",)
    assert msg["Message-ID"] == f"<{sent['id']}@shop.example>" == sent["provider_message_id"]
    assert msg["From"] == "Shop News <news@shop.example>" and msg["Subject"] == "Spring sale, Ada"
    # multipart/alternative: the text part derived from the HTML
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()
    # ... and the footer linking to the preference page (crmkit_email.preferences)
    assert text.replace("\r\n", "\n").strip().startswith(
        "Hi Ada\n\nEverything is 20% off.\n\nManage your e-mail preferences (https://crm.shop.example/email/preferences/")
    assert "<b>20%</b>" in html
    # RFC 2369 + RFC 8058
    uris = [u.strip().strip("<>") for u in msg["List-Unsubscribe"].split(",")]
    assert uris[0].startswith("mailto:unsubscribe@shop.example?subject=unsubscribe%20")
    assert uris[1].startswith("https://crm.shop.example/email/unsubscribe/")
    assert read_token("test-unsubscribe-secret-0123456789", uris[1].rsplit("/", 1)[1]) == sent["id"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_transactional_message_is_plain_text_without_unsubscribe_headers(email_crm, sink):
    crm = email_crm()
    ada = crm.contacts.create({"first_name": "Ada", "email": "ada@example.org"})
    crm.messages.send(ada.id, "email", subject="Your receipt", body="Order 42: paid.", purpose="transactional")
    msg = parsed(sink.deliveries[0])
    assert msg.get_content_type() == "text/plain" and msg.get_content().strip() == "Order 42: paid."
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None


def test_marketing_without_an_unsubscribe_link_is_refused_not_sent(email_crm, sink, subscribe):
    crm = email_crm(public_url="", unsubscribe_secret="")
    ada = subscribe(crm)
    failed = crm.messages.send(ada.id, "email", body="Sale!", purpose="marketing")
    assert failed["status"] == "dead" and "one-click unsubscribe" in failed["last_error"]
    assert sink.deliveries == []


def test_a_drain_reuses_one_connection_and_the_worker_closes_it(email_crm, sink, subscribe):
    crm = email_crm(max_messages_per_connection=4, dispatch_inline=False)
    for i in range(10):
        person = subscribe(crm, email=f"p{i}@example.org")
        crm.messages.send(person.id, "email", body=f"Hello {i}", purpose="marketing", idempotency_key=f"k{i}")
    assert sink.deliveries == []  # queued, not sent
    report = crm.messages.drain()
    channel = EmailChannel.for_crm(crm)
    assert report.sent == 10 and len(sink.deliveries) == 10
    assert channel.sender.connections_opened == 3 and len(sink.sessions) == 3  # 4 + 4 + 2 messages
    channel.close()
    assert channel.sender._conn is None


@pytest.mark.parametrize(("reply", "status", "permanent"), [
    ("550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown", "dead", True),
    ("451 4.7.1 Greylisted, please try again later", "retrying", False),
    ("452 4.2.2 Mailbox full", "retrying", False),
])
def test_smtp_replies_are_classified(email_crm, sink, subscribe, reply, status, permanent):
    crm = email_crm()
    person = subscribe(crm, email="nobody@example.org")
    sink.replies["nobody@example.org"] = reply
    message = crm.messages.send(person.id, "email", body="Hi", purpose="marketing")
    assert message["status"] == status and reply[:3] in message["last_error"]
    failure = next(a for a in crm.activities.for_contact(person.id) if a.kind == "email.failed")
    assert failure.payload["permanent"] is permanent and sink.deliveries == []


def test_an_unreachable_server_is_a_transient_failure(email_crm, sink, subscribe):
    crm = email_crm()
    sink.stop()
    person = subscribe(crm)
    message = crm.messages.send(person.id, "email", body="Hi", purpose="marketing")
    assert message["status"] == "retrying" and "cannot connect" in message["last_error"]


def test_throttle_per_domain_token_bucket():
    now = [0.0]
    throttle = DomainThrottle(2.0, 2, {"slow.example": 0.5, "free.example": 0}, clock=lambda: now[0])
    assert [throttle.reserve("gmail.com", 10) for _ in range(4)] == [0.0, 0.0, 0.5, 1.0]  # burst 2, then 2/s queue
    assert throttle.reserve("other.example", 10) == 0.0  # buckets are per domain
    assert throttle.reserve("free.example", 0) == 0.0 and throttle.reserve("free.example", 0) == 0.0
    assert throttle.reserve("slow.example", 0) == 0.0 and throttle.reserve("slow.example", 0) == 0.0
    assert throttle.reserve("slow.example", 1.0) is None  # would wait 2 s: refused, nothing taken
    now[0] = 2.0
    assert throttle.reserve("SLOW.example", 0) == 0.0


def test_a_throttled_domain_waits_and_an_over_limit_one_is_retried(email_crm, sink, subscribe):
    crm = email_crm(throttle_per_second=1000.0, throttle_burst=1, domain_throttles=["slow.example=0.01"], throttle_max_wait=0.5)
    channel = EmailChannel.for_crm(crm)
    waits: list[float] = []
    channel.sleep = waits.append
    channel.throttle.clock = lambda: 0.0  # time stands still: the waits are exact
    fast = [subscribe(crm, email=f"f{i}@fast.example") for i in range(3)]
    slow = [subscribe(crm, email=f"s{i}@slow.example") for i in range(2)]
    results = [crm.messages.send(p.id, "email", body="Hi", purpose="marketing")["status"] for p in fast + slow]
    assert results == ["sent", "sent", "sent", "sent", "retrying"]
    assert waits == pytest.approx([0.001, 0.002])  # fast.example: burst 1, then 1 ms apart
    assert "throttled: slow.example" in crm.messages.get(crm.messages.list(status="retrying")[0]["id"])["last_error"]


@pytest.mark.parametrize(("key", "value", "complaint"), [
    ("security", "tls", "security must be one of"),
    ("from_address", "not an address", "from_address"),
    ("domain_throttles", ["gmail.com:5"], "domain_throttles"),
    ("public_url", "crm.example", "public_url must be an http(s) URL"),
    ("unsubscribe_secret", "short", "at least 16 characters"),
])
def test_bad_settings_fail_the_open_naming_the_key(email_crm, key, value, complaint):
    with pytest.raises(PluginError) as failure:  # raised by the plugin's startup check
        email_crm(**{key: value})
    assert "[plugins.email]" in str(failure.value) and complaint in str(failure.value)


def test_a_username_without_password_is_refused(email_crm):
    with pytest.raises(PluginError, match="username and password go together"):
        email_crm(username="mailer")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_starttls_and_login_and_the_password_never_logged(email_crm, tls_files, subscribe, caplog, monkeypatch):
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    monkeypatch.setenv("SMTP_PASSWORD", "pa55-w0rd-secret")
    caplog.set_level(logging.DEBUG)
    with SmtpSink(tls_context=server_context, credentials={"mailer": "pa55-w0rd-secret"}) as tls_sink:
        good = email_crm(host=tls_sink.host, port=tls_sink.port, security="starttls", ca_file=str(cert), username="mailer",
                         password="${SMTP_PASSWORD}")
        ada = subscribe(good)
        assert good.messages.send(ada.id, "email", body="Hi", purpose="marketing")["status"] == "sent"
        assert len(tls_sink.deliveries) == 1
        assert "pa55" not in repr(EmailChannel.for_crm(good).settings)

        monkeypatch.setenv("SMTP_PASSWORD", "wrong-password")
        bad = email_crm(host=tls_sink.host, port=tls_sink.port, security="starttls", ca_file=str(cert), username="mailer",
                        password="${SMTP_PASSWORD}")
        bob = subscribe(bad, email="bob@example.org")
        failed = bad.messages.send(bob.id, "email", body="Hi", purpose="marketing")
        assert failed["status"] == "retrying" and "authentication as 'mailer' failed: 535" in failed["last_error"]
        assert len(tls_sink.deliveries) == 1

        plain = email_crm(host=tls_sink.host, port=tls_sink.port, security="starttls", username="mailer", password="${SMTP_PASSWORD}")
        carl = subscribe(plain, email="carl@example.org")
        untrusted = plain.messages.send(carl.id, "email", body="Hi", purpose="marketing")
        assert untrusted["status"] == "retrying" and "CERTIFICATE_VERIFY_FAILED" in untrusted["last_error"]
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "pa55-w0rd-secret" not in logged and "wrong-password" not in logged


def test_starttls_is_required_when_configured(email_crm, sink, subscribe):
    crm = email_crm(security="starttls")  # the plain sink does not offer STARTTLS
    ada = subscribe(crm)
    message = crm.messages.send(ada.id, "email", body="Hi", purpose="marketing")
    assert message["status"] == "retrying" and "does not offer STARTTLS" in message["last_error"]
    assert sink.deliveries == []


def test_non_ascii_subject_sender_name_and_body_arrive_intact(email_crm, sink, subscribe):
    crm = email_crm(from_name="Zoë's Boutique")
    zoe = subscribe(crm, email="zoe@example.org", first_name="Zoë")
    crm.messages.send(zoe.id, "email", subject="Grüße, {{ contact.first_name }} — 20 % Rabatt auf alles, nur diese Woche im Laden",
                      body="Liebe {{ contact.first_name }}, schöne Grüße!", purpose="marketing")
    raw = sink.deliveries[0].raw
    assert raw.isascii()  # encoded-words and quoted-printable: no 8-bit data needed on the wire
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = parsed(sink.deliveries[0])
    assert msg["Subject"] == "Grüße, Zoë — 20 % Rabatt auf alles, nur diese Woche im Laden"
    assert msg["From"] == "Zoë's Boutique <news@shop.example>"
    body, footer = msg.get_content().replace("\r\n", "\n").split("\n\n--\n")
    assert body.strip() == "Liebe Zoë, schöne Grüße!" and footer.startswith("Manage your e-mail preferences: https://")


def test_the_check_command_connects_and_names_the_problem(email_crm, sink):
    from click.testing import CliRunner
    from crmkit.cli import build_cli

    crm = email_crm()
    ok = CliRunner().invoke(build_cli(), ["--config", str(crm.config.path), "email", "check"])
    assert ok.exit_code == 0 and f"SMTP 127.0.0.1:{sink.port} (none): OK" in ok.stdout
    sink.stop()
    down = CliRunner().invoke(build_cli(), ["--config", str(crm.config.path), "email", "check"])
    assert down.exit_code == 1 and f"cannot connect to 127.0.0.1:{sink.port}" in down.stderr


def test_every_attempt_at_a_message_is_the_same_bytes_but_the_date():
    from crmkit_email.mime import build

    def attempt() -> bytes:
        msg = build(message_id="<m-1@shop.example>", from_address="news@shop.example", to="ada@example.org", subject="Hi",
                    html="<p>Hi <b>Ada</b></p>", list_unsubscribe=["https://crm.shop.example/email/unsubscribe/t"], one_click=True)
        return b"".join(line for line in msg.as_bytes().splitlines(True) if not line.startswith(b"Date:"))

    first = attempt()
    assert first == attempt() and b'boundary="=_crmkit_' in first
