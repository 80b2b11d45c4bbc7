"""The channel layer: templates checked at save time and sandboxed, the veto chain (consent,
suppression, frequency cap, plugin vetoes, quiet hours), idempotent sends, retries with
backoff, dead letters, receipts and activities — against a channel defined here that records
what it is asked to send."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from crmkit import hookimpl
from crmkit.channels import Capabilities, DeliveryReceipt, OutboundMessage, SendResult
from crmkit.channels.jobs import LEASE
from crmkit.channels.protocol import ReceiptStatus
from crmkit.errors import PluginError, ValidationFailed

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


class RecordingChannel:
    """A real channel: it 'delivers' by appending to ``sent``. ``script`` holds the outcomes of
    the next sends ("sent", "transient", "permanent", "raise", "unknown", and "die-before" /
    "die-after" the hand-over); when empty, sends succeed. Like SMTP, it calls
    ``message.hand_over()`` before the step that delivers."""

    capabilities = Capabilities(max_length=160, subject=True, delivery_receipts=True)

    def __init__(self, name: str = "email"):
        self.name = name
        self.before_hand_over: Any = None  # called right before hand_over(), to stage races
        self.sent: list[OutboundMessage] = []
        self.calls: list[OutboundMessage] = []
        self.script: deque[str] = deque()

    def address_for(self, contact: Any) -> str | None:
        return contact.email

    def send(self, message: OutboundMessage) -> SendResult:
        self.calls.append(message)
        outcome = self.script.popleft() if self.script else "sent"
        if outcome == "die-before":
            raise Killed
        if outcome == "raise":
            raise ConnectionError("provider unreachable")
        if outcome == "transient":
            return SendResult.transient("429 rate limited")
        if outcome == "permanent":
            return SendResult.permanent("550 no such mailbox")
        if self.before_hand_over is not None:
            self.before_hand_over()
        if not message.hand_over():  # like SMTP before its final ".": past this point it may arrive
            return SendResult.transient("another worker holds the message")
        if outcome == "die-after":
            raise Killed
        if outcome == "unknown":
            return SendResult.unknown("connection lost waiting for the reply")
        self.sent.append(message)
        return SendResult.sent(f"prov-{len(self.sent)}")

    def parse_inbound(self, payload: dict[str, Any]) -> list[Any]:
        return []

    def parse_callback(self, payload: dict[str, Any]) -> list[DeliveryReceipt]:
        return [DeliveryReceipt(provider_message_id=e["id"], status=ReceiptStatus(e["status"])) for e in payload["events"]]


class Killed(BaseException):  # noqa: N818 - not an error: the process ending, as SIGKILL would
    """The worker dying mid-send: nothing after it runs (crmkit catches Exception only)."""


class ChannelPlugin:
    crmkit_plugin_name = "recording-channel"

    def __init__(self, *channels: RecordingChannel):
        self.channels = channels or (RecordingChannel(),)

    @property
    def channel(self) -> RecordingChannel:
        return self.channels[0]

    @hookimpl
    def crmkit_register_channels(self, register: Any) -> None:
        for channel in self.channels:
            register(channel)


class NoVipPlugin:
    """House rule: nobody tagged ``do-not-disturb`` gets marketing."""

    crmkit_plugin_name = "house-rules"

    @hookimpl
    def crmkit_veto_send(self, message: OutboundMessage, contact: Any, crm: Any) -> str | None:
        if "do-not-disturb" in contact.tags and message.purpose != "transactional":
            return "tagged do-not-disturb"
        return None


def config(tmp_path: Path, **channels: Any) -> str:
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in channels.items())
    path = tmp_path / "crmkit.toml"
    path.write_text(f'[crmkit]\ndatabase = "sqlite:///{tmp_path / "crm.db"}"\n\n[plugins.channels]\n{lines}\n')
    return str(path)


@pytest.fixture(autouse=True)
def _only_the_recording_channel(monkeypatch):
    """These tests bring their own 'email' channel; the crmkit-email plugin, when installed,
    registers one too, and two channels of one name refuse to load."""
    monkeypatch.setenv("CRMKIT_DISABLE_PLUGINS", "email")


@pytest.fixture
def plugin() -> ChannelPlugin:
    return ChannelPlugin()


@pytest.fixture
def crm(crm_factory, plugin):
    return crm_factory(plugins=[plugin])


def person(crm, *, consent: str | None = "granted", purpose: str = "marketing", **fields: Any):
    contact = crm.contacts.create({"first_name": "Ada", "last_name": "Lovelace", "email": f"ada.{len(crm.contacts.list(limit=None))}@example.org", **fields})
    if consent:
        crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": purpose, "status": consent})
    return contact


def kinds(crm, contact_id: str) -> list[str]:
    return sorted(a.kind for a in crm.activities.for_contact(contact_id))


# --- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "code"), [
    ("Hi {{ contact.frist_name }}", "missing_variable"),
    ("Hi {{ customer.name }}", "unknown_variable"),
    ("{{ contact.custom.loyalty_tier }}", "missing_variable"),
    ("{% if contact.first_name %}unclosed", "template_syntax"),
    ("{{ contact.__class__.__mro__ }}", "unsafe_template"),
    ("{{ contact.items.__self__.__class__ }}", "unsafe_template"),
    ("{{ ''.__class__.__base__.__subclasses__() }}", "unsafe_template"),
])
def test_a_bad_template_is_refused_when_saved_and_nothing_is_stored(crm, body, code):
    with pytest.raises(ValidationFailed) as failure:
        crm.messages.save_template("welcome", body)
    assert [(i.field, i.code) for i in failure.value.issues] == [("body", code)]
    assert crm.messages.templates() == []


def test_subject_and_body_issues_are_reported_together(crm):
    with pytest.raises(ValidationFailed) as failure:
        crm.messages.save_template("welcome", "{{ nope }}", subject="{{ contact.nope }}")
    assert sorted((i.field, i.code) for i in failure.value.issues) == [("body", "unknown_variable"), ("subject", "missing_variable")]


def test_a_saved_template_renders_contact_deal_and_custom_fields(crm, plugin):
    crm.custom_fields.define("contact", "loyalty_tier", "text")
    crm.messages.save_template("nudge", "Hi {{ contact.first_name }} ({{ contact.custom.loyalty_tier }}), {{ deal.title }}: {{ deal.amount }}",
                               subject="About {{ deal.title | upper }}")
    ada = person(crm, custom={"loyalty_tier": "gold"})
    deal = _deal(crm, ada.id)
    with pytest.raises(ValidationFailed) as failure:  # the template uses {{ deal }}
        crm.messages.send(ada.id, "email", template="nudge", purpose="marketing")
    assert [(i.field, i.code) for i in failure.value.issues] == [("deal_id", "required")]

    message = crm.messages.send(ada.id, "email", template="nudge", purpose="marketing", deal_id=deal.id)
    assert message["status"] == "sent"
    assert plugin.channel.sent[0].body == f"Hi Ada (gold), Renewal: {crm.deals.get(deal.id).amount}"
    assert plugin.channel.sent[0].subject == "About RENEWAL"


def _deal(crm, contact_id: str):
    pipeline = crm.pipelines.create("Sales", [("Lead", 0.1, "open")])
    return crm.deals.create({"title": "Renewal", "pipeline": pipeline.id, "contact_id": contact_id, "amount": "1200.00"})


class HtmlChannel(RecordingChannel):
    capabilities = Capabilities(subject=True, html=True)


@pytest.fixture
def html_crm(crm_factory):
    plugin = ChannelPlugin(HtmlChannel("email"), RecordingChannel("push"))
    return crm_factory(plugins=[plugin]), plugin


def test_html_bodies_are_autoescaped_text_bodies_and_subjects_are_not(html_crm):
    crm, _ = html_crm
    evil = person(crm, first_name="<script>alert(1)</script>", last_name="O'Brien & <b>Sons</b>", purpose="transactional")
    html = crm.messages.send(evil.id, "email", subject="Hi {{ contact.first_name }}", purpose="transactional",
                             body="<p>Hello {{ contact.first_name }} {{ contact.last_name }}</p>")
    assert html["html"] is True
    assert html["body"] == "<p>Hello &lt;script&gt;alert(1)&lt;/script&gt; O&#39;Brien &amp; &lt;b&gt;Sons&lt;/b&gt;</p>"
    assert html["subject"] == "Hi <script>alert(1)</script>"  # a header, not markup
    text = crm.messages.send(evil.id, "email", body="Hello {{ contact.last_name }}", purpose="transactional")
    # A text template stays text even though the rendered name looks like a tag: nothing it
    # contains can turn the message into HTML.
    assert (text["html"], text["body"]) == (False, "Hello O'Brien & <b>Sons</b>")
    # |safe is the template author's explicit choice, and still only for what the author wrote.
    trusted = crm.messages.send(evil.id, "email", purpose="transactional", body="<p>{{ '<b>Hi</b>' | safe }} {{ contact.first_name }}</p>")
    assert trusted["body"] == "<p><b>Hi</b> &lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_a_channel_without_html_renders_every_body_as_text(html_crm):
    crm, _ = html_crm
    contact = crm.contacts.create({"first_name": "Tom & Jerry", "email": "tj@example.org"})
    push = crm.messages.send(contact.id, "push", body="<p>Hi {{ contact.first_name }}</p>", purpose="transactional")
    assert (push["html"], push["body"]) == (False, "<p>Hi Tom & Jerry</p>")


def test_a_direct_body_is_checked_like_a_template(crm, plugin):
    ada = person(crm)
    with pytest.raises(ValidationFailed) as failure:
        crm.messages.send(ada.id, "email", body="{{ contact.__class__ }}", purpose="marketing")
    assert failure.value.issues[0].code == "unsafe_template"
    with pytest.raises(ValidationFailed) as failure:
        crm.messages.send(ada.id, "email", body="x" * 161, purpose="marketing")
    assert (failure.value.issues[0].field, failure.value.issues[0].code) == ("body", "too_long")
    assert plugin.channel.calls == [] and crm.messages.list() == []


def test_bad_send_requests_name_every_field(crm):
    with pytest.raises(ValidationFailed) as failure:
        crm.messages.send("nobody", "pigeon", purpose="", idempotency_key="k" * 300)
    assert sorted(i.field for i in failure.value.issues) == ["channel", "idempotency_key", "purpose", "template"]
    with pytest.raises(ValidationFailed) as failure:
        crm.messages.send("nobody", "email", body="hi", purpose="marketing")
    assert (failure.value.issues[0].field, failure.value.issues[0].code) == ("contact_id", "not_found")
    nomail = crm.contacts.create({"first_name": "No", "phone": "+14155550100"})
    with pytest.raises(ValidationFailed) as failure:
        crm.messages.send(nomail.id, "email", body="hi", purpose="transactional")
    assert failure.value.issues[0].code == "no_address"


# --- sending, consent, suppression ------------------------------------------------------------


def test_a_send_is_an_activity_on_the_contact(crm, plugin):
    ada = person(crm)
    message = crm.messages.send(ada.id, "email", body="Hello {{ contact.first_name }}", purpose="marketing")
    assert message["status"] == "sent" and message["provider_message_id"] == "prov-1"
    assert [(m.to, m.body, m.purpose) for m in plugin.channel.sent] == [(ada.email, "Hello Ada", "marketing")]
    sent = [a for a in crm.activities.for_contact(ada.id) if a.kind == "email.sent"]
    assert len(sent) == 1 and sent[0].channel == "email" and sent[0].payload["message_id"] == message["id"]


def test_marketing_needs_granted_consent_transactional_does_not(crm, plugin):
    never = person(crm, consent=None)
    withdrawn = person(crm, consent="withdrawn")
    vetoed = crm.messages.send(never.id, "email", body="Sale!", purpose="marketing")
    assert vetoed["status"] == "vetoed" and "never recorded" in vetoed["veto_reason"]
    assert crm.messages.send(withdrawn.id, "email", body="Sale!", purpose="marketing")["status"] == "vetoed"
    assert "email.vetoed" in kinds(crm, never.id)
    assert plugin.channel.calls == []

    receipt = crm.messages.send(never.id, "email", body="Your receipt", purpose="transactional")
    assert receipt["status"] == "sent"
    crm.consents.record({"contact_id": never.id, "channel": "email", "purpose": "transactional", "status": "withdrawn"})
    assert crm.messages.send(never.id, "email", body="Another receipt", purpose="transactional")["status"] == "vetoed"
    assert len(plugin.channel.sent) == 1


def test_consent_is_per_channel(crm_factory):
    plugin = ChannelPlugin(RecordingChannel("email"), RecordingChannel("chat"))
    crm = crm_factory(plugins=[plugin])
    ada = person(crm)  # granted for email only
    assert crm.messages.send(ada.id, "email", body="a", purpose="marketing")["status"] == "sent"
    assert crm.messages.send(ada.id, "chat", body="a", purpose="marketing")["status"] == "vetoed"


def test_suppressed_addresses_get_nothing_and_receipts_suppress(crm, plugin):
    ada, bob = person(crm), person(crm)
    crm.messages.suppress("email", ada.email, "hard_bounce")
    assert crm.messages.send(ada.id, "email", body="x", purpose="transactional")["status"] == "vetoed"

    sent = crm.messages.send(bob.id, "email", body="x", purpose="marketing")
    payload = {"events": [{"id": sent["provider_message_id"], "status": "delivered"}, {"id": sent["provider_message_id"], "status": "complaint"}]}
    assert crm.messages.handle_callback("email", payload) == 2
    assert crm.messages.handle_callback("email", payload) == 2  # a provider retrying: logged once
    assert kinds(crm, bob.id).count("email.complaint") == 1 and "email.delivered" in kinds(crm, bob.id)
    assert crm.messages.get(sent["id"])["status"] == "complaint"
    assert crm.messages.send(bob.id, "email", body="y", purpose="marketing")["status"] == "vetoed"
    assert [m.to for m in plugin.channel.sent] == [bob.email]

    assert crm.messages.unsuppress("email", bob.email) == 1
    assert crm.messages.send(bob.id, "email", body="z", purpose="marketing")["status"] == "sent"


def test_unsubscribe_blocks_marketing_but_not_receipts(crm):
    ada = person(crm)
    crm.messages.suppress("email", ada.email, "unsubscribed")
    assert crm.messages.send(ada.id, "email", body="sale", purpose="marketing")["status"] == "vetoed"
    assert crm.messages.send(ada.id, "email", body="receipt", purpose="transactional")["status"] == "sent"


def test_consent_withdrawn_while_queued_stops_the_send(crm_factory, plugin):
    crm = crm_factory(plugins=[plugin], dispatch_inline=False)
    ada = person(crm)
    queued = crm.messages.send(ada.id, "email", body="Sale", purpose="marketing")
    assert queued["status"] == "queued"
    crm.consents.record({"contact_id": ada.id, "channel": "email", "purpose": "marketing", "status": "withdrawn"})
    assert crm.messages.drain().vetoed == 1
    assert plugin.channel.calls == [] and crm.messages.get(queued["id"])["status"] == "vetoed"


def test_plugin_veto(crm_factory, plugin):
    crm = crm_factory(plugins=[plugin, NoVipPlugin()])
    ada = person(crm, tags=["do-not-disturb"])
    vetoed = crm.messages.send(ada.id, "email", body="x", purpose="marketing")
    assert vetoed["status"] == "vetoed" and vetoed["veto_reason"] == "house-rules: tagged do-not-disturb"
    assert crm.messages.send(ada.id, "email", body="x", purpose="transactional")["status"] == "sent"


def test_a_failing_veto_plugin_sends_nothing(crm_factory, plugin):
    class Broken:
        crmkit_plugin_name = "broken-rules"

        @hookimpl
        def crmkit_veto_send(self, message):
            raise RuntimeError("rules unavailable")

    crm = crm_factory(plugins=[plugin, Broken()])
    ada = person(crm)
    with pytest.raises(PluginError, match="broken-rules"):
        crm.messages.send(ada.id, "email", body="x", purpose="marketing")
    assert plugin.channel.calls == [] and crm.messages.list() == []


# --- idempotency, retries, dead letters ---------------------------------------------------


def test_the_same_idempotency_key_sends_once(any_crm_with_channel):
    crm, channel = any_crm_with_channel
    ada = person(crm)
    first = crm.messages.send(ada.id, "email", body="Welcome", purpose="marketing", idempotency_key="signup:42")
    again = crm.messages.send(ada.id, "email", body="Welcome!!", purpose="marketing", idempotency_key="signup:42")
    assert again["id"] == first["id"] and len(channel.sent) == 1
    assert kinds(crm, ada.id).count("email.sent") == 1
    # The key is unique in the database too, whatever the application checks.
    with pytest.raises(sa.exc.IntegrityError), crm.uow() as uow:
        uow.connection.execute(sa.insert(uow.table("messages")).values({**first, "id": "other"}))


@pytest.fixture
def any_crm_with_channel(crm_factory, database_url):
    plugin = ChannelPlugin()
    return crm_factory(database_url, plugins=[plugin]), plugin.channel


def test_transient_failures_are_retried_with_backoff_then_succeed(crm, plugin):
    plugin.channel.script.extend(["transient", "raise", "sent"])
    ada = person(crm)
    message = crm.messages.send(ada.id, "email", body="Hi", purpose="marketing", now=T0)
    assert message["status"] == "retrying" and message["attempts"] == 1
    assert message["next_attempt_at"] == T0 + timedelta(seconds=10)

    assert crm.messages.drain(now=T0 + timedelta(seconds=9)).retrying == 0  # not due yet
    assert len(plugin.channel.calls) == 1
    assert crm.messages.drain(now=T0 + timedelta(seconds=10)).retrying == 1  # raised: transient
    second = crm.messages.get(message["id"])
    assert second["next_attempt_at"] == T0 + timedelta(seconds=30) and "ConnectionError" in second["last_error"]
    assert crm.messages.drain(now=T0 + timedelta(seconds=30)).sent == 1
    done = crm.messages.get(message["id"])
    assert (done["status"], done["attempts"]) == ("sent", 3)
    assert [m.attempt for m in plugin.channel.calls] == [1, 2, 3]
    assert {m.idempotency_key for m in plugin.channel.calls} == {message["idempotency_key"]}
    assert kinds(crm, ada.id).count("email.failed") == 2 and kinds(crm, ada.id).count("email.sent") == 1
    assert crm.messages.drain(now=T0 + timedelta(days=1)).sent == 0


def test_a_permanent_failure_is_dead_lettered_at_once(crm, plugin):
    plugin.channel.script.append("permanent")
    ada = person(crm)
    message = crm.messages.send(ada.id, "email", body="Hi", purpose="marketing")
    assert message["status"] == "dead" and message["last_error"] == "550 no such mailbox"
    assert [d["id"] for d in crm.messages.dead_letters()] == [message["id"]]
    assert crm.messages.drain(now=T0 + timedelta(days=30)).sent == 0 and len(plugin.channel.calls) == 1
    failed = [a for a in crm.activities.for_contact(ada.id) if a.kind == "email.failed"]
    assert failed[0].payload["permanent"] is True and failed[0].payload["dead"] is True

    assert crm.messages.requeue(message["id"])["status"] == "queued"
    assert crm.messages.drain().sent == 1 and crm.messages.dead_letters() == []


def test_running_out_of_retries_is_a_dead_letter(crm_factory, plugin, tmp_path):
    crm = crm_factory(config(tmp_path, max_attempts=2), plugins=[plugin])
    plugin.channel.script.extend(["transient"] * 5)
    ada = person(crm)
    message = crm.messages.send(ada.id, "email", body="Hi", purpose="marketing", now=T0)
    assert crm.messages.drain(now=T0 + timedelta(hours=1)).dead == 1
    assert crm.messages.get(message["id"])["status"] == "dead" and len(plugin.channel.calls) == 2


# --- crashes around the hand-over -------------------------------------------------------------


@pytest.fixture
def queued_crm(crm_factory, plugin):
    return crm_factory(plugins=[plugin], dispatch_inline=False)


def test_a_worker_dying_before_the_hand_over_leaves_a_message_that_is_simply_resent(queued_crm, plugin):
    crm = queued_crm
    plugin.channel.script.append("die-before")
    message = crm.messages.send(person(crm).id, "email", body="Hi", purpose="marketing", now=T0)
    with pytest.raises(Killed):
        crm.messages.drain(now=T0)
    assert crm.messages.get(message["id"])["status"] == "queued"
    assert crm.messages.drain(now=T0 + LEASE - timedelta(seconds=1)).sent == 0  # the dead worker's lease still holds it
    assert crm.messages.drain(now=T0 + LEASE).sent == 1
    done = crm.messages.get(message["id"])
    assert (done["status"], done["attempts"], done["ambiguous"]) == ("sent", 1, 0)
    assert [m.id for m in plugin.channel.sent] == [message["id"]]


def test_a_worker_dying_after_the_hand_over_leaves_an_ambiguous_message_resent_and_counted(queued_crm, plugin):
    crm = queued_crm
    plugin.channel.script.append("die-after")
    ada = person(crm)
    message = crm.messages.send(ada.id, "email", body="Hi", purpose="marketing", now=T0)
    with pytest.raises(Killed):
        crm.messages.drain(now=T0)
    assert crm.messages.get(message["id"])["status"] == "handing_over"  # committed before the irrevocable step
    assert crm.messages.drain(now=T0 + LEASE - timedelta(seconds=1)).sent == 0
    assert crm.messages.drain(now=T0 + LEASE).sent == 1
    done = crm.messages.get(message["id"])
    assert (done["status"], done["attempts"], done["ambiguous"]) == ("sent", 2, 1)
    assert [m.attempt for m in plugin.channel.calls] == [1, 2]
    failed = [a for a in crm.activities.for_contact(ada.id) if a.kind == "email.failed"]
    assert len(failed) == 1 and failed[0].payload["ambiguous"] is True and "may have arrived" in failed[0].payload["error"]
    assert kinds(crm, ada.id).count("email.sent") == 1


def test_no_answer_after_the_hand_over_is_an_ambiguous_retry(crm, plugin):
    plugin.channel.script.append("unknown")
    message = crm.messages.send(person(crm).id, "email", body="Hi", purpose="marketing", now=T0)
    assert (message["status"], message["attempts"], message["ambiguous"]) == ("retrying", 1, 1)
    assert crm.messages.drain(now=T0 + timedelta(seconds=10)).sent == 1
    assert crm.messages.get(message["id"])["ambiguous"] == 1


def test_a_worker_whose_lease_was_taken_over_abandons_before_the_hand_over(queued_crm, plugin):
    crm = queued_crm
    message = crm.messages.send(person(crm).id, "email", body="Hi", purpose="marketing", now=T0)
    late = T0 + LEASE + timedelta(seconds=1)
    # Worker A stalls past its lease; worker B claims the message before A reaches the hand-over.
    plugin.channel.before_hand_over = lambda: crm.messages.jobs.claim(late)
    assert crm.messages.drain(now=T0).deferred == 1  # A gives up: nothing sent, nothing recorded
    plugin.channel.before_hand_over = None
    assert plugin.channel.sent == [] and crm.messages.get(message["id"])["status"] == "queued"
    assert crm.messages.jobs.deliver_claimed(message["id"], late) == "sent"  # B, which holds the lease, sends it
    done = crm.messages.get(message["id"])
    assert (done["status"], done["attempts"], done["ambiguous"], len(plugin.channel.sent)) == ("sent", 1, 0, 1)


# --- quiet hours and frequency caps ----------------------------------------------------------


def test_quiet_hours_defer_to_the_recipients_morning(crm_factory, plugin, tmp_path):
    crm = crm_factory(config(tmp_path, quiet_hours_start="21:00", quiet_hours_end="08:00"), plugins=[plugin])
    crm.custom_fields.define("contact", "timezone", "text")
    tokyo = person(crm, custom={"timezone": "Asia/Tokyo"})  # noon UTC is 21:00 in Tokyo
    london = person(crm)  # no zone: the default, UTC
    deferred = crm.messages.send(tokyo.id, "email", body="Sale", purpose="marketing", now=T0)
    assert deferred["status"] == "queued"
    assert deferred["next_attempt_at"] == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 08:00 Tokyo
    assert crm.messages.send(london.id, "email", body="Sale", purpose="marketing", now=T0)["status"] == "sent"
    assert crm.messages.send(tokyo.id, "email", body="Receipt", purpose="transactional", now=T0)["status"] == "sent"

    assert crm.messages.drain(now=datetime(2026, 3, 2, 22, 59, tzinfo=UTC)).sent == 0
    assert crm.messages.drain(now=datetime(2026, 3, 2, 23, 0, tzinfo=UTC)).sent == 1
    assert [m.to for m in plugin.channel.sent] == [london.email, tokyo.email, tokyo.email]


def test_malformed_quiet_hours_fail_the_open(crm_factory, plugin, tmp_path):
    with pytest.raises(Exception, match="quiet_hours"):
        crm_factory(config(tmp_path, quiet_hours_start="9pm", quiet_hours_end="08:00"), plugins=[plugin])


def test_frequency_cap_vetoes_the_extra_marketing(crm_factory, plugin, tmp_path):
    crm = crm_factory(config(tmp_path, frequency_cap=2, frequency_window_hours=24), plugins=[plugin])
    ada = person(crm)
    statuses = [crm.messages.send(ada.id, "email", body=f"#{i}", purpose="marketing", now=T0 + timedelta(hours=i))["status"] for i in range(3)]
    assert statuses == ["sent", "sent", "vetoed"]
    assert "frequency cap" in crm.messages.list(status="vetoed")[0]["veto_reason"]
    assert crm.messages.send(ada.id, "email", body="receipt", purpose="transactional", now=T0 + timedelta(hours=3))["status"] == "sent"
    assert crm.messages.send(ada.id, "email", body="later", purpose="marketing", now=T0 + timedelta(hours=25))["status"] == "sent"


# --- registry, privacy -------------------------------------------------------------------------


def test_a_channel_missing_methods_fails_the_open_naming_the_plugin(crm_factory):
    class Half:
        name = "fax"
        capabilities = Capabilities()

        def send(self, message):
            return SendResult.sent("1")

    class HalfPlugin:
        crmkit_plugin_name = "fax-plugin"

        @hookimpl
        def crmkit_register_channels(self, register):
            register(Half())

    with pytest.raises(PluginError, match="fax-plugin.*lacks address_for, parse_inbound, parse_callback"):
        crm_factory(plugins=[HalfPlugin()])
    with pytest.raises(PluginError, match="channel 'email' is already registered by plugin '(twin|recording-channel)'"):
        crm_factory(plugins=[ChannelPlugin(), type("Twin", (ChannelPlugin,), {"crmkit_plugin_name": "twin"})()])


def test_export_and_erasure_cover_messages(crm, plugin):
    ada = person(crm)
    crm.messages.send(ada.id, "email", body="Hello Ada", purpose="marketing")
    exported = crm.privacy.export(ada.id)
    assert any(m.get("body") == "Hello Ada" for m in _find_messages(exported))
    crm.privacy.erase(ada.id)
    assert crm.messages.list(contact_id=ada.id) == []


def _find_messages(export: Any) -> list[dict[str, Any]]:
    if isinstance(export, dict):
        if "messages" in export and isinstance(export["messages"], list):
            return export["messages"]
        return [m for value in export.values() for m in _find_messages(value)]
    return []


def test_messaging_tables_come_from_their_own_migration_branch(crm):
    assert "ch0002" in crm.backend.current()  # the branch's head: ch0001 (tables), ch0002 (ambiguous, html)
    assert {"messages", "message_templates", "message_suppressions"} <= set(sa.inspect(crm.backend.engine).get_table_names())
    assert not {"messages", "message_templates", "message_suppressions"} & set(crm.backend.unmigrated_tables)
