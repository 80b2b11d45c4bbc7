"""``crmkit worker`` / :class:`crmkit.worker.Worker`: drains the outbox and the send jobs, stops
gracefully (the job in hand finishes, unstarted claims go back to the queue), honours --once and
--max-jobs, and several workers share one queue without sending anything twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from crmkit import hookimpl
from crmkit.channels import Capabilities, OutboundMessage, SendResult
from crmkit.cli import build_cli
from crmkit.worker import Worker


class PigeonChannel:
    """A real channel delivering into a list; ``on_send`` runs inside each send."""

    name = "pigeon"
    capabilities = Capabilities(subject=False)

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []
        self.on_send: Any = None
        self.closed = 0
        self.lock = threading.Lock()

    def address_for(self, contact: Any) -> str | None:
        return contact.email

    def send(self, message: OutboundMessage) -> SendResult:
        if self.on_send is not None:
            self.on_send(message)
        with self.lock:
            self.sent.append(message)
        return SendResult.sent(f"pigeon-{message.id}")

    def parse_inbound(self, payload: Any) -> list[Any]:
        return []

    def parse_callback(self, payload: Any) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed += 1


class PigeonPlugin:
    crmkit_plugin_name = "pigeon-post"

    def __init__(self) -> None:
        self.channel = PigeonChannel()

    @hookimpl
    def crmkit_register_channels(self, register: Any) -> None:
        register(self.channel)


def queue(crm: Any, count: int) -> list[str]:
    ids = []
    for i in range(count):
        contact = crm.contacts.create({"first_name": f"P{i}", "email": f"p{i}@example.org"})
        ids.append(crm.messages.send(contact.id, "pigeon", body=f"Coo {i}", purpose="transactional", idempotency_key=f"coo-{i}")["id"])
    return ids


@pytest.fixture
def pigeon() -> PigeonPlugin:
    return PigeonPlugin()


@pytest.fixture
def queued_crm(crm_factory, pigeon):
    return crm_factory(plugins=[pigeon], dispatch_inline=False)


def test_once_drains_events_and_messages_then_closes_channels(queued_crm, pigeon, events):
    ids = queue(queued_crm, 5)
    assert pigeon.channel.sent == [] and events.types() == []
    stats = Worker(queued_crm, batch=2).run(once=True)
    assert sorted(m.id for m in pigeon.channel.sent) == sorted(ids)
    assert stats.sent == 5 and stats.events >= 10  # 5 contact.created + 5 message.queued (+ the sends' own events)
    assert queued_crm.events.counts()["pending"] == 0
    assert {queued_crm.messages.get(i)["status"] for i in ids} == {"sent"}
    assert "message.sent" in events.types()  # the worker's own writes' events were drained too
    assert pigeon.channel.closed >= 1


def test_stopping_finishes_the_job_in_hand_and_hands_the_rest_back(queued_crm, pigeon):
    ids = queue(queued_crm, 6)
    queued_crm.events.drain()
    worker = Worker(queued_crm, batch=10)
    pigeon.channel.on_send = lambda message: worker.stop()  # SIGTERM arriving during the first send
    stats = worker.run()
    assert len(pigeon.channel.sent) == 1 and stats.sent == 1 and stats.released == 5
    m = queued_crm.messages.table("messages")
    with queued_crm.read() as uow:
        rows = uow.connection.execute(sa.select(m.c.status, m.c.next_attempt_at).where(m.c.id.in_(ids))).all()
    assert sorted(r.status for r in rows) == ["queued"] * 5 + ["sent"]
    assert all(r.next_attempt_at is None for r in rows)  # due again now, not after the lease
    pigeon.channel.on_send = None
    assert Worker(queued_crm).run(once=True).sent == 5


def test_max_jobs_bounds_a_run(queued_crm, pigeon):
    queue(queued_crm, 4)
    queued_crm.events.drain()
    stats = Worker(queued_crm, batch=50).run(max_jobs=3)
    assert stats.sent == 3 and stats.jobs == 3
    assert len(queued_crm.messages.list(status="queued")) == 1


def test_the_lease_is_the_workers(queued_crm):
    Worker(queued_crm, lease=timedelta(seconds=7))
    assert queued_crm.events.lease == queued_crm.messages.jobs.lease == timedelta(seconds=7)


def test_concurrent_workers_send_each_message_once(any_crm, crm_factory, pigeon):
    url = any_crm.config.database_url
    crms = [crm_factory(url, plugins=[pigeon], dispatch_inline=False) for _ in range(3)]
    ids = queue(crms[0], 30)
    workers = [Worker(crm, batch=4, interval=0.01) for crm in crms]
    threads = [threading.Thread(target=w.run, kwargs={"once": True}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    sent = [m.id for m in pigeon.channel.sent]
    assert sorted(sent) == sorted(ids) and len(sent) == len(set(sent))
    assert sum(w.stats.sent for w in workers) == 30


def test_the_cli_runs_once_and_reports(tmp_path, pigeon):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    import crmkit

    with crmkit.open(url, plugins=[pigeon], migrate=True, dispatch_inline=False) as crm:
        queue(crm, 3)
    result = CliRunner().invoke(build_cli(plugins=[pigeon]), ["--database", url, "worker", "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert '"sent": 3' in result.stdout and len(pigeon.channel.sent) == 3


def test_sigterm_stops_the_worker_process_gracefully(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    import crmkit

    with crmkit.open(url, migrate=True, dispatch_inline=False) as crm:
        crm.contacts.create({"first_name": "Ada", "email": "ada@example.org"})
    process = subprocess.Popen([sys.executable, "-m", "crmkit", "--database", url, "worker", "--interval", "0.05"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with crmkit.open(url) as crm:
            deadline = time.monotonic() + 180  # generous: a loaded CI machine starts Python slowly
            while crm.events.counts()["pending"] and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.05)
            assert process.poll() is None, process.communicate()[1]
            assert crm.events.counts()["pending"] == 0  # the running worker dispatched it
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "SIGTERM: stopping after the current job" in err
    assert "Worker done: 1 event(s) dispatched" in out
