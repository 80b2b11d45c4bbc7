"""``crmkit worker --mode redis``: relays and huey workers sharing the outbox through the real
Redis on this machine, with the database as the store.

Every delivery is written by a recording subscriber and channel to a log file (one line per
delivery, keyed by event id / idempotency key), so "exactly once" is counted, not assumed. The
in-process tests run on every database backend; the multi-process ones (real subprocesses,
SIGKILL) on PostgreSQL, the store the scale-out mode is for. Each test has its own Redis queue
name and deletes only its own keys.

Run as a script, this module is the ``crmkit`` command line with the recording plugin, which is
how the worker subprocesses get it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from crmkit import hookimpl
from crmkit.channels import Capabilities, OutboundMessage, SendResult
from crmkit.domain.values import utcnow
from crmkit.testing import create_server_database, in_ci

REDIS_URL = os.environ.get("CRMKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LOG_ENV = "CRMKIT_TEST_DELIVERY_LOG"
DELAY_ENV = "CRMKIT_TEST_DELIVERY_DELAY"


# --- the recording plugin -----------------------------------------------------------------


class LedgerChannel:
    """A channel that appends ``message <idempotency key>`` to the log for every send. A body
    starting with ``permanent`` or ``transient`` fails that way instead."""

    name = "ledger"
    capabilities = Capabilities(subject=False)

    def __init__(self, log: DeliveryLog):
        self.log = log
        self.on_send: Any = None  # called inside each send (e.g. a SIGTERM arriving meanwhile)

    def address_for(self, contact: Any) -> str | None:
        return contact.email

    def send(self, message: OutboundMessage) -> SendResult:
        if message.body.startswith("permanent"):
            return SendResult.permanent("mailbox does not exist")
        if message.body.startswith("transient"):
            return SendResult.transient("try again later")
        if self.on_send is not None:
            self.on_send()
        self.log.write("message", message.idempotency_key)
        return SendResult.sent(f"ledger-{message.id}")

    def parse_inbound(self, payload: Any) -> list[Any]:
        return []

    def parse_callback(self, payload: Any) -> list[Any]:
        return []


class DeliveryLog:
    """Records every event handed to it and every message sent through its channel, one line
    each, appended with O_APPEND so concurrent processes never interleave a line. Events of
    contacts named ``Fail`` raise instead."""

    crmkit_plugin_name = "test-delivery-log"

    def __init__(self, path: Path, delay: float = 0.0):
        self.path = path
        self.delay = delay
        self.channel = LedgerChannel(self)

    def write(self, kind: str, key: str) -> None:
        if self.delay:
            time.sleep(self.delay)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{kind} {key} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    @hookimpl
    def crmkit_handle_event(self, event: Any) -> None:
        if event.type == "contact.created" and event.data.get("first_name") == "Fail":
            raise RuntimeError("this subscriber refuses Fail")
        self.write("event", event.id)

    @hookimpl
    def crmkit_register_channels(self, register: Any) -> None:
        register(self.channel)

    def pids(self) -> set[int]:
        """The processes that delivered something."""
        return {int(line.split()[2]) for line in self.path.read_text().splitlines()} if self.path.exists() else set()

    def counts(self, kind: str) -> Counter[str]:
        if not self.path.exists():
            return Counter()
        return Counter(line.split()[1] for line in self.path.read_text().splitlines() if line.startswith(kind + " "))


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    redis = pytest.importorskip("redis", reason="crmkit[redis] is not installed")
    pytest.importorskip("huey", reason="crmkit[redis] is not installed")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        message = f"Redis at {REDIS_URL} is not usable: {type(exc).__name__}: {exc}"
        if in_ci():
            pytest.fail(f"CI=true requires Redis; {message}")
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture
def queue_name(redis_url: str) -> Any:
    """A queue of this test's own; afterwards its keys (and only its keys) are deleted."""
    import redis

    name = f"crmkittest{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"huey.*.{name}"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def log(tmp_path: Path) -> DeliveryLog:
    return DeliveryLog(tmp_path / "deliveries.log")


def queue_work(crm: Any, contacts: int, messages: int, *, body: str = "Hello {i}", prefix: str = "m") -> list[str]:
    """``contacts`` contact.created events, plus ``messages`` messages (each with its own
    contact); returns the messages' idempotency keys."""
    for i in range(contacts):
        crm.contacts.create({"first_name": f"C{i}", "email": f"c{i}@example.org"})
    keys = []
    for i in range(messages):
        contact = crm.contacts.create({"first_name": f"M{i}", "email": f"{prefix}{i}@example.org"})
        keys.append(f"{prefix}-{i}")
        crm.messages.send(contact.id, "ledger", body=body.format(i=i), purpose="transactional", idempotency_key=keys[-1])
    return keys


def outbox_ids(crm: Any) -> set[str]:
    with crm.read() as uow:
        return set(uow.connection.execute(sa.select(crm.events.outbox.c.id)).scalars())


def message_statuses(crm: Any) -> Counter[str]:
    table = crm.messages.jobs.table
    with crm.read() as uow:
        return Counter(uow.connection.execute(sa.select(table.c.status)).scalars())


def redis_worker(crm: Any, opener: Any, redis_url: str, queue_name: str, **options: Any) -> Any:
    from crmkit.taskqueue.runner import RedisWorker

    options = {"interval": 0.05, "batch": 7, "task_size": 3, **options}
    return RedisWorker(crm, opener, redis_url=redis_url, queue_name=queue_name, **options)


# --- in process, every backend ------------------------------------------------------------


def test_a_relay_and_worker_threads_deliver_every_event_and_message_once(database_url, crm_factory, log, redis_url, queue_name):
    crm = crm_factory(database_url, plugins=[log], dispatch_inline=False)
    keys = queue_work(crm, 12, 8)
    runner = redis_worker(crm, lambda: crm_factory(database_url, plugins=[log], dispatch_inline=False, migrate=False), redis_url, queue_name,
                          relay=True, workers=3)
    runner.run(once=True)

    assert message_statuses(crm) == {"sent": 8}
    assert crm.events.counts()["pending"] == 0
    events = log.counts("event")
    assert set(events) == outbox_ids(crm)  # every event, including the workers' own message.sent
    assert max(events.values()) == 1
    assert log.counts("message") == Counter({key: 1 for key in keys})
    stats = runner.stats()
    assert stats["sent"] == 8 and stats["events"] == len(events) and stats["relay"]["messages"] == 8
    assert runner.queue.pending() == 0


def test_a_task_delivered_twice_is_executed_once(database_url, crm_factory, log, redis_url, queue_name):
    import redis
    from crmkit.taskqueue.huey_queue import TaskQueue
    from crmkit.taskqueue.relay import Relay

    crm = crm_factory(database_url, plugins=[log], dispatch_inline=False)
    keys = queue_work(crm, 5, 4)
    queue = TaskQueue(redis_url, queue_name)
    relay = Relay(crm, queue, batch=100, task_size=2)
    queued_events = outbox_ids(crm)
    assert relay.run_pass() == len(queued_events) + 4
    client = redis.Redis.from_url(redis_url)
    key = f"huey.redis.{queue_name}"
    tasks = client.lrange(key, 0, -1)
    client.lpush(key, *tasks)  # every task delivered a second time, byte for byte
    assert queue.pending() == 2 * len(tasks)
    client.close()

    runner = redis_worker(crm, lambda: crm_factory(database_url, plugins=[log], dispatch_inline=False, migrate=False), redis_url, queue_name,
                          relay=False, workers=2)
    runner.run(once=True)
    assert log.counts("message") == Counter({key: 1 for key in keys})
    events = log.counts("event")
    assert set(events) == queued_events and max(events.values()) == 1
    assert runner.stats()["skipped"] == len(queued_events) + 4  # each duplicate found its rows already taken
    assert message_statuses(crm) == {"sent": 4}


def test_a_failing_subscriber_and_failing_sends_end_in_the_database_retry_and_dead_states(database_url, crm_factory, log, redis_url, queue_name):
    from crmkit.events import MAX_ATTEMPTS

    crm = crm_factory(database_url, plugins=[log], dispatch_inline=False)
    failing = crm.contacts.create({"first_name": "Fail", "email": "fail@example.org"})
    queue_work(crm, 0, 1, body="transient {i}", prefix="t")
    queue_work(crm, 0, 1, body="permanent {i}", prefix="p")
    opener = lambda: crm_factory(database_url, plugins=[log], dispatch_inline=False, migrate=False)  # noqa: E731
    before = time.time()
    redis_worker(crm, opener, redis_url, queue_name, relay=True, workers=2).run(once=True)

    o, d = crm.events.outbox.c, crm.events.deliveries.c
    with crm.read() as uow:
        event = uow.connection.execute(sa.select(o.id, o.dispatched_at, o.next_attempt_at).where(o.subject_id == failing.id, o.type == "contact.created")).one()
        delivery = uow.connection.execute(sa.select(crm.events.deliveries).where(d.event_id == event.id, d.subscriber == "test-delivery-log")).one()
    assert event.dispatched_at is None and delivery.status == "failed" and delivery.attempts == 1
    assert "refuses Fail" in delivery.last_error
    assert event.next_attempt_at.timestamp() >= before + 9  # backoff: 10 s, a due time in the database
    m = crm.messages.jobs.table.c
    with crm.read() as uow:
        rows = {r.body.split()[0]: r for r in uow.connection.execute(sa.select(m.body, m.status, m.attempts, m.next_attempt_at))}
    assert rows["permanent"].status == "dead" and rows["permanent"].next_attempt_at is None
    assert rows["transient"].status == "retrying" and rows["transient"].attempts == 1
    assert rows["transient"].next_attempt_at.timestamp() >= before + 9

    # Not due yet: a relay leaves them alone (and Redis holds no delayed copy either).
    from crmkit.taskqueue.huey_queue import TaskQueue
    from crmkit.taskqueue.relay import Relay

    queue, started = TaskQueue(redis_url, queue_name), utcnow()
    claimed = Relay(crm, queue).run_pass()
    if started < min(event.next_attempt_at, rows["transient"].next_attempt_at):  # a machine slower than the 10 s backoff can't tell
        assert claimed == 0 and queue.pending() == 0

    # The last attempt comes due: the failure is recorded as dead, in the database.
    with crm.backend.engine.begin() as conn:
        conn.execute(sa.update(crm.events.deliveries).where(d.event_id == event.id, d.status == "failed").values(attempts=MAX_ATTEMPTS - 1, next_attempt_at=utcnow() - timedelta(seconds=1)))
        conn.execute(sa.update(crm.events.outbox).where(o.id == event.id).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    redis_worker(crm, opener, redis_url, queue_name, relay=True, workers=1).run(once=True)
    with crm.read() as uow:
        delivery = uow.connection.execute(sa.select(crm.events.deliveries).where(d.event_id == event.id, d.subscriber == "test-delivery-log")).one()
        dispatched = uow.connection.execute(sa.select(o.dispatched_at).where(o.id == event.id)).scalar_one()
    assert delivery.status == "dead" and delivery.attempts == MAX_ATTEMPTS and dispatched is not None
    assert {f["event_id"] for f in crm.events.failures() if f["status"] == "dead"} == {event.id}


def test_nothing_is_claimed_while_redis_is_down_and_a_failed_enqueue_releases_its_rows(crm_factory, log, redis_url, queue_name, monkeypatch):
    import redis
    from crmkit.taskqueue.huey_queue import TaskQueue
    from crmkit.taskqueue.relay import Relay

    crm = crm_factory(plugins=[log], dispatch_inline=False)
    queue_work(crm, 3, 0)
    unreachable = Relay(crm, TaskQueue("redis://127.0.0.1:1/0", "crmkitnowhere"), batch=10)
    with pytest.raises(redis.ConnectionError):
        unreachable.run_pass()
    assert len(crm.events.pending_ids()) == 3  # the backlog check failed before anything was claimed

    relay = Relay(crm, TaskQueue(redis_url, queue_name), batch=10, task_size=2)
    sent = []

    def enqueue_then_fail(data: bytes, priority: Any = None) -> None:
        if sent:
            raise redis.ConnectionError("Redis went away")  # the second task of the pass
        sent.append(data)

    monkeypatch.setattr(relay.queue.huey.storage, "enqueue", enqueue_then_fail)
    with pytest.raises(redis.ConnectionError):
        relay.run_pass()
    assert relay.stats.released == 1
    assert len(crm.events.pending_ids()) == 1  # due again now, not after a 5-minute lease; 2 rode the first task


def test_stopping_finishes_the_message_in_hand_and_hands_the_rest_of_its_task_back(crm_factory, log, redis_url, queue_name):
    crm = crm_factory(plugins=[log], dispatch_inline=False)
    keys = queue_work(crm, 0, 5)
    crm.events.drain()
    runner = redis_worker(crm, lambda: crm_factory(crm.config.database_url, plugins=[log], dispatch_inline=False, migrate=False),
                          redis_url, queue_name, relay=True, workers=1, task_size=5)
    log.channel.on_send = runner.stop  # SIGTERM during the first send
    runner.run()
    stats = runner.stats()
    assert stats["sent"] == 1 and stats["released"] == 4 and len(log.counts("message")) == 1
    m = crm.messages.jobs.table.c
    with crm.read() as uow:
        rows = uow.connection.execute(sa.select(m.status, m.next_attempt_at)).all()
    assert sorted(r.status for r in rows) == ["queued"] * 4 + ["sent"]
    assert all(r.next_attempt_at is None for r in rows)  # due again now, not after the lease
    log.channel.on_send = None
    redis_worker(crm, lambda: crm_factory(crm.config.database_url, plugins=[log], dispatch_inline=False, migrate=False),
                 redis_url, queue_name, relay=True, workers=1).run(once=True)
    assert log.counts("message") == Counter({key: 1 for key in keys})


# --- configuration and the command line ---------------------------------------------------


def test_the_cli_runs_redis_mode_from_the_config(tmp_path, log, redis_url, queue_name, monkeypatch):
    import crmkit
    from click.testing import CliRunner
    from crmkit.cli import build_cli

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    with crmkit.open(url, plugins=[log], migrate=True, dispatch_inline=False) as crm:
        keys = queue_work(crm, 2, 2)
    config = tmp_path / "crmkit.toml"
    config.write_text(f'[crmkit]\ndatabase = "{url}"\n\n[plugins.worker]\nmode = "redis"\nredis_url = "${{REDIS_URL}}"\n'
                      f'queue_name = "{queue_name}"\n')
    monkeypatch.setenv("REDIS_URL", redis_url)
    result = CliRunner().invoke(build_cli(plugins=[log]), ["worker", "--config", str(config), "--relay", "--workers", "2",
                                                           "--once", "--interval", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    assert '"sent": 2' in result.stdout and '"relay"' in result.stdout
    assert log.counts("message") == Counter({key: 1 for key in keys})


@pytest.mark.parametrize(("toml", "error"), [
    ('mode = "celery"', "[plugins.worker].mode"),
    ('mode = "redis"\nqueue_name = "crm-prod"', "[plugins.worker] queue_name: must be lower-case letters and digits"),
    ('redis_url = "${NO_SUCH_VARIABLE_HERE}"', "NO_SUCH_VARIABLE_HERE is not set"),
])
def test_bad_worker_settings_are_named(tmp_path, toml, error):
    import crmkit
    from click.testing import CliRunner
    from crmkit.cli import build_cli

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    crmkit.open(url, migrate=True).close()
    config = tmp_path / "crmkit.toml"
    config.write_text(f'[crmkit]\ndatabase = "{url}"\n\n[plugins.worker]\n{toml}\n')
    result = CliRunner().invoke(build_cli(), ["worker", "--config", str(config), "--once"])
    assert result.exit_code != 0 and error in result.output, result.output


def test_redis_options_are_refused_in_inline_mode(cli):
    result = cli("worker", "--once", "--relay")
    assert result.exit_code == 2 and "--relay apply to --mode redis only" in result.output
    result = cli("worker", "--once", "--mode", "redis", "--workers", "0")
    assert result.exit_code == 2 and "add --relay" in result.output


# --- real processes on PostgreSQL ---------------------------------------------------------


def spawn(url: str, log: DeliveryLog, queue_name: str, redis_url: str, *args: str, lease: float) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--database", url, "worker", "--mode", "redis", "--redis-url", redis_url,
               "--queue-name", queue_name, "--interval", "0.1", "--batch", "20", "--task-size", "4", "--lease", str(lease), *args]
    env = {**os.environ, LOG_ENV: str(log.path), DELAY_ENV: str(log.delay), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition: Any, processes: list[subprocess.Popen[str]], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout  # generous: a loaded CI machine starts Python slowly
    while not condition():
        for process in processes:
            if process.poll() is not None and process.returncode not in (0, -signal.SIGKILL):
                pytest.fail(f"worker exited with {process.returncode}: {process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the workers did not drain the outbox in time")
        time.sleep(0.1)


@pytest.fixture
def pg_url() -> Any:
    url, drop = create_server_database("postgresql")
    try:
        yield url
    finally:
        drop()


@pytest.mark.parametrize("kill", [False, True], ids=["no-kill", "sigkill-one-worker"])
def test_worker_processes_share_a_postgresql_outbox_through_redis(pg_url, crm_factory, tmp_path, redis_url, queue_name, kill):
    """Two relays and three worker processes (two threads each) drain 180 events and 40
    messages. Without kills every event and message is delivered exactly once. With one worker
    SIGKILLed mid-run nothing is lost; the only copies are of rows that worker had in hand
    (at most threads × task size), redelivered once their lease ran out."""
    log = DeliveryLog(tmp_path / "deliveries.log", delay=0.01)
    crm = crm_factory(pg_url, plugins=[log], dispatch_inline=False)
    keys = queue_work(crm, 60, 40)
    lease = 4.0 if kill else 60.0
    workers = [spawn(pg_url, log, queue_name, redis_url, "--workers", "2", lease=lease) for _ in range(3)]
    for worker in workers:  # every worker is up before the relays start handing out work
        assert "redis: 2 worker thread(s)" in worker.stdout.readline()  # type: ignore[union-attr]
    relays = [spawn(pg_url, log, queue_name, redis_url, "--relay", "--workers", "0", lease=lease) for _ in range(2)]
    processes = relays + workers
    try:
        if kill:
            # Mid-run, and the victim is working (it has delivered something): then SIGKILL.
            wait_for(lambda: workers[0].pid in log.pids() and sum(log.counts("event").values()) >= 50, processes)
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(timeout=30)
        wait_for(lambda: crm.events.counts()["pending"] == 0 and message_statuses(crm) == {"sent": 40}, processes)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_out, err) in zip(processes, outputs, strict=True):
        if process is not workers[0] or not kill:
            assert process.returncode == 0, err[-3000:]
            assert "SIGTERM: stopping after the current job" in err

    events, messages = log.counts("event"), log.counts("message")
    assert set(events) == outbox_ids(crm) and set(messages) == set(keys)  # nothing lost
    copies = sum(events.values()) - len(events) + sum(messages.values()) - len(messages)
    if kill:
        assert copies <= 2 * 4, (copies, events.most_common(3), messages.most_common(3))
        print(f"\nSIGKILL run: {len(events)} events, {len(messages)} messages, {copies} redelivered cop(ies)")
    else:
        assert copies == 0, (events.most_common(3), messages.most_common(3))
        worked = [int(out.split("dispatched")[0].split()[-2]) for out, _ in outputs[len(relays):]]
        assert all(worked), f"every worker process took part: {worked}"


if __name__ == "__main__":  # the crmkit command line with the recording plugin, for the subprocesses
    from crmkit.cli import build_cli

    plugin = DeliveryLog(Path(os.environ[LOG_ENV]), delay=float(os.environ.get(DELAY_ENV, "0")))
    build_cli(plugins=[plugin]).main(sys.argv[1:], prog_name="crmkit")
