"""Property: whatever the order of consent grants and withdrawals, suppressions and sends, a
message reaches the channel only if, at that moment, the contact's consent for that channel
and purpose allows it and the address is not suppressed — and every message that is allowed
when the queue is drained is sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from crmkit.domain.values import new_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_channels import ChannelPlugin, _only_the_recording_channel  # noqa: F401 - autouse: no installed 'email' channel

PURPOSES = ("marketing", "newsletter", "transactional")
HARD = ("hard_bounce", "complaint", "stop")
CONTACTS = 2
BASE = datetime(2020, 1, 1, tzinfo=UTC)

op = st.one_of(
    st.tuples(st.sampled_from(["granted", "withdrawn"]), st.integers(0, CONTACTS - 1), st.sampled_from(PURPOSES)),
    st.tuples(st.just("suppress"), st.integers(0, CONTACTS - 1), st.sampled_from([*HARD, "unsubscribed"])),
    st.tuples(st.just("unsuppress"), st.integers(0, CONTACTS - 1), st.none()),
    st.tuples(st.just("send"), st.integers(0, CONTACTS - 1), st.sampled_from(PURPOSES)),
    st.tuples(st.just("drain"), st.none(), st.none()),
)


class Model:
    """What the rules say, kept independently of crmkit."""

    def __init__(self) -> None:
        self.consent: dict[tuple[int, str], str] = {}
        self.suppressed: dict[int, set[str]] = {}

    def allowed(self, contact: int, purpose: str) -> bool:
        status = self.consent.get((contact, purpose))
        if status == "withdrawn" or (status != "granted" and purpose != "transactional"):
            return False
        reasons = self.suppressed.get(contact, set())
        return not (reasons & set(HARD)) and not ("unsubscribed" in reasons and purpose != "transactional")


@pytest.fixture(params=[False, True], ids=["queued-then-drained", "inline"])
def setup(request, crm_factory):
    plugin = ChannelPlugin()
    return crm_factory(plugins=[plugin], dispatch_inline=request.param), plugin.channel, request.param


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, max_size=25))
def test_nothing_reaches_a_contact_without_consent_or_with_a_suppressed_address(setup, ops: list[tuple[Any, Any, Any]]):
    crm, channel, inline = setup
    crm.messages.drain()  # what an earlier example left queued is not this example's business
    run = new_id()[:8]
    people = [crm.contacts.create({"first_name": f"P{i}", "email": f"p{i}.{run}@example.org"}) for i in range(CONTACTS)]
    index = {p.id: i for i, p in enumerate(people)}
    model, clock = Model(), 0
    for kind, who, arg in ops:
        clock += 1
        if kind in ("granted", "withdrawn"):
            crm.consents.record({"contact_id": people[who].id, "channel": "email", "purpose": arg, "status": kind,
                                 "recorded_at": (BASE + timedelta(seconds=clock)).isoformat()})
            model.consent[(who, arg)] = kind
        elif kind == "suppress":
            crm.messages.suppress("email", people[who].email, arg)
            model.suppressed.setdefault(who, set()).add(arg)
        elif kind == "unsuppress":
            crm.messages.unsuppress("email", people[who].email)
            model.suppressed.pop(who, None)
        else:
            before = len(channel.sent)
            if kind == "send":
                message = crm.messages.send(people[who].id, "email", body="Hello {{ contact.first_name }}", purpose=arg)
                expected = {message["id"]} if inline and model.allowed(who, arg) else set()
                if not inline:
                    assert message["status"] == ("queued" if model.allowed(who, arg) else "vetoed"), (kind, who, arg)
            else:
                queued = [m for m in crm.messages.list(status="queued", limit=None) if m["contact_id"] in index]
                crm.messages.drain()
                expected = {m["id"] for m in queued if model.allowed(index[m["contact_id"]], m["purpose"])}
                assert not [m for m in crm.messages.list(status="queued", limit=None) if m["contact_id"] in index]
            delivered = channel.sent[before:]
            for message in delivered:  # the safety property
                assert model.allowed(index[message.contact_id], message.purpose), (message, model.consent, model.suppressed)
            assert {m.id for m in delivered} == expected  # and nothing allowed is held back
