"""Nurture sequences: steps sent through the channel layer when due (and only once), exits on
reply, conversion and unsubscribe, enrollment idempotency, definitions checked when saved, the
worker hook, the automation action, merges, personal data and the CLI — against the recording
channel of the channel tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from crmkit import hookimpl
from crmkit.cli import build_cli
from crmkit.errors import NotFound, ValidationFailed

from .test_channels import ChannelPlugin, _only_the_recording_channel  # noqa: F401 - autouse: no installed 'email' channel

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning
DELAY = timedelta(days=2)
SECOND = timedelta(seconds=1)

NURTURE = {
    "name": "nurture",
    "description": "two e-mails, two days apart",
    "steps": [
        {"channel": "email", "template": "welcome", "purpose": "marketing"},
        {"delay": "2d", "channel": "email", "subject": "Still curious?", "body": "Hi {{ contact.first_name }}, here is a tip.",
         "purpose": "marketing"},
    ],
}


class TickRecorder:
    """Another plugin with time-driven work: the worker's hook reaches every implementation."""

    crmkit_plugin_name = "tick-recorder"

    def __init__(self) -> None:
        self.ticks: list[datetime] = []

    @hookimpl
    def crmkit_worker_tick(self, crm: Any, now: datetime) -> None:
        self.ticks.append(now)


@pytest.fixture
def plugin() -> ChannelPlugin:
    return ChannelPlugin()


def prepared(crm):
    crm.messages.save_template("welcome", "Welcome {{ contact.first_name }}!", subject="Hello", channel="email")
    crm.sequences.save(NURTURE)
    return crm


@pytest.fixture
def crm(crm_factory, plugin):
    return prepared(crm_factory(plugins=[plugin]))


@pytest.fixture(params=[True, False], ids=["inline", "queued"])
def either(request, crm_factory, plugin):
    """A CRM dispatching events in-process, and one leaving them (and messages) for a worker."""
    return prepared(crm_factory(plugins=[plugin], dispatch_inline=request.param))


def person(crm, name: str = "Ada", consent: str | None = "granted"):
    contact = crm.contacts.create({"first_name": name, "email": f"{name.lower()}.{len(crm.contacts.list(limit=None))}@example.org"})
    if consent:
        crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": "marketing", "status": consent})
    return contact


def tick(crm, at: datetime):
    """One worker pass as of ``at``: events, due steps, then queued messages."""
    crm.events.drain()
    report = crm.sequences.tick(at)
    crm.messages.drain(now=at)
    crm.events.drain()
    return report


def bodies(plugin) -> list[str]:
    return [m.body for m in plugin.channel.sent]


# --- the acceptance test -------------------------------------------------------------------


def test_the_second_step_is_sent_through_the_channel_after_its_delay_and_only_once(crm_factory, database_url, plugin):
    crm = prepared(crm_factory(database_url, plugins=[plugin]))
    ada = person(crm)
    enrollment = crm.sequences.enroll("nurture", ada.id, now=T0)
    assert enrollment.next_step_at == T0 and enrollment.status == "active"

    assert tick(crm, T0).sent == 1
    assert bodies(plugin) == ["Welcome Ada!"] and plugin.channel.sent[0].subject == "Hello"
    assert crm.sequences.enrollment(enrollment.id).next_step_at == T0 + DELAY

    assert tick(crm, T0 + DELAY - SECOND).due == 0
    assert bodies(plugin) == ["Welcome Ada!"]

    assert tick(crm, T0 + DELAY).sent == 1
    assert bodies(plugin) == ["Welcome Ada!", "Hi Ada, here is a tip."]
    assert plugin.channel.sent[1].subject == "Still curious?" and plugin.channel.sent[1].to == ada.email

    assert tick(crm, T0 + DELAY).due == 0
    assert tick(crm, T0 + 10 * DELAY).due == 0
    assert len(plugin.channel.sent) == 2
    done = crm.sequences.enrollment(enrollment.id)
    assert (done.status, done.step, done.next_step_at, done.ended_at) == ("completed", 2, None, T0 + DELAY)
    keys = sorted(m["idempotency_key"] for m in crm.messages.list(contact_id=ada.id))
    assert keys == [f"seq:{enrollment.id}:0", f"seq:{enrollment.id}:1"]
    assert sorted(a.kind for a in crm.activities.for_contact(ada.id)) == ["email.sent", "email.sent"]


def test_a_contact_who_replied_between_steps_gets_no_second_step(either, plugin):
    crm = either
    ada, bob = person(crm, "Ada"), person(crm, "Bob")
    for contact in (ada, bob):
        crm.sequences.enroll("nurture", contact.id, now=T0)
    tick(crm, T0)
    crm.activities.log({"kind": "email.received", "contact_id": ada.id, "channel": "email", "direction": "inbound",
                        "subject": "Re: Hello", "occurred_at": (T0 + timedelta(hours=5)).isoformat()})
    if not crm.dispatch_inline:  # the tick must not rely on the reply's event having been handled
        assert crm.sequences.enrollments(contact_id=ada.id)[0].status == "active"
        crm.sequences.tick(T0 + DELAY)
        crm.messages.drain(now=T0 + DELAY)
    else:
        tick(crm, T0 + DELAY)
    assert sorted(m.to for m in plugin.channel.sent) == [ada.email, bob.email, bob.email]
    [ended] = crm.sequences.enrollments(contact_id=ada.id)
    assert (ended.status, ended.exit_reason, ended.step) == ("exited", "replied", 1)


def test_a_reply_from_before_the_enrollment_does_not_count(crm, plugin):
    ada = person(crm)
    crm.activities.log({"kind": "email.received", "contact_id": ada.id, "channel": "email", "direction": "inbound",
                        "occurred_at": (T0 - timedelta(days=30)).isoformat()})
    crm.sequences.enroll("nurture", ada.id, now=T0)
    assert tick(crm, T0).sent == 1


def test_a_contact_whose_consent_is_withdrawn_is_exited_as_unsubscribed_and_gets_nothing(either, plugin):
    crm = either
    ada = person(crm)
    enrollment = crm.sequences.enroll("nurture", ada.id, now=T0)
    crm.consents.record({"contact_id": ada.id, "channel": "email", "purpose": "marketing", "status": "withdrawn"})
    report = crm.sequences.tick(T0)  # queued: before a worker has handled the consent event
    tick(crm, T0)
    tick(crm, T0 + DELAY)
    assert plugin.channel.calls == []
    ended = crm.sequences.enrollment(enrollment.id)
    assert (ended.status, ended.exit_reason) == ("exited", "unsubscribed")
    if crm.dispatch_inline:  # the consent event ended it before any tick
        assert report.due == 0 and "consent withdrawn" in ended.exit_detail
    else:  # the tick's send was vetoed by the consent ledger, which ended it
        assert report.exited == 1 and ended.exit_detail.startswith("consent: withdrawn")


def test_a_suppressed_address_ends_the_enrollment_between_steps(crm, plugin):
    ada = person(crm)
    enrollment = crm.sequences.enroll("nurture", ada.id, now=T0)
    tick(crm, T0)
    crm.messages.suppress("email", ada.email, "unsubscribed", contact_id=ada.id)
    assert tick(crm, T0 + DELAY).exited == 1
    assert len(plugin.channel.sent) == 1
    ended = crm.sequences.enrollment(enrollment.id)
    assert (ended.exit_reason, ended.exit_detail) == ("unsubscribed", "suppressed: unsubscribed")


def test_an_unsubscribe_receipt_ends_the_enrollment_at_once(crm, plugin):
    ada = person(crm)
    enrollment = crm.sequences.enroll("nurture", ada.id, now=T0)
    tick(crm, T0)
    crm.messages.handle_callback("email", {"events": [{"id": "prov-1", "status": "unsubscribed"}]})
    assert crm.sequences.enrollment(enrollment.id).exit_reason == "unsubscribed"


def test_conversion_ends_the_enrollment(crm, plugin):
    ada, bob, cid = person(crm, "Ada"), person(crm, "Bob"), person(crm, "Cid")
    for contact in (ada, bob, cid):
        crm.sequences.enroll("nurture", contact.id, now=T0)
    tick(crm, T0)
    crm.contacts.update(ada.id, {"lifecycle_stage": "customer"})
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1.0, "won")])
    deal = crm.deals.create({"title": "Licence", "pipeline": "Sales", "contact_id": bob.id, "amount": "100"})
    crm.deals.move(deal.id, "Won")
    tick(crm, T0 + DELAY)
    reasons = {e.contact_id: (e.status, e.exit_reason) for e in crm.sequences.enrollments()}
    assert reasons == {ada.id: ("exited", "converted"), bob.id: ("exited", "converted"), cid.id: ("completed", None)}
    assert [m.to for m in plugin.channel.sent].count(cid.email) == 2 and len(plugin.channel.sent) == 4


def test_exit_conditions_can_be_switched_off(crm, plugin):
    crm.sequences.save({**NURTURE, "name": "onboarding", "exit_on": ["unsubscribed"]})
    ada = person(crm)
    crm.sequences.enroll("onboarding", ada.id, now=T0)
    crm.contacts.update(ada.id, {"lifecycle_stage": "customer"})  # onboarding is for customers too
    tick(crm, T0)
    assert tick(crm, T0 + DELAY).sent == 1
    assert crm.sequences.enrollments(contact_id=ada.id)[0].status == "completed"


def test_a_contact_without_an_address_leaves_as_undeliverable(crm, plugin):
    phone_only = crm.contacts.create({"first_name": "Pat", "phone": "+14155550100"})
    enrollment = crm.sequences.enroll("nurture", phone_only.id, now=T0)
    assert tick(crm, T0).exited == 1
    ended = crm.sequences.enrollment(enrollment.id)
    assert ended.exit_reason == "undeliverable" and "no email address" in ended.exit_detail


def test_a_step_whose_template_was_deleted_ends_the_enrollment_instead_of_failing_forever(crm, plugin):
    ada = person(crm)
    enrollment = crm.sequences.enroll("nurture", ada.id, now=T0)
    with crm.uow() as uow:  # templates have no delete command yet: remove it underneath
        table = uow.table("message_templates")
        uow.connection.execute(table.delete().where(table.c.name == "welcome"))
    assert tick(crm, T0).exited == 1
    assert crm.sequences.enrollment(enrollment.id).exit_reason == "undeliverable" and plugin.channel.calls == []


# --- enrollment --------------------------------------------------------------------------------


def test_enrolling_twice_keeps_one_active_enrollment(crm, plugin):
    ada = person(crm)
    first = crm.sequences.enroll("nurture", ada.id, now=T0)
    again = crm.sequences.enroll("nurture", ada.id, now=T0 + timedelta(hours=1))
    assert again.id == first.id and again.enrolled_at == T0
    assert len(crm.sequences.enrollments(contact_id=ada.id)) == 1
    tick(crm, T0)
    assert len(plugin.channel.sent) == 1


def test_unenrolled_contacts_get_nothing_and_may_be_enrolled_afresh(crm, plugin, events):
    ada = person(crm)
    first = crm.sequences.enroll("nurture", ada.id, now=T0)
    ended = crm.sequences.unenroll("nurture", ada.id, now=T0)
    assert (ended.status, ended.next_step_at) == ("unenrolled", None)
    assert tick(crm, T0 + DELAY).due == 0 and plugin.channel.calls == []
    with pytest.raises(NotFound):
        crm.sequences.unenroll("nurture", ada.id)
    second = crm.sequences.enroll("nurture", ada.id, now=T0 + DELAY)
    assert second.id != first.id
    tick(crm, T0 + DELAY)
    assert bodies(plugin) == ["Welcome Ada!"]
    assert [t for t in events.types() if t.startswith("sequence.")] == [
        "sequence.saved", "sequence.enrolled", "sequence.unenrolled", "sequence.enrolled", "sequence.step_sent"]


def test_enrolling_a_missing_contact_or_into_a_missing_sequence_is_refused(crm):
    with pytest.raises(ValidationFailed) as failure:
        crm.sequences.enroll("nurture", "nobody")
    assert [(i.field, i.code) for i in failure.value.issues] == [("contact_id", "not_found")]
    with pytest.raises(NotFound):
        crm.sequences.enroll("nope", person(crm).id)


def test_two_ticks_racing_over_one_enrollment_send_once(crm_factory, plugin, tmp_path):
    first = prepared(crm_factory(plugins=[plugin]))
    second = crm_factory(first.config.database_url, plugins=[plugin])
    ada = person(first)
    first.sequences.enroll("nurture", ada.id, now=T0)
    [due] = first.sequences.enrollments(status="active")
    # Both workers read the enrollment as due before either advanced it.
    assert first.sequences._advance(due, T0) == "sent"
    assert second.sequences._advance(due, T0) is None
    assert len(plugin.channel.sent) == 1 and first.sequences.enrollment(due.id).step == 1


def test_the_worker_hook_sends_due_steps(crm_factory, plugin):
    recorder = TickRecorder()
    crm = prepared(crm_factory(plugins=[plugin, recorder]))
    ada = person(crm)
    crm.sequences.enroll("nurture", ada.id, now=T0)
    ran = crm.plugins.call_each_safely("crmkit_worker_tick", crm=crm, now=T0)
    assert {name for name, _ in ran} >= {"tick-recorder", "crmkit.builtin.sequences_plugin"}
    assert recorder.ticks == [T0] and bodies(plugin) == ["Welcome Ada!"]


# --- definitions -------------------------------------------------------------------------------


def test_a_bad_definition_names_every_problem_and_saves_nothing(crm):
    before = crm.messages.templates()
    crm.messages.save_template("deal-note", "About {{ deal.title }}", channel="email")
    with pytest.raises(ValidationFailed) as failure:
        crm.sequences.save({"name": "bad", "exit_on": ["bored"], "colour": "red", "steps": [
            {"channel": "email", "body": "Hi {{ contact.frist_name }}", "purpose": "marketing"},
            {"delay": "3 days", "channel": "pigeon", "template": "welcome", "purpose": "marketing"},
            {"channel": "email", "template": "nope", "purpose": "marketing"},
            {"channel": "email", "template": "deal-note", "purpose": "marketing"},
            {"delay": -5, "channel": "email", "template": "welcome", "body": "x", "after": "lunch"},
        ]})
    found = {(i.field, i.code) for i in failure.value.issues}
    assert found == {
        ("colour", "unknown_field"), ("exit_on", "invalid"),
        ("steps[0].body", "missing_variable"),
        ("steps[1].delay", "invalid"), ("steps[1].channel", "unknown_channel"),
        ("steps[2].template", "not_found"),
        ("steps[3].template", "unavailable_variable"),
        ("steps[4].delay", "out_of_range"), ("steps[4].after", "invalid"), ("steps[4].purpose", "required"),
    }
    assert [s.name for s in crm.sequences.list()] == ["nurture"]
    assert {t["name"] for t in crm.messages.templates()} == {t["name"] for t in before} | {"deal-note"}


def test_delays_and_a_replaced_sequence(crm, plugin):
    saved = crm.sequences.save({"name": "drip", "steps": [
        {"delay": "1h", "channel": "email", "body": "One", "purpose": "marketing"},
        {"delay": "1d12h", "after": "enrollment", "channel": "email", "body": "Two", "purpose": "marketing"},
        {"delay": 90, "channel": "email", "body": "Three", "purpose": "marketing"},
    ]})
    assert [(s.delay_seconds, s.after, s.template) for s in saved.steps] == [
        (3600, "previous", "drip.step1"), (129600, "enrollment", "drip.step2"), (90, "previous", "drip.step3")]
    ada = person(crm)
    crm.sequences.enroll("drip", ada.id, now=T0)
    assert tick(crm, T0 + timedelta(minutes=59)).due == 0
    tick(crm, T0 + timedelta(hours=2))  # late: the next step still counts from the enrollment
    assert crm.sequences.enrollments()[0].next_step_at == T0 + timedelta(hours=36)
    with pytest.raises(ValidationFailed, match="exists already"):
        crm.sequences.save({"name": "drip", "steps": [{"channel": "email", "body": "Only", "purpose": "marketing"}]})
    crm.sequences.save({"name": "drip", "steps": [{"channel": "email", "body": "Only", "purpose": "marketing"}]}, replace=True)
    assert tick(crm, T0 + timedelta(hours=36)).completed == 1  # it had sent all the new steps
    assert bodies(plugin) == ["One"]


# --- automation, merges, personal data --------------------------------------------------------


def test_an_automation_rule_enrolls_contacts_entering_a_segment(crm, plugin):
    crm.segments.save("hot", {"field": "tags", "op": "contains", "value": "hot"})
    with pytest.raises(ValidationFailed) as failure:
        crm.automations.add({"name": "x", "trigger": {"type": "event", "event_type": "segment.entered"},
                             "actions": [{"type": "enroll_in_sequence", "sequence": "nope"}]})
    assert [(i.field, i.code) for i in failure.value.issues] == [("actions[0].sequence", "not_found")]
    crm.automations.add({"name": "Nurture hot leads", "trigger": {"type": "event", "event_type": "segment.entered"},
                         "conditions": {"field": "event.data.segment", "op": "eq", "value": "hot"},
                         "actions": [{"type": "enroll_in_sequence", "sequence": "nurture"}]})
    ada, bob = person(crm, "Ada"), person(crm, "Bob")
    crm.contacts.update(ada.id, {"tags": ["hot"]})
    [enrollment] = crm.sequences.enrollments()
    assert enrollment.contact_id == ada.id and enrollment.sequence == "nurture"
    crm.contacts.update(ada.id, {"tags": []})
    crm.contacts.update(ada.id, {"tags": ["hot"]})  # enters again: already enrolled, nothing changes
    assert [e.id for e in crm.sequences.enrollments()] == [enrollment.id]
    assert bob.id not in {e.contact_id for e in crm.sequences.enrollments()}


def test_merging_two_enrolled_contacts_keeps_one_active_enrollment(crm, plugin):
    ada, dup, solo = person(crm, "Ada"), person(crm, "Ada"), person(crm, "Cid")
    crm.sequences.save({**NURTURE, "name": "other"})
    for contact in (ada, dup):
        crm.sequences.enroll("nurture", contact.id, now=T0)
    crm.sequences.enroll("other", dup.id, now=T0)
    crm.merges.merge(ada.id, dup.id, prefer="a")
    mine = {(e.sequence, e.status, e.exit_reason) for e in crm.sequences.enrollments(contact_id=ada.id)}
    assert mine == {("nurture", "active", None), ("nurture", "exited", "merged"), ("other", "active", None)}
    assert crm.sequences.enroll("other", ada.id).contact_id == ada.id  # re-keyed: still one active
    assert len(crm.sequences.enrollments(sequence="other")) == 1
    tick(crm, T0)
    assert sorted(m.to for m in plugin.channel.sent) == sorted([ada.email, ada.email])
    assert solo.id not in {e.contact_id for e in crm.sequences.enrollments()}


def test_enrollments_are_exported_and_erased(crm):
    ada = person(crm)
    crm.sequences.enroll("nurture", ada.id, now=T0)
    [exported] = crm.privacy.export(ada.id)["sequence_enrollments"]
    assert exported["sequence"] == "nurture" and exported["status"] == "active"
    crm.privacy.erase(ada.id)
    assert crm.sequences.enrollments(contact_id=ada.id) == []


# --- command line --------------------------------------------------------------------------------


def test_cli_add_enroll_tick_and_inspect(crm, plugin, tmp_path):
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(build_cli(plugins=[plugin]), ["--database", crm.config.database_url, *args], catch_exceptions=False)

    definition = tmp_path / "trial.toml"
    definition.write_text('name = "trial"\n\n[[steps]]\nchannel = "email"\nbody = "Day one, {{ contact.first_name }}"\n'
                          'purpose = "marketing"\n\n[[steps]]\ndelay = "1d"\nchannel = "email"\nbody = "Day two"\npurpose = "marketing"\n')
    assert run("sequences", "add", str(definition), "--check").exit_code == 0
    assert [s.name for s in crm.sequences.list()] == ["nurture"]
    result = run("sequences", "add", str(definition))
    assert result.exit_code == 0 and "2 step(s)" in result.output
    ada = person(crm)
    assert run("sequences", "enroll", "trial", ada.id, "--now", T0.isoformat()).exit_code == 0
    result = run("sequences", "tick", "--now", T0.isoformat(), "--json")
    assert result.exit_code == 0 and '"sent": 1' in result.output
    assert bodies(plugin) == ["Day one, Ada"]
    assert "trial" in run("sequences", "list").output
    result = run("sequences", "enrollments", "--sequence", "trial", "--json")
    assert '"step": 1' in result.output and ada.id in result.output
    assert run("sequences", "unenroll", "trial", ada.id).exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", "steps": [{"channel": "email", "body": "{{ contact.nope }}", "purpose": "marketing"}]}')
    result = run("sequences", "add", str(bad))
    assert result.exit_code == 1 and "steps[0].body" in result.output


def test_worker_pass_runs_the_worker_tick_hook(crm_factory, tmp_path):
    """crmkit worker calls crmkit_worker_tick every pass (sequences rely on it)."""
    import crmkit
    from crmkit.worker import Worker

    seen = []

    class Ticker:
        crmkit_plugin_name = "ticker"

        @crmkit.hookimpl
        def crmkit_worker_tick(self, crm, now):
            seen.append(now)

    crm = crm_factory(plugins=[Ticker()], dispatch_inline=False)
    Worker(crm).run_pass()
    assert len(seen) == 1
