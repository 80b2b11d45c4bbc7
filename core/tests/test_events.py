"""The outbox: events commit with their writes, subscribers are called after commit, failures
are recorded and retried per subscriber, and concurrent dispatchers deliver each event once."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import sqlalchemy as sa
from crmkit.domain.values import utcnow
from crmkit.errors import CRMError
from crmkit.events import MAX_ATTEMPTS, backoff
from crmkit.plugins import hookimpl


class Subscriber:
    """Records what it is handed; raises while ``failing`` is set."""

    def __init__(self, name: str, failing: bool = False):
        self.crmkit_plugin_name = name
        self.failing = failing
        self.seen: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()

    @hookimpl
    def crmkit_handle_event(self, event):
        with self.lock:
            self.calls += 1
        if self.failing:
            raise RuntimeError(f"{self.crmkit_plugin_name} is down")
        with self.lock:
            self.seen.append(event.id)


class Welcomer:
    """Reacts to a new contact by writing to the CRM from inside the subscriber."""

    crmkit_plugin_name = "welcomer"

    @hookimpl
    def crmkit_handle_event(self, event, crm):
        if event.type == "contact.created":
            crm.activities.log({"kind": "email.sent", "contact_id": event.subject_id, "subject": "Welcome"})


class CustomEvents:
    crmkit_plugin_name = "custom-events"

    @hookimpl
    def crmkit_register_event_types(self, register):
        register("loyalty.earned", "a contact earned loyalty points")


def outbox_rows(crm) -> list:
    with crm.read() as uow:
        t = uow.table("outbox_events")
        return list(uow.connection.execute(sa.select(t).order_by(t.c.seq)))


def deliveries(crm) -> dict[str, object]:
    with crm.read() as uow:
        t = uow.table("event_deliveries")
        return {row.subscriber: row for row in uow.connection.execute(sa.select(t))}


def test_events_commit_with_their_writes_and_only_then(database_url, crm_factory, events):
    crm = crm_factory(database_url, plugins=[CustomEvents()])

    with pytest.raises(RuntimeError, match="after the writes"), crm.uow() as uow:
        crm.contacts.create_in(uow, {"first_name": "Ghost"})
        uow.emit("loyalty.earned", None, {"points": 5})
        raise RuntimeError("fails after the writes")
    assert crm.contacts.count() == 0
    assert outbox_rows(crm) == []
    assert events.events == []

    contact = crm.contacts.create({"first_name": "Ada", "last_name": "Lovelace"})
    [row] = outbox_rows(crm)
    assert (row.type, row.subject_id, row.data["first_name"]) == ("contact.created", contact.id, "Ada")
    assert row.dispatched_at is not None  # dispatched inline, right after the commit
    assert events.types() == ["contact.created"]
    assert events.events[0].id == row.id

    with pytest.raises(CRMError, match="'nope.happened' is not registered"), crm.uow() as uow:
        crm.contacts.create_in(uow, {"first_name": "Half"})
        uow.emit("nope.happened", contact.id)
    assert crm.contacts.count() == 1 and len(outbox_rows(crm)) == 1


def test_a_failing_subscriber_is_retried_alone_until_it_succeeds(database_url, crm_factory):
    good, bad = Subscriber("good"), Subscriber("bad", failing=True)
    crm = crm_factory(database_url, plugins=[good, bad])
    before = utcnow()

    contact = crm.contacts.create({"email": "ada@example.com"})  # does not raise

    assert crm.contacts.get(contact.id).email == "ada@example.com"  # the write stands
    [event] = outbox_rows(crm)
    assert good.seen == [event.id]
    status = deliveries(crm)
    assert (status["bad"].status, status["bad"].attempts) == ("failed", 1)
    assert status["bad"].last_error == "RuntimeError: bad is down"
    assert before + backoff(1) <= status["bad"].next_attempt_at <= utcnow() + backoff(1)
    assert status["good"].status == "ok"
    assert event.dispatched_at is None and event.next_attempt_at == status["bad"].next_attempt_at
    [failure] = crm.events.failures()
    assert (failure["subscriber"], failure["type"], failure["status"]) == ("bad", "contact.created", "failed")

    # Not due yet: nothing happens.
    assert crm.events.drain().dispatched == 0 and bad.calls == 1

    # Due, still failing: a second attempt, a longer wait.
    later = utcnow() + backoff(1) + timedelta(seconds=1)
    report = crm.events.drain(now=later)
    assert (report.dispatched, report.failed) == (0, 1)
    assert deliveries(crm)["bad"].attempts == 2
    assert deliveries(crm)["bad"].next_attempt_at == later + backoff(2)

    # Recovered: only the failed subscriber is called again, and the event is done.
    bad.failing = False
    report = crm.events.drain(now=later + backoff(2))
    assert report.dispatched == 1
    assert good.seen == [event.id] and good.calls == 1
    assert bad.seen == [event.id] and bad.calls == 3
    assert deliveries(crm)["bad"].status == "ok"
    assert crm.events.failures() == []
    assert crm.events.counts() == {"total": 1, "pending": 0, "dispatched": 1}
    assert crm.events.drain(now=later + timedelta(days=30)).dispatched == 0


def test_a_subscriber_that_keeps_failing_ends_dead(crm_factory):
    bad = Subscriber("bad", failing=True)
    crm = crm_factory(plugins=[bad])
    crm.contacts.create({"first_name": "Ada"})

    now = utcnow()
    for attempt in range(2, MAX_ATTEMPTS + 1):
        now += backoff(attempt - 1)
        crm.events.drain(now=now)
    assert bad.calls == MAX_ATTEMPTS

    [failure] = crm.events.failures()
    assert (failure["status"], failure["attempts"], failure["next_attempt_at"]) == ("dead", MAX_ATTEMPTS, None)
    assert failure["last_error"] == "RuntimeError: bad is down"
    assert crm.events.counts()["pending"] == 0  # given up on, not retried forever
    crm.events.drain(now=now + timedelta(days=365))
    assert bad.calls == MAX_ATTEMPTS


def test_subscribers_may_write_to_the_crm(crm_factory, events):
    crm = crm_factory(plugins=[Welcomer()])
    contact = crm.contacts.create({"first_name": "Ada"})
    [welcome] = crm.activities.for_contact(contact.id)
    assert welcome.subject == "Welcome"
    assert sorted(events.types()) == ["activity.logged", "contact.created"]


def test_workers_drain_the_outbox_concurrently_delivering_each_event_once(database_url, crm_factory):
    writer = crm_factory(database_url, dispatch_inline=False)
    for _ in writer.intake.submit_many(writer.intake.record({"email": f"p{i}@example.com"}) for i in range(60)):
        pass
    contact = writer.contacts.create({"first_name": "Late"})
    assert writer.events.counts() == {"total": 61, "pending": 61, "dispatched": 0}
    pending = writer.events.pending_ids()
    assert len(pending) == 61

    # Two workers (separate CRMs, as separate processes would be) with the same subscribers
    # drain in small batches at the same time.
    subscribers = [(Subscriber("mailer"), Subscriber("webhooks")) for _ in range(2)]
    workers = [crm_factory(database_url, plugins=pair, migrate=False) for pair in subscribers]
    barrier = threading.Barrier(2)

    def drain(worker) -> int:
        barrier.wait()
        done = 0
        while (batch := worker.events.drain(limit=5).dispatched) > 0:
            done += batch
        return done

    with ThreadPoolExecutor(2) as pool:
        drained = list(pool.map(drain, workers))
    assert sum(drained) == 61

    for index, name in enumerate(("mailer", "webhooks")):
        delivered = Counter(event_id for pair in subscribers for event_id in pair[index].seen)
        assert set(delivered) == set(pending), name
        assert set(delivered.values()) == {1}, f"{name}: some events were delivered twice"
    assert writer.events.counts() == {"total": 61, "pending": 0, "dispatched": 61}
    assert outbox_rows(writer)[-1].subject_id == contact.id


def test_a_dispatch_that_breaks_after_commit_does_not_fail_the_write(crm_factory, caplog):
    """Dispatching happens after the commit; if it breaks (here: recording a subscriber's
    failure hits a missing table) the caller must still hear that its write succeeded, and
    the event must still be delivered later."""
    bad = Subscriber("bad", failing=True)
    crm = crm_factory(plugins=[bad])
    with crm.backend.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE event_deliveries RENAME TO event_deliveries_away")

    contact = crm.contacts.create({"first_name": "Ada"})

    assert crm.contacts.get(contact.id).first_name == "Ada"
    assert "stay in the outbox" in caplog.text
    assert crm.events.counts()["pending"] == 1
    with crm.backend.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE event_deliveries_away RENAME TO event_deliveries")
    bad.failing = False
    assert crm.events.drain(now=utcnow() + timedelta(hours=1)).dispatched == 1
    assert len(bad.seen) == 1
