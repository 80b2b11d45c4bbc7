"""Exports: filters, streaming in chunks, and the round trip export → import."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from crmkit.transfer import ExportFilters, export, export_contacts, import_contacts

VOLATILE = ("id", "created_at", "updated_at", "version", "external_id.import")


def export_rows(crm, what: str, **filters) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    export(crm, what, out, filters=ExportFilters(**filters))
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def seed_contacts(crm) -> None:
    crm.custom_fields.define("contact", "budget", "number")
    crm.custom_fields.define("contact", "vip", "bool")
    crm.intake.submit({"first_name": "Zoë", "last_name": "Ünal", "email": "zoe@example.com", "phone": "+49 30 901820",
                       "address": {"city": "Berlin", "country": "DE"}, "tags": ["vip", "beta"], "lifecycle_stage": "customer",
                       "custom": {"budget": "1200.5", "vip": "yes"}, "source": {"utm_campaign": "spring"}, "birth_date": "1990-02-03"})
    crm.intake.submit({"first_name": "Ada", "email": "ada@example.com", "tags": ["math"], "score": 12.5})
    crm.intake.submit({"first_name": "Only", "last_name": "Names", "job_title": "Poet, \"quoted\""})


def comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(({k: v for k, v in row.items() if k not in VOLATILE} for row in rows), key=lambda r: (r["email"], r["first_name"]))


def test_contacts_csv_round_trip_into_a_fresh_crm_and_back(crm_factory, tmp_path):
    source = crm_factory()
    seed_contacts(source)
    path = tmp_path / "contacts.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        assert export_contacts(source, handle) == 3
    exported = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    zoe = next(r for r in exported if r["email"] == "zoe@example.com")
    assert (zoe["address.city"], zoe["tags"], zoe["custom.budget"], zoe["custom.vip"], zoe["source.utm_campaign"]) == (
        "Berlin", "vip,beta", "1200.5", "true", "spring")

    target = crm_factory()
    target.custom_fields.define("contact", "budget", "number")
    target.custom_fields.define("contact", "vip", "bool")
    summary = import_contacts(target, path)
    assert (summary.read, summary.created, summary.rejected) == (3, 3, 0)
    assert comparable(export_rows(target, "contacts")) == comparable(exported)
    # Importing the export into the CRM it came from changes nothing, the row without an
    # e-mail or phone included (its external id travels in the export).
    again = import_contacts(source, path)
    assert (again.created, again.updated, again.skipped) == (0, 0, 3)
    assert source.contacts.count() == 3


def test_contacts_jsonl_round_trip(crm_factory, tmp_path):
    source = crm_factory()
    seed_contacts(source)
    path = tmp_path / "contacts.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        export_contacts(source, handle, format="jsonl")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {r["email"] for r in records} == {"zoe@example.com", "ada@example.com", None}
    zoe = next(r for r in records if r["email"] == "zoe@example.com")
    assert zoe["address"]["city"] == "Berlin" and zoe["custom"] == {"budget": 1200.5, "vip": True}
    target = crm_factory()
    target.custom_fields.define("contact", "budget", "number")
    target.custom_fields.define("contact", "vip", "bool")
    assert import_contacts(target, path).created == 3
    assert comparable(export_rows(target, "contacts")) == comparable(export_rows(source, "contacts"))


def test_contact_filters_by_tag_lifecycle_stage_and_since(crm):
    seed_contacts(crm)
    assert [r["email"] for r in export_rows(crm, "contacts", tag="VIP")] == ["zoe@example.com"]
    assert [r["email"] for r in export_rows(crm, "contacts", lifecycle_stage="customer")] == ["zoe@example.com"]
    assert len(export_rows(crm, "contacts", since=(datetime.now(UTC) - timedelta(hours=1)).isoformat())) == 3
    assert export_rows(crm, "contacts", since=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []


def test_export_streams_in_chunks_in_creation_order(any_crm):
    ids = [any_crm.intake.submit({"email": f"p{i}@example.com"}).contact.id for i in range(7)]
    out = io.StringIO(newline="")
    assert export(any_crm, "contacts", out, chunk_size=2) == 7
    assert [r["id"] for r in csv.DictReader(io.StringIO(out.getvalue(), newline=""))] == ids


def test_deal_and_activity_filters(any_crm):
    any_crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1, "won")])
    any_crm.pipelines.create("Renewals", [("Open", 0.5, "open")])
    ada = any_crm.intake.submit({"email": "ada@example.com"}).contact
    any_crm.deals.create({"title": "A", "pipeline": "Sales", "contact_id": ada.id, "amount": "10"})
    any_crm.deals.create({"title": "B", "pipeline": "Sales", "stage": "Won", "amount": "20"})
    any_crm.deals.create({"title": "C", "pipeline": "Renewals"})
    assert sorted(r["title"] for r in export_rows(any_crm, "deals", pipeline="Sales")) == ["A", "B"]
    won = export_rows(any_crm, "deals", pipeline="Sales", stage="Won")
    assert [(r["title"], r["stage"], r["status"], r["amount"]) for r in won] == [("B", "Won", "won", "20")]
    assert [r["contact_email"] for r in export_rows(any_crm, "deals", status="open", pipeline="Sales")] == ["ada@example.com"]

    any_crm.activities.log({"kind": "call", "contact_id": ada.id, "payload": {"minutes": 12}})
    any_crm.activities.log({"kind": "note", "contact_id": ada.id, "occurred_at": "2020-01-01T00:00:00+00:00"})
    calls = export_rows(any_crm, "activities", kind="call")
    assert [(r["kind"], json.loads(r["payload"])) for r in calls] == [("call", {"minutes": 12})]
    assert [r["kind"] for r in export_rows(any_crm, "activities", since="2021-01-01")] == ["call"]


def test_exported_deals_import_back(crm_factory, tmp_path):
    source = crm_factory()
    source.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1, "won")])
    ada = source.intake.submit({"email": "ada@example.com"}).contact
    source.deals.create({"title": "A", "pipeline": "Sales", "contact_id": ada.id, "amount": "10.25", "currency": "EUR"})
    path = tmp_path / "deals.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        export(source, "deals", handle)
    from crmkit.transfer import import_deals

    # The contact_id column names a contact of the source CRM; into the same CRM it matches.
    again = import_deals(source, path)
    assert (again.created, again.skipped, again.rejected) == (0, 1, 0)


def test_cli_export_to_stdout_and_to_a_file(crm, cli, tmp_path):
    seed_contacts(crm)
    result = cli("export", "contacts", "--tag", "math")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["email"] for r in rows] == ["ada@example.com"]
    out = tmp_path / "all.jsonl"
    result = cli("export", "contacts", "--format", "jsonl", "--out", str(out))
    assert result.exit_code == 0 and "Exported 3 contacts" in result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3
    bad = cli("export", "deals", "--stage", "Won")
    assert bad.exit_code == 1 and "--pipeline" in bad.stderr
