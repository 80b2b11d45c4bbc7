"""Fault test: ``crmkit worker`` killed with SIGKILL at random moments while it sends 2,000 e-mails
to a real SMTP server, restarted each time; afterwards every message has arrived exactly once,
except the ones the worker itself recorded as ambiguous, and the queue is empty.

What "exactly once" can mean over SMTP, precisely: SMTP has no two-phase commit, but a server
takes a message only when the final "." of DATA arrives and discards a transaction cut off
before it. crmkit-email writes the body, then commits "handing_over" for the message, then
writes the "."; the 250 is recorded as "sent" in its own small transaction. So a worker killed

* before the hand-over commit leaves a message the server never took: resent, one copy;
* between the hand-over commit and recording "sent" leaves a message that may or may not have
  arrived: the next worker resends it and counts it in ``messages.ambiguous``.

The test asserts exactly that: every Message-ID arrived; a message with ``ambiguous == 0``
arrived exactly once (no duplicate at all); a message with ``ambiguous == n`` arrived at least
once and at most ``n + 1`` times, and its copies are the same message. It prints how many
messages were ambiguous (at most one per kill: a worker hands over one message at a time).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import crmkit
import pytest
import sqlalchemy as sa
import tomli_w
from crmkit_email.testing import SmtpSink

MESSAGES = 2_000
KILLS = 5
LEASE_SECONDS = 3  # a killed worker's claims wait this long; it must outlast a batch of sends
BATCH = 20
SEED = int(os.environ.get("CRMKIT_FAULT_SEED", "20260302"))


def write_config(directory: Path, sink: SmtpSink) -> Path:
    path = directory / "crmkit.toml"
    path.write_text(tomli_w.dumps({
        "crmkit": {"database": f"sqlite:///{directory / 'crm.db'}"},
        "plugins": {"email": {
            "host": sink.host, "port": sink.port, "security": "none", "timeout": 20.0,
            "from_address": "news@shop.example", "public_url": "https://crm.shop.example",
            "unsubscribe_secret": "fault-test-secret-0123456789",
        }},
    }))
    return path


def queue_messages(config: Path) -> list[str]:
    with crmkit.open(config, migrate=True, dispatch_inline=False) as crm:
        records = [crm.intake.record({"first_name": f"Reader{i}", "email": f"reader{i}@example.org"}, source="import") for i in range(MESSAGES)]
        contacts = [r.contact_id for r in crm.intake.submit_many(records)]
        assert all(contacts)
        with crm.uow() as uow:
            for contact_id in contacts:
                crm.consents.record_in(uow, {"contact_id": contact_id, "channel": "email", "purpose": "newsletter", "status": "granted"})
        ids = [
            crm.messages.send(contact_id, "email", subject="Issue 12", body="<p>Hello {{ contact.first_name }}</p>", purpose="newsletter",
                              idempotency_key=f"newsletter-12:{contact_id}")["id"]
            for contact_id in contacts
        ]
        assert {m["status"] for m in crm.messages.list(limit=MESSAGES + 1)} == {"queued"}
        return ids


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "crmkit", "--config", str(config), "worker",
               "--lease", str(LEASE_SECONDS), "--batch", str(BATCH), "--interval", "0.05"]
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def wait_for_drain(engine: sa.Engine, worker: subprocess.Popen[bytes], log: Path, stall: float = 120) -> None:
    """Until every message is sent and every event dispatched; fails when the worker dies or
    nothing changes for ``stall`` seconds (progress, not speed: CI machines may be slow)."""
    last, changed = None, time.monotonic()
    while True:
        state = queue_state(engine)
        if set(state) == {"sent", "events pending"} and state["events pending"] == 0:
            return
        assert worker.poll() is None, log.read_text()[-3000:]
        if state != last:
            last, changed = state, time.monotonic()
        elif time.monotonic() - changed > stall:
            raise AssertionError(f"no progress for {stall:.0f} s: {state}")
        time.sleep(0.1)


def queue_state(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text("SELECT status, COUNT(*) FROM messages GROUP BY status")).all())
        counts["events pending"] = conn.execute(sa.text("SELECT COUNT(*) FROM outbox_events WHERE dispatched_at IS NULL")).scalar_one()
    return counts


@pytest.mark.slow
def test_sigkilled_workers_deliver_every_message_exactly_once_by_message_id(tmp_path):
    rng = random.Random(SEED)
    log = tmp_path / "worker.log"
    # 3 ms per message at the server: like a real relay, and it keeps the run long enough for
    # five kills on a fast machine.
    with SmtpSink(delay=0.003) as sink:
        config = write_config(tmp_path, sink)
        began = time.monotonic()
        ids = queue_messages(config)
        queued_in = time.monotonic() - began
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}")
        kills_mid_send = 0
        try:
            for _kill in range(KILLS):
                worker = start_worker(config, log)
                before = len(sink.deliveries)
                # Kill only once this worker is sending, so every kill can land mid-transaction.
                wait_until(lambda w=worker, n=before: len(sink.deliveries) > n or w.poll() is not None, 180, "the worker to send")
                assert worker.poll() is None, log.read_text()
                time.sleep(rng.uniform(0.2, 1.5))
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=30)
                assert worker.returncode == -signal.SIGKILL
                state = queue_state(engine)
                kills_mid_send += state.get("queued", 0) + state.get("retrying", 0) + state.get("handing_over", 0) > 0

            worker = start_worker(config, log)
            try:
                wait_for_drain(engine, worker, log)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
            assert worker.returncode == 0, log.read_text()[-3000:]
        finally:
            engine.dispose()
        deliveries = list(sink.deliveries)
        sent_in = time.monotonic() - began - queued_in

    assert kills_mid_send == KILLS, "every kill must interrupt a worker with messages left to send"
    by_id = Counter(d.message_id for d in deliveries)
    expected = {f"<{message_id}@shop.example>" for message_id in ids}
    with crmkit.open(config, dispatch_inline=False) as crm:
        assert queue_state(crm.backend.engine) == {"sent": MESSAGES, "events pending": 0}  # nothing queued, leased, retrying or dead
        assert crm.messages.dead_letters() == []
        with crm.read() as uow:
            rows = uow.connection.execute(sa.text("SELECT id, provider_message_id, attempts, ambiguous FROM messages")).all()
            sent_activities = uow.connection.execute(sa.text("SELECT COUNT(*) FROM activities WHERE kind = 'email.sent'")).scalar_one()
    ambiguous = {f"<{row.id}@shop.example>": row.ambiguous for row in rows if row.ambiguous}
    copies = len(deliveries) - len(by_id)
    print(f"\nfault test (seed {SEED}): {len(deliveries)} deliveries, {len(by_id)} distinct Message-IDs, {KILLS} kills; "
          f"{len(ambiguous)} message(s) recorded as ambiguous, {copies} extra copies (all of them of ambiguous messages); "
          f"queued in {queued_in:.0f} s, sent in {sent_in:.0f} s")
    assert set(by_id) == expected and len(by_id) == MESSAGES  # every message arrived, nothing else did
    duplicated = {message_id: n for message_id, n in by_id.items() if n > 1 and message_id not in ambiguous}
    assert duplicated == {}, "messages delivered twice that the worker did not record as ambiguous"
    assert all(by_id[message_id] <= 1 + n for message_id, n in ambiguous.items())
    assert len(ambiguous) <= KILLS  # one hand-over in flight per worker, one worker per kill
    # Each copy is the same message: same recipient, same content apart from the Date header.
    for message_id, count in by_id.items():
        if count > 1:
            same = [d for d in deliveries if d.message_id == message_id]
            assert len({d.rcpt_tos for d in same}) == 1
            assert len({b"".join(line for line in d.raw.splitlines(True) if not line.startswith(b"Date:")) for d in same}) == 1
    # An ambiguous message was tried once more than it was sent; every other one once.
    assert all(row.provider_message_id == f"<{row.id}@shop.example>" and row.attempts == 1 + row.ambiguous for row in rows)
    assert sent_activities == MESSAGES  # one "sent" on each timeline, however often a message was tried
