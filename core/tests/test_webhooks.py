"""Outbound webhooks against a real HTTP receiver on 127.0.0.1: signatures, retries with
backoff until a failing receiver recovers (each event accepted exactly once), 410 disabling,
timeouts, redelivery, the CLI and personal-data rights.

Retries are made due by passing a later ``now`` to the runner instead of sleeping; only the
timeout test waits, for the client's (short) timeout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from crmkit.builtin.webhooks.delivery import BASE_DELAY, MAX_ATTEMPTS, MAX_DELAY, backoff
from crmkit.builtin.webhooks.signing import HEADER, sign, verify_signature
from crmkit.domain.values import utcnow
from crmkit.errors import CRMError, NotFound, ValidationFailed

LATER = MAX_DELAY + timedelta(hours=1)  # further than any retry delay: every pending delivery is due


@attrs.define
class Request:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver in a thread. ``answers`` is consumed one status per request
    (then ``default``); a negative status means "sleep that many seconds, then answer 200"."""

    def __init__(self) -> None:
        self.answers: list[float] = []
        self.default = 200
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    answer = receiver.answers.pop(0) if receiver.answers else receiver.default
                if answer < 0:
                    time.sleep(-answer)
                    answer = 200
                with receiver.lock:
                    receiver.requests.append(Request(int(answer), dict(self.headers), body))
                self.send_response(int(answer))
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"nope :(" if answer >= 300 else b"thanks!")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def accepted(self) -> list[str]:
        """Event ids of the requests answered 2xx, in order."""
        return [r.payload["id"] for r in self.requests if 200 <= r.status < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def write_config(tmp_path: Path, database_url: str, **settings: Any) -> str:
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    path = tmp_path / "crmkit.toml"
    path.write_text(f'[crmkit]\ndatabase = "{database_url}"\n\n[plugins.webhooks]\n' + "\n".join(lines) + "\n")
    return str(path)


def drain(crm: Any, start: Any = None, rounds: int = MAX_ATTEMPTS + 2) -> Any:
    """Run the delivery runner at ever later times until nothing is pending; return that time."""
    at = start or utcnow()
    for _ in range(rounds):
        if not crm.webhooks.deliveries(status="pending", limit=None):
            break
        at += LATER
        crm.webhooks.deliver(now=at)
    return at


# --- signing ---------------------------------------------------------------------------------


def test_signature_helpers():
    body = b'{"id":"e1"}'
    header = sign("s3cret", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature("s3cret", header, body, now=1_700_000_100)
    assert not verify_signature("s3cret", header, body + b" ", now=1_700_000_100)  # tampered body
    assert not verify_signature("other", header, body, now=1_700_000_100)  # wrong secret
    assert not verify_signature("s3cret", header, body, now=1_700_000_000 + 301)  # replayed too late (5 min)
    assert verify_signature("s3cret", header, body, tolerance=None, now=1_800_000_000)
    assert verify_signature("s3cret", header, body, tolerance=timedelta(hours=1), now=1_700_003_000)
    rotated = f"{header},v1={'0' * 64}"  # several signatures: one valid is enough
    assert verify_signature("s3cret", rotated, body, now=1_700_000_000)
    for broken in ("", "v1=abc", "t=1700000000", "t=soon,v1=abc", header.replace("v1=", "v0=")):
        assert not verify_signature("s3cret", broken, body, now=1_700_000_000)


def test_a_delivery_is_signed_and_carries_the_stable_event_id(crm, receiver, events):
    created = crm.webhooks.add(receiver.url(), ["contact.created"])
    assert created.secret and created.secret.startswith("whsec_")

    contact = crm.contacts.create({"first_name": "Ada", "email": "ada@example.com"})
    crm.contacts.update(contact.id, {"last_name": "Lovelace"})  # contact.updated: not subscribed, not sent

    [request] = receiver.requests
    event = next(e for e in events.events if e.type == "contact.created")
    assert verify_signature(created.secret, request.headers[HEADER], request.body)
    assert not verify_signature("whsec_wrong", request.headers[HEADER], request.body)
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Crmkit-Event"] == "contact.created"
    assert request.headers["X-Crmkit-Event-Id"] == event.id
    payload = request.payload
    assert payload["id"] == event.id and payload["type"] == "contact.created" and payload["subject_id"] == contact.id
    assert payload["occurred_at"] == event.occurred_at.isoformat()
    assert payload["data"]["email"] == "ada@example.com"

    [delivery] = crm.webhooks.deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.event_id) == ("delivered", 1, 200, event.id)
    assert request.headers["X-Crmkit-Delivery"] == delivery.id


def test_secret_from_an_environment_variable_is_read_at_delivery_and_never_stored(crm, receiver, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", "from-the-environment")
    created = crm.webhooks.add(receiver.url(), ["contact.created"], secret_env="HOOK_SECRET")
    assert created.secret is None and created.subscription.secret_source == "env:HOOK_SECRET"
    with crm.backend.connect() as conn:
        row = conn.execute(sa.select(crm.backend.metadata.tables["webhook_subscriptions"])).one()
    assert row.secret is None and row.secret_env == "HOOK_SECRET"

    crm.contacts.create({"first_name": "Ada"})
    [request] = receiver.requests
    assert verify_signature("from-the-environment", request.headers[HEADER], request.body)

    monkeypatch.delenv("HOOK_SECRET")  # a missing secret is a failed (retried) attempt, not a crash
    crm.contacts.create({"first_name": "Grace"})
    assert len(receiver.requests) == 1
    [pending] = crm.webhooks.deliveries(status="pending")
    assert "HOOK_SECRET" in pending.last_error and "from-the-environment" not in pending.last_error
    monkeypatch.setenv("HOOK_SECRET", "from-the-environment")
    drain(crm)
    assert len(receiver.accepted()) == 2


# --- retries -------------------------------------------------------------------------------------


def test_a_receiver_that_fails_then_recovers_gets_every_event_exactly_once(any_crm, receiver, events):
    crm = any_crm
    receiver.answers = [500] * 4
    crm.webhooks.add(receiver.url(), ["contact.created", "deal.won"])
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1, "won")])
    contacts = [crm.contacts.create({"first_name": name}) for name in ("Ada", "Grace", "Hedy")]
    deal = crm.deals.create({"title": "Big one", "pipeline": "Sales", "contact_id": contacts[0].id})
    crm.deals.move(deal.id, "Won")
    wanted = [e.id for e in events.events if e.type in ("contact.created", "deal.won")]
    assert len(wanted) == 4

    # Each first attempt ran right after its event was dispatched, and failed.
    assert len(receiver.requests) == 4 and receiver.accepted() == []
    first = crm.webhooks.deliveries(limit=None)
    assert {(d.status, d.attempts, d.response_code) for d in first} == {("pending", 1, 500)}
    assert all(d.last_error == "HTTP 500: nope :(" for d in first)
    assert all(d.next_attempt_at == d.last_attempt_at + BASE_DELAY for d in first)  # 30 s, then doubling

    # Not due yet: nothing is sent.
    report = crm.webhooks.deliver(now=min(d.last_attempt_at for d in first) + BASE_DELAY / 2)
    assert (report.delivered, report.retrying) == (0, 0) and len(receiver.requests) == 4

    # Retries (and a dispatcher handing an event over again) until the receiver recovers.
    for event in events.events:
        assert crm.webhooks.enqueue(event) == []  # one delivery per event and subscription
    drain(crm)

    assert sorted(receiver.accepted()) == sorted(wanted)  # every event, exactly once
    done = crm.webhooks.deliveries(limit=None)
    assert {d.status for d in done} == {"delivered"} and len(done) == 4
    assert {d.attempts for d in done} == {2}
    assert all(r.payload["id"] in wanted for r in receiver.requests)


def test_backoff_doubles_from_30_seconds_to_6_hours_then_gives_up(crm, receiver):
    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]
    assert backoff(11) == MAX_DELAY == timedelta(hours=6)
    receiver.default = 503
    crm.webhooks.add(receiver.url(), ["contact.created"])
    crm.contacts.create({"first_name": "Ada"})

    at = utcnow()
    for attempt in range(2, MAX_ATTEMPTS + 1):
        [delivery] = crm.webhooks.deliveries()
        assert delivery.status == "pending" and delivery.attempts == attempt - 1
        at = delivery.next_attempt_at
        assert delivery.next_attempt_at - delivery.last_attempt_at == backoff(attempt - 1)
        crm.webhooks.deliver(now=at)
    [delivery] = crm.webhooks.deliveries()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", MAX_ATTEMPTS, None)
    assert len(receiver.requests) == MAX_ATTEMPTS
    assert crm.webhooks.deliver(now=at + LATER).delivered == 0  # given up: only a redelivery sends it again

    receiver.default = 200
    again = crm.webhooks.redeliver(delivery.id)
    assert (again.status, again.attempts, again.response_code) == ("delivered", 1, 200)


def test_a_timeout_is_retried(tmp_path, crm_factory, receiver):
    crm = crm_factory(write_config(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", timeout=0.3))
    receiver.answers = [-1.5]  # the first request takes longer than the client waits
    crm.webhooks.add(receiver.url(), ["contact.created"])
    crm.contacts.create({"first_name": "Ada"})

    [delivery] = crm.webhooks.deliveries()
    assert delivery.status == "pending" and delivery.response_code is None
    assert delivery.last_error.startswith("no answer within 0.3 s")
    drain(crm)
    [delivery] = crm.webhooks.deliveries()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


def test_an_unreachable_receiver_is_retried(crm, receiver):
    url = receiver.url()
    receiver.close()  # nothing listens there any more
    crm.webhooks.add(url, ["contact.created"])
    crm.contacts.create({"first_name": "Ada"})
    [delivery] = crm.webhooks.deliveries()
    assert delivery.status == "pending" and delivery.last_error.startswith("ConnectError")


# --- 410, redelivery -----------------------------------------------------------------------------


def test_410_gone_disables_the_subscription(crm, receiver):
    gone = crm.webhooks.add(receiver.url("/gone"), ["contact.created"]).subscription
    receiver.answers = [410]
    crm.contacts.create({"first_name": "Ada"})

    subscription = crm.webhooks.get(gone.id)
    assert not subscription.active and subscription.disabled_reason == "the receiver answered 410 Gone"
    [delivery] = crm.webhooks.deliveries()
    assert (delivery.status, delivery.response_code) == ("failed", 410)
    assert "subscription disabled" in delivery.last_error

    crm.contacts.create({"first_name": "Grace"})  # a disabled subscription gets nothing new
    assert len(receiver.requests) == 1 and len(crm.webhooks.deliveries()) == 1
    with pytest.raises(CRMError, match=f"subscription {gone.id} is disabled .*crmkit webhooks enable {gone.id}"):
        crm.webhooks.redeliver(delivery.id)

    crm.webhooks.enable(gone.id)
    assert crm.webhooks.redeliver(delivery.id).status == "delivered"
    crm.contacts.create({"first_name": "Hedy"})
    assert len(receiver.accepted()) == 2


def test_redelivery_sends_the_same_event_again(crm, receiver, cli):
    crm.webhooks.add(receiver.url(), ["contact.created"])
    crm.contacts.create({"first_name": "Ada"})
    [delivery] = crm.webhooks.deliveries()

    again = cli.json("webhooks", "redeliver", delivery.id)
    assert again["status"] == "delivered" and again["attempts"] == 1
    assert receiver.accepted() == [delivery.event_id, delivery.event_id]  # the receiver deduplicates by id
    assert receiver.requests[0].body == receiver.requests[1].body  # same bytes, fresh signature time

    receiver.answers = [500]
    failed = cli("webhooks", "redeliver", delivery.id)
    assert failed.exit_code == 1 and "HTTP 500" in failed.output
    with pytest.raises(NotFound):
        crm.webhooks.redeliver("nope")
    assert cli("webhooks", "redeliver", "nope").exit_code == 1


def test_concurrent_runners_send_each_delivery_once(tmp_path, crm_factory, database_url, receiver):
    crm = crm_factory(write_config(tmp_path, database_url, deliver_after_dispatch=False))
    crm.webhooks.add(receiver.url(), ["contact.created"])
    for n in range(30):
        crm.contacts.create({"first_name": f"Person {n}"})
    assert receiver.requests == []
    other = crm_factory(write_config(tmp_path, database_url, deliver_after_dispatch=False), migrate=False)

    reports = []
    threads = [threading.Thread(target=lambda c=c: reports.append(c.webhooks.deliver())) for c in (crm, other, crm)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.delivered for r in reports) == 30
    assert len(receiver.accepted()) == len(set(receiver.accepted())) == 30


def test_a_subscription_removed_by_another_process_does_not_block_the_others(crm, crm_factory, receiver, monkeypatch):
    from crmkit.builtin.webhooks import service

    monkeypatch.setattr(service, "SUBSCRIPTIONS_TTL", 3600.0)  # this process keeps its (stale) list
    keep = crm.webhooks.add(receiver.url("/keep"), ["contact.created"]).subscription
    doomed = crm.webhooks.add(receiver.url("/doomed"), ["contact.created"]).subscription
    crm.contacts.create({"first_name": "Ada"})
    assert len(receiver.accepted()) == 2

    crm_factory(crm.config.database_url, migrate=False).webhooks.remove(doomed.id)
    crm.contacts.create({"first_name": "Grace"})  # queueing for the removed one fails; reread, queue the rest

    assert [r.payload["data"]["first_name"] for r in receiver.requests] == ["Ada", "Ada", "Grace"]
    assert {d.subscription_id for d in crm.webhooks.deliveries(limit=None)} == {keep.id}


# --- subscriptions, CLI -------------------------------------------------------------------------


def test_bad_subscriptions_are_refused_with_every_issue_and_nothing_written(crm, cli):
    with pytest.raises(ValidationFailed) as excinfo:
        crm.webhooks.add("ftp://example.com/x", ["contact.created", "contact.creatd"], secret_env="NO_SUCH_VAR_FOR_CRMKIT")
    assert {(i.field, i.code) for i in excinfo.value.issues} == {
        ("url", "invalid_url"), ("events", "unknown_event_type"), ("secret_env", "not_set")}
    assert "contact.creatd" in str(excinfo.value)
    with pytest.raises(ValidationFailed, match="events: name at least one event type"):
        crm.webhooks.add("https://example.com/hook", [])
    with pytest.raises(ValidationFailed, match="url: "):
        crm.webhooks.add("not a url", ["*"])
    assert crm.webhooks.list() == []

    result = cli("webhooks", "add", "example.com/hook", "--event", "contact.created")
    assert result.exit_code == 1 and "url:" in result.stderr
    assert cli("webhooks", "add", "https://example.com/hook").exit_code == 2  # --event is required
    assert cli.json("webhooks", "list") == []


def test_cli_add_shows_the_secret_once_and_never_again(crm, cli, receiver):
    added = cli.json("webhooks", "add", receiver.url(), "--event", "contact.created", "--event", "deal.won")
    secret = added["secret"]
    assert secret.startswith("whsec_") and added["subscription"]["events"] == ["contact.created", "deal.won"]
    plain = cli("webhooks", "add", receiver.url("/two"), "--event", "*")
    assert plain.exit_code == 0 and "shown only now" in plain.output

    listed = cli("webhooks", "list", "--json")
    assert secret not in listed.output and "whsec_" not in listed.output
    assert [s["url"] for s in json.loads(listed.output)] == [receiver.url(), receiver.url("/two")]
    assert "whsec_" not in cli("webhooks", "list").output

    contact = crm.contacts.create({"first_name": "Ada"})
    deliveries = cli.json("webhooks", "deliveries", "--subscription", added["subscription"]["id"])
    assert [(d["event_type"], d["status"]) for d in deliveries] == [("contact.created", "delivered")]
    # '*' got it too, and its own webhook.subscribed before that.
    assert [d["event_type"] for d in cli.json("webhooks", "deliveries", "--status", "delivered")] == [
        "contact.created", "contact.created", "webhook.subscribed"]
    assert cli.json("webhooks", "deliver") == {"delivered": 0, "retrying": 0, "failed": 0, "disabled": []}

    assert cli.json("webhooks", "remove", added["subscription"]["id"]) == {"removed": added["subscription"]["id"]}
    assert len(cli.json("webhooks", "list")) == 1
    assert cli("webhooks", "remove", added["subscription"]["id"]).exit_code == 1
    # The removed subscription's log went with it; '*' also got the removal.
    remaining = crm.webhooks.deliveries(limit=None)
    assert {d.subscription_id for d in remaining} == {crm.webhooks.list()[0].id}
    assert [d.event_type for d in remaining] == ["webhook.unsubscribed", "contact.created", "webhook.subscribed"]
    # Who changed where the CRM's data goes is in the audit log.
    assert [e.type for e in crm.audit.query(type="webhook.*")] == ["webhook.unsubscribed", "webhook.subscribed", "webhook.subscribed"]
    assert all(secret not in json.dumps(e.changes) for e in crm.audit.query(limit=None))
    assert crm.audit.query(subject_id=contact.id)[0].type == "contact.created"


def test_deliver_command_sends_what_waits(tmp_path, crm_factory, receiver, cli_for):
    crm = crm_factory(write_config(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", deliver_after_dispatch=False))
    crm.webhooks.add(receiver.url(), ["contact.created"])
    crm.contacts.create({"first_name": "Ada"})
    assert receiver.requests == [] and crm.webhooks.deliveries()[0].status == "pending"

    result = cli_for(crm)("webhooks", "deliver")
    assert result.exit_code == 0 and "Delivered 1, retrying 0, failed 0" in result.output
    assert len(receiver.accepted()) == 1


@pytest.fixture
def cli_for() -> Callable[[Any], Callable[..., Any]]:
    from click.testing import CliRunner
    from crmkit.cli import build_cli

    def make(crm: Any) -> Callable[..., Any]:
        return lambda *args: CliRunner().invoke(build_cli(), ["--config", str(crm.config.path), *args], catch_exceptions=False)

    return make


def test_bad_settings_are_refused(tmp_path, crm_factory):
    with pytest.raises(CRMError, match=r"\[plugins.webhooks\]"):
        crm_factory(write_config(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", timeout=0))


# --- personal data -------------------------------------------------------------------------------


def test_export_lists_and_erasure_redacts_deliveries_about_the_person(tmp_path, crm_factory, receiver):
    crm = crm_factory(write_config(tmp_path, f"sqlite:///{tmp_path / 'crm.db'}", deliver_after_dispatch=False))
    nobody = crm.contacts.create({"first_name": "Nobody"})  # before the subscription: nothing was sent about them
    crm.webhooks.add(receiver.url(), ["contact.created", "activity.logged"])
    ada = crm.contacts.create({"first_name": "Ada", "email": "ada@example.com"})
    crm.activities.log({"kind": "note", "contact_id": ada.id, "subject": "Ada's secret plans"})
    grace = crm.contacts.create({"first_name": "Grace"})
    assert crm.webhooks.deliver().delivered == 3

    exported = crm.privacy.export(ada.id)["webhook_deliveries"]
    assert [d["event_type"] for d in exported] == ["contact.created", "activity.logged"]
    assert exported[0]["url"] == receiver.url() and exported[0]["payload"]["data"]["email"] == "ada@example.com"
    assert "webhook_deliveries" not in crm.privacy.export(nobody.id)

    receiver.default = 500
    crm.webhooks.redeliver(crm.webhooks.deliveries(event_id=exported[0]["event_id"])[0].id)  # pending again
    crm.privacy.erase(ada.id)

    about_ada = [d for d in crm.webhooks.deliveries(limit=None) if d.event_id in {e["event_id"] for e in exported}]
    assert len(about_ada) == 2
    for delivery in about_ada:
        assert delivery.payload["data"] == {"erased": True}
        assert delivery.payload["id"] == delivery.event_id and delivery.payload["type"] == delivery.event_type
    others = [d for d in crm.webhooks.deliveries(limit=None) if d.payload["subject_id"] == grace.id]
    assert others[0].payload["data"]["first_name"] == "Grace"

    receiver.default = 200
    drain(crm)  # what was still pending goes out without the erased data
    assert "ada@example.com" not in receiver.requests[-1].body.decode() and receiver.requests[-1].payload["data"] == {"erased": True}
