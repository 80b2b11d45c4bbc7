"""The intake stages as hooks: a house plugin adds to or overrides every stage, per record and
per batch, and the core's own stages give way to it."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa
from crmkit import Contact, FieldIssue, PluginError, ValidationFailed, hookimpl
from crmkit.serialize import to_jsonable

FREE_MAIL = {"gmail.com", "yahoo.com", "hotmail.com"}


class House:
    """Acme's house rules: work addresses only, the company from the e-mail domain, and the
    legacy CRM's customer number as the strongest identity (kept in the plugin's own table)."""

    crmkit_plugin_name = "acme-house"

    def __init__(self) -> None:
        self.reacted: list[tuple[str, Contact]] = []

    @hookimpl
    def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
        register(sa.Table(
            "acme_legacy_ids", metadata,
            sa.Column("legacy_id", sa.String(32), primary_key=True),
            sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
        ))

    @hookimpl
    def crmkit_normalize(self, record: Any) -> None:
        # The legacy export calls the address "work_email".
        if "work_email" in record.data:
            record.data["email"] = record.data.pop("work_email")

    @hookimpl
    def crmkit_validate(self, record: Any) -> list[FieldIssue] | None:
        email = record.clean.get("email")
        if email and email.rsplit("@", 1)[1] in FREE_MAIL:
            return [FieldIssue("email", "free_mail", "use a work address, not a free-mail one")]
        return None

    @hookimpl
    def crmkit_enrich(self, record: Any, crm: Any) -> None:
        email = record.clean.get("email")
        if email and not record.clean.get("organization_id"):
            found = crm.organizations.list(domain=email.rsplit("@", 1)[1], limit=1)
            if found:
                record.clean["organization_id"] = found[0].id

    @hookimpl
    def crmkit_match(self, record: Any, crm: Any) -> str | None:
        legacy_id = record.context.get("legacy_id")
        if legacy_id is None:
            return None
        with crm.read() as uow:
            table = uow.table("acme_legacy_ids")
            return uow.connection.execute(sa.select(table.c.contact_id).where(table.c.legacy_id == legacy_id)).scalar()

    @hookimpl
    def crmkit_persist(self, record: Any, uow: Any) -> str | None:
        """Records from the legacy CRM: it is the master, so its values overwrite ours."""
        legacy_id = record.context.get("legacy_id")
        if legacy_id is None:
            return None  # everything else is the core's job
        values = {k: v for k, v in record.clean.items() if v is not None}
        if record.match_id:
            contact = uow.contacts.get(record.match_id)
            for key, value in values.items():
                setattr(contact, key, value)
            uow.contacts.update(contact)
            uow.emit("contact.updated", contact.id, {"source": "legacy"})
            record.outcome = "updated"
        else:
            contact = Contact(**values)
            uow.contacts.add(contact)
            uow.connection.execute(sa.insert(uow.table("acme_legacy_ids")).values(legacy_id=legacy_id, contact_id=contact.id))
            uow.emit("contact.created", contact.id, to_jsonable(contact))
            record.outcome = "created"
        return contact.id

    @hookimpl
    def crmkit_react(self, record: Any, contact: Contact) -> None:
        self.reacted.append((record.outcome, contact))


@pytest.fixture
def house() -> House:
    return House()


@pytest.fixture
def acme_crm(crm_factory, house):
    crm = crm_factory(plugins=[house])
    crm.organizations.create({"name": "Acme Corp", "domain": "acme.example"})
    return crm


def test_validate_rejects_free_mail_with_a_field_issue(acme_crm):
    with pytest.raises(ValidationFailed) as excinfo:
        acme_crm.intake.submit({"email": "Joe@Gmail.com", "first_name": "Joe"})
    assert excinfo.value.issues == [FieldIssue("email", "free_mail", "use a work address, not a free-mail one")]

    result = acme_crm.intake.submit({"email": "joe@yahoo.com"}, raise_on_reject=False)
    assert not result.ok and result.record.outcome == "rejected" and result.contact is None
    assert acme_crm.contacts.count() == 0


def test_normalize_and_enrich_fill_in_the_company(acme_crm, house):
    acme = acme_crm.organizations.list(name="Acme Corp")[0]

    result = acme_crm.intake.submit({"work_email": "ada@acme.example", "first_name": "Ada"})

    assert result.contact.email == "ada@acme.example"
    assert result.contact.organization_id == acme.id
    assert acme_crm.contacts.get(result.contact.id).organization_id == acme.id
    # Unknown domains are left alone.
    assert acme_crm.intake.submit({"email": "bob@elsewhere.example"}).contact.organization_id is None


def test_match_by_legacy_id_and_persist_override(acme_crm, house, events):
    first = acme_crm.intake.submit({"email": "ada@acme.example", "first_name": "Ada"}, context={"legacy_id": "L-1"})
    assert first.record.outcome == "created"
    with acme_crm.read() as uow:
        table = uow.table("acme_legacy_ids")
        assert uow.connection.execute(sa.select(table.c.contact_id)).scalars().all() == [first.contact.id]

    # Another address, so the core's e-mail matcher would create a second contact: the legacy
    # id matches, and the house writer (the master system's data wins) overwrites.
    second = acme_crm.intake.submit({"email": "ada.lovelace@acme.example", "first_name": "Augusta"}, context={"legacy_id": "L-1"})

    assert second.record.match_id == first.contact.id
    assert second.record.outcome == "updated"
    stored = acme_crm.contacts.get(first.contact.id)
    assert (stored.email, stored.first_name, stored.version) == ("ada.lovelace@acme.example", "Augusta", 2)
    assert acme_crm.contacts.count() == 1
    assert events.types().count("contact.created") == 1 and "contact.updated" in events.types()


def test_records_without_legacy_id_still_go_through_the_core(acme_crm):
    first = acme_crm.intake.submit({"email": "grace@acme.example"})
    again = acme_crm.intake.submit({"email": "grace@acme.example", "last_name": "Hopper"})
    assert again.record.match_id == first.contact.id and again.record.outcome == "updated"
    assert acme_crm.contacts.get(first.contact.id).last_name == "Hopper"


def test_react_sees_the_stored_contact(acme_crm, house):
    result = acme_crm.intake.submit({"email": "ada@acme.example"}, context={"legacy_id": "L-7"})
    acme_crm.intake.submit({"email": "ada@acme.example", "job_title": "Analyst"}, context={"legacy_id": "L-7"})

    (created, as_created), (updated, as_updated) = house.reacted
    assert created == "created" and as_created == result.contact
    assert updated == "updated" and as_updated.job_title == "Analyst" and as_updated.version == 2
    assert as_updated == acme_crm.contacts.get(result.contact.id)


class Grumpy:
    crmkit_plugin_name = "grumpy"

    @hookimpl
    def crmkit_react(self, contact: Contact) -> None:
        raise RuntimeError(f"cannot greet {contact.email}")


def test_failing_react_is_logged_with_the_plugin_name_and_keeps_the_intake(crm_factory, house, caplog):
    crm = crm_factory(plugins=[house, Grumpy()])
    with caplog.at_level(logging.ERROR, logger="crmkit.plugins"):
        result = crm.intake.submit({"email": "ada@acme.example"})

    assert result.ok and crm.contacts.get(result.contact.id).email == "ada@acme.example"
    assert [r.getMessage() for r in caplog.records] == ["plugin 'grumpy': crmkit_react failed"]
    assert "cannot greet ada@acme.example" in caplog.text
    assert [outcome for outcome, _ in house.reacted] == ["created"]  # the other reaction still ran


class ExplodingValidator:
    crmkit_plugin_name = "exploding-validator"

    @hookimpl
    def crmkit_validate(self, record: Any) -> None:
        raise ZeroDivisionError("division by zero")


def test_failing_stage_names_the_plugin_and_writes_nothing(crm_factory):
    crm = crm_factory(plugins=[ExplodingValidator()])
    with pytest.raises(PluginError, match="plugin 'exploding-validator': crmkit_validate failed: ZeroDivisionError"):
        crm.intake.submit({"email": "ada@example.com"})
    assert crm.contacts.count() == 0


# --- batch forms --------------------------------------------------------------------------


class Bulk:
    """The same kinds of rules as :class:`House`, written against whole batches (one query per
    batch instead of one per record)."""

    crmkit_plugin_name = "bulk-house"

    def __init__(self) -> None:
        self.batch_sizes: dict[str, list[int]] = {}

    def saw(self, stage: str, records: list[Any]) -> None:
        self.batch_sizes.setdefault(stage, []).append(len(records))

    @hookimpl
    def crmkit_register_tables(self, metadata: sa.MetaData, register: Any) -> None:
        register(sa.Table(
            "bulk_shop_customers", metadata,
            sa.Column("shop_id", sa.String(32), primary_key=True),
            sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
        ))

    @hookimpl
    def crmkit_normalize_batch(self, records: list[Any]) -> None:
        self.saw("normalize", records)
        for record in records:
            if "Nachname" in record.data:  # the German shop's export
                record.data["last_name"] = record.data.pop("Nachname")

    @hookimpl
    def crmkit_validate_batch(self, records: list[Any]) -> list[tuple[Any, list[FieldIssue]]]:
        self.saw("validate", records)
        seen: set[str] = set()
        rejected = []
        for record in records:
            email = record.clean.get("email")
            if email in seen:
                rejected.append((record, [FieldIssue("email", "duplicate_in_file", "appears earlier in the same file")]))
            if email:
                seen.add(email)
        return rejected

    @hookimpl
    def crmkit_enrich_batch(self, records: list[Any]) -> None:
        self.saw("enrich", records)
        for record in records:
            record.clean["tags"] = [*(record.clean.get("tags") or []), "shop"]

    @hookimpl
    def crmkit_match_batch(self, records: list[Any], crm: Any) -> None:
        self.saw("match", records)
        wanted = {r.context["shop_id"] for r in records if "shop_id" in r.context}
        with crm.read() as uow:
            table = uow.table("bulk_shop_customers")
            known = dict(uow.connection.execute(sa.select(table.c.shop_id, table.c.contact_id).where(table.c.shop_id.in_(wanted))).all())
        for record in records:
            if record.context.get("shop_id") in known:
                record.match_id = known[record.context["shop_id"]]

    @hookimpl
    def crmkit_persist_batch(self, records: list[Any], uow: Any) -> None:
        """VIPs are created here, tagged, with their shop id; the core writes the rest."""
        self.saw("persist", records)
        for record in records:
            if record.context.get("vip") and record.match_id is None:
                contact = Contact(**{k: v for k, v in record.clean.items() if v is not None})
                contact.tags.append("vip")
                uow.contacts.add(contact)
                uow.connection.execute(sa.insert(uow.table("bulk_shop_customers")).values(shop_id=record.context["shop_id"], contact_id=contact.id))
                uow.emit("contact.created", contact.id, to_jsonable(contact))
                record.contact_id, record.outcome = contact.id, "created"


def test_batch_stages(crm_factory, events):
    bulk = Bulk()
    crm = crm_factory(plugins=[bulk])
    intake = crm.intake
    rows = [
        intake.record({"email": "vip@shop.example", "Nachname": "Ng"}, context={"vip": True, "shop_id": "S-1"}),
        intake.record({"email": "ann@shop.example", "Nachname": "Lee"}),
        intake.record({"email": "ann@shop.example", "first_name": "Ann"}),
        intake.record({"email": "not an address"}),
    ]

    done = list(intake.submit_many(rows, batch_size=10))

    assert [r.outcome for r in done] == ["created", "created", "rejected", "rejected"]
    assert done[2].issues == [FieldIssue("email", "duplicate_in_file", "appears earlier in the same file")]
    assert done[3].issues[0].field == "email" and done[3].issues[0].code != "duplicate_in_file"  # the core's own check
    assert bulk.batch_sizes == {"normalize": [4], "validate": [3], "enrich": [2], "match": [2], "persist": [2]}

    vip = crm.contacts.get(done[0].contact_id)
    assert (vip.last_name, vip.tags) == ("Ng", ["shop", "vip"])
    ann = crm.contacts.get(done[1].contact_id)
    assert (ann.last_name, ann.tags) == ("Lee", ["shop"])
    assert crm.contacts.count() == 2  # the VIP was written once, by the plugin, not again by the core
    assert events.types().count("contact.created") == 2

    # A second file: the shop id matches the VIP although the address changed, and the core's
    # e-mail matcher, which runs after the plugin's, does not undo that match.
    again = list(intake.submit_many([
        intake.record({"email": "vip.new@shop.example", "first_name": "Vi"}, context={"shop_id": "S-1"}),
        intake.record({"email": "ann@shop.example", "first_name": "Ann"}),
    ]))
    assert [(r.contact_id, r.outcome) for r in again] == [(vip.id, "updated"), (ann.id, "updated")]
    assert crm.contacts.get(vip.id).email == "vip.new@shop.example"
    assert crm.contacts.count() == 2
