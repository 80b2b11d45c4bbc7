"""IMAP polling against a real Dovecot (Debian's dovecot-imapd, a private instance per test
module): messages APPENDed to the mailbox become activities, leads and receipts exactly as over
SMTP; a second poll creates nothing; a poller killed mid-batch — in-process between handling
a message and recording its UID, and a ``crmkit email poll`` process SIGKILLed — leaves no
duplicates after the next poll."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from crmkit.domain.values import utcnow
from crmkit.testing import in_ci
from crmkit_email.dovecot import Dovecot, find_dovecot
from crmkit_email.imap import TABLE, ImapError, poll
from crmkit_email.inbound import receive

USER, PASSWORD = "crm@shop.example", "imap-pass-Wq8!z"


def dovecot_binary() -> str:
    """Dovecot, installed with apt-get if missing; skipped without it — failed under CI=true."""
    binary, reason = find_dovecot(install=True)
    if binary is None:
        if in_ci():
            pytest.fail(f"CI=true requires Dovecot for the IMAP tests; {reason}")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="module")
def dovecot():
    binary = dovecot_binary()
    with Dovecot(binary, {USER: PASSWORD, "other@shop.example": "other-pass-123"}) as server:
        yield server


@pytest.fixture
def mailbox(dovecot):
    """An empty INBOX for each test (the server is shared by the module)."""
    client = dovecot.client(USER)
    try:
        client.select("INBOX")
        typ, data = client.uid("SEARCH", "ALL")
        if data[0]:
            client.uid("STORE", b",".join(data[0].split()).decode(), "+FLAGS.SILENT", r"(\Deleted)")
            client.expunge()
    finally:
        client.logout()
    return dovecot


@pytest.fixture
def imap_crm(email_crm, mailbox, monkeypatch):
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)

    def make(**overrides):
        settings = {"imap_host": "127.0.0.1", "imap_port": mailbox.port, "imap_security": "none", "imap_username": USER,
                    "imap_password": "${TEST_IMAP_PASSWORD}", "imap_poll_seconds": 60.0, **overrides}
        return email_crm(**settings)

    return make


def mail(sender: str, subject: str, body: str, message_id: str | None, to: str = "sales@shop.example") -> bytes:
    """A plain message as a mail client would store it (a Message-ID unless None)."""
    headers = {"From": sender, "To": to, "Subject": subject, "Date": "Tue, 03 Mar 2026 09:15:00 +0100", "Message-ID": message_id}
    return ("".join(f"{name}: {value}\r\n" for name, value in headers.items() if value) + f"\r\n{body}\r\n").encode()


def activities(crm, kind="email.received"):
    return [a for c in crm.contacts.list(limit=None) for a in crm.activities.for_contact(c.id) if a.kind == kind]


def test_polling_turns_mail_into_activities_leads_and_receipts_once(imap_crm, mailbox, sink, subscribe, caplog):
    caplog.set_level(logging.DEBUG)
    crm = imap_crm()
    ada = subscribe(crm, email="ada@example.org")
    sent = crm.messages.send(ada.id, "email", body="Spring sale", purpose="marketing")
    mailbox.append(USER, mail("Ada <ada@example.org>", "Re: Spring sale", "Is the blue one in stock?", "<r-1@example.org>"))
    mailbox.append(USER, mail('"Grace Hopper" <grace@navy.example>', "Pricing?", "50 seats?", "<q-1@navy.example>"))
    mailbox.append(USER, mail("grace@navy.example", "Pricing (again)", "Resent", "<q-1@navy.example>"))  # the same message twice
    mailbox.append(USER, mail("Linus <linus@example.org>", "No id", "hello", None))
    dsn = (Path(__file__).with_name("samples") / "postfix_hard_bounce.eml").read_bytes()
    mailbox.append(USER, dsn.replace(b"{message_id}", sent["provider_message_id"].encode()))

    report = poll(crm)
    assert report.fetched == 5 and report.counts() == {"activity": 2, "lead": 2, "receipts": 1}
    assert report.last_uid == max(mailbox.uids(USER))
    [reply] = [a for a in crm.activities.for_contact(ada.id) if a.kind == "email.received"]
    assert reply.external_id == "<r-1@example.org>" and reply.payload["text"].strip() == "Is the blue one in stock?"
    grace = crm.contacts.find_by_email("grace@navy.example")
    assert (grace.first_name, grace.last_name, grace.lifecycle_stage.value) == ("Grace", "Hopper", "lead")
    assert [a.subject for a in crm.activities.for_contact(grace.id)] == ["Pricing?"]
    assert crm.contacts.find_by_email("linus@example.org") is not None
    assert [s["reason"] for s in crm.messages.suppressions("email")] == ["hard_bounce"]
    assert mailbox.uids(USER, "UNSEEN") == []  # handled mail is flagged \Seen

    before = (len(crm.contacts.list(limit=None)), len(activities(crm)))
    again = poll(crm)
    assert again.fetched == 0 and (len(crm.contacts.list(limit=None)), len(activities(crm))) == before

    mailbox.append(USER, mail("ada@example.org", "One more", "thanks", "<r-2@example.org>"))
    assert poll(crm).counts() == {"activity": 1}
    assert PASSWORD not in caplog.text


def test_a_crash_between_handling_and_recording_the_uid_duplicates_nothing(imap_crm, mailbox):
    crm = imap_crm(imap_mark_seen=False)
    for i in range(6):
        mailbox.append(USER, mail(f"Person {i} <p{i}@example.net>", f"Question {i}", "Hi", f"<m-{i}@example.net>"))

    class Killed(BaseException):
        """Stands for the process dying: not an Exception, so nothing on the way catches it."""

    handled = []

    def dies_after_the_third(crm_, raw):
        outcome = receive(crm_, raw)
        handled.append(outcome.kind)
        if len(handled) == 3:
            raise Killed  # the lead and activity are committed, the UID is not
        return outcome

    with pytest.raises(Killed):
        poll(crm, handle=dies_after_the_third)
    assert len(crm.contacts.list(limit=None)) == 3

    report = poll(crm)  # the next poll retries the third message and goes on
    assert report.fetched == 4 and report.counts() == {"activity": 1, "lead": 3}
    assert sorted(c.email for c in crm.contacts.list(limit=None)) == [f"p{i}@example.net" for i in range(6)]
    assert len(activities(crm)) == 6
    assert mailbox.uids(USER, "UNSEEN") == mailbox.uids(USER)  # imap_mark_seen = false changes nothing on the server


def test_a_sigkilled_poll_command_is_finished_by_the_next_one(imap_crm, mailbox):
    crm = imap_crm(imap_lease_seconds=1.0)
    count = 40
    for i in range(count):
        mailbox.append(USER, mail(f"lead{i}@example.net", f"Enquiry {i}", "Hello", f"<k-{i}@example.net>"))
    command = [sys.executable, "-m", "crmkit", "--config", str(crm.config.path), "email", "poll", "--once"]
    env = {**os.environ, "TEST_IMAP_PASSWORD": PASSWORD}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(crm.contacts.list(limit=None)) < 5:  # killed mid-batch, after some leads
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read().decode() if process.stdout else ""
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
    assert 5 <= len(crm.contacts.list(limit=None)) < count

    assert poll(crm).skipped == "another poller holds the mailbox"  # the killed poller's lease
    time.sleep(1.1)
    result = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(crm.contacts.list(limit=None)) == count
    assert sorted(a.external_id for a in activities(crm)) == sorted(f"<k-{i}@example.net>" for i in range(count))


def test_the_worker_tick_polls_when_due_and_the_lease_keeps_pollers_apart(imap_crm, mailbox):
    crm = imap_crm(imap_poll_seconds=3600.0)
    mailbox.append(USER, mail("ada@example.org", "Hello", "Hi", "<w-1@example.org>"))
    crm.plugins.call_each_safely("crmkit_worker_tick", crm=crm, now=utcnow())
    assert len(activities(crm)) == 1
    mailbox.append(USER, mail("bob@example.org", "Hello", "Hi", "<w-2@example.org>"))
    assert poll(crm, due_only=True).skipped == "not due yet"  # the next poll is an hour away
    assert len(activities(crm)) == 1
    assert poll(crm).fetched == 1  # `crmkit email poll` does not wait for it

    table = crm.backend.metadata.tables[TABLE]
    with crm.uow() as uow:  # another worker is polling right now
        uow.connection.execute(sa.update(table).values(owner="someone-else", leased_until=utcnow() + timedelta(minutes=5)))
    mailbox.append(USER, mail("cyd@example.org", "Hello", "Hi", "<w-3@example.org>"))
    assert poll(crm).skipped == "another poller holds the mailbox" and len(activities(crm)) == 2


def test_a_wrong_password_is_a_clear_error_that_does_not_leak_it(imap_crm, monkeypatch, caplog):
    monkeypatch.setenv("TEST_IMAP_WRONG", "wrong-Secret-42")
    crm = imap_crm(imap_password="${TEST_IMAP_WRONG}")
    with pytest.raises(ImapError) as failure:
        poll(crm)
    message = str(failure.value)
    assert f"login as '{USER}' refused" in message and "wrong-Secret-42" not in message
    assert "wrong-Secret-42" not in repr(crm.settings_for("email"))
    caplog.set_level(logging.DEBUG)
    later = utcnow() + timedelta(minutes=2)  # the failed poll set the next one a minute away
    crm.plugins.call_each_safely("crmkit_worker_tick", crm=crm, now=later)
    assert "refused" in caplog.text and "wrong-Secret-42" not in caplog.text


@pytest.fixture(scope="module")
def tls_dovecot(tmp_path_factory):
    """A second Dovecot, with a self-signed certificate for 127.0.0.1: STARTTLS and IMAPS."""
    binary = dovecot_binary()
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("imap-tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    with Dovecot(binary, {USER: PASSWORD}, tls=(cert, key)) as server:
        yield server, cert


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_imaps_and_starttls_verify_the_server_certificate(email_crm, tls_dovecot, monkeypatch, security):
    server, cert = tls_dovecot
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    port = server.imaps_port if security == "ssl" else server.port
    settings = {"imap_host": "127.0.0.1", "imap_port": port, "imap_security": security, "imap_username": USER,
                "imap_password": "${TEST_IMAP_PASSWORD}"}
    server.append(USER, mail(f"{security}@example.net", "Over TLS", "Hi", f"<{security}-1@example.net>"))

    untrusting = email_crm(**settings)  # the system's CAs do not know the self-signed certificate
    with pytest.raises(ImapError, match="certificate verify failed"):
        poll(untrusting)

    crm = email_crm(**settings, ca_file=str(cert))
    report = poll(crm)
    assert report.fetched >= 1 and crm.contacts.find_by_email(f"{security}@example.net") is not None


def test_uid_bookkeeping_and_the_lease_on_every_database(imap_crm, mailbox, database_url):
    crm = imap_crm(database_url=database_url)
    for i in range(3):
        mailbox.append(USER, mail(f"db{i}@example.net", "Hello", "Hi", f"<db-{i}@example.net>"))
    assert poll(crm).counts() == {"lead": 3}
    assert poll(crm, due_only=True).skipped == "not due yet"
    assert poll(crm).fetched == 0
    table = crm.backend.metadata.tables[TABLE]
    with crm.read() as uow:
        row = uow.connection.execute(sa.select(table)).one()
    assert row.last_uid == max(mailbox.uids(USER)) and row.owner is None and row.uidvalidity > 0
    assert len(activities(crm)) == 3


def test_the_poll_command_keeps_polling_until_sigterm(imap_crm, mailbox):
    crm = imap_crm(imap_poll_seconds=0.3)
    command = [sys.executable, "-m", "crmkit", "--config", str(crm.config.path), "email", "poll"]
    process = subprocess.Popen(command, env={**os.environ, "TEST_IMAP_PASSWORD": PASSWORD}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        for i in range(2):  # mail arriving while it runs is picked up by a later poll
            mailbox.append(USER, mail(f"loop{i}@example.net", "Hello", "Hi", f"<loop-{i}@example.net>"))
            deadline = time.monotonic() + 60
            while crm.contacts.find_by_email(f"loop{i}@example.net") is None:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "1 lead" in output and PASSWORD not in output


def test_a_cleartext_login_to_another_machine_is_refused(email_crm):
    from crmkit.errors import PluginError

    with pytest.raises(PluginError, match=r"imap_security = \"none\" would send the password in clear to imap\.example\.com"):
        email_crm(imap_host="imap.example.com", imap_port=143, imap_security="none", imap_username="u", imap_password="p")
