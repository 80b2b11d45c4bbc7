"""Imports: reading any CSV dialect and encoding, JSON Lines, mapping columns, the errors file,
dry runs, duplicates, idempotent re-runs, organizations and deals, and the 100k-row acceptance
test of the "Clean data" issue."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from crmkit.errors import ValidationFailed
from crmkit.transfer import import_contacts, import_deals, import_organizations

HEADER = ["First Name", "Last Name", "E-mail", "Phone", "City", "Tags"]
ROWS = [
    ["Zoë", "Ünal", "zoe@example.com", "+49 30 901820", "Berlin", "vip,beta"],
    ["José", "Müller", "jose@example.com", "", "Zürich", ""],
    ["Ada", "Lovelace", "ADA@Example.com", "+44 20 7946 0958", "London", "math"],
]


def write_csv(path: Path, rows: list[list[str]], *, header: list[str] = HEADER, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def contacts_by_email(crm) -> dict[str, object]:
    return {c.email: c for c in crm.contacts.list(limit=None)}


def counts(summary) -> tuple[int, int, int, int, int]:
    return summary.read, summary.created, summary.updated, summary.skipped, summary.rejected


# --- dialects and encodings ---------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "encoding", "detected"), [
    (",", "utf-8", "utf-8"),
    (";", "utf-8-sig", "utf-8-sig"),
    ("\t", "utf-16", "utf-16"),
    ("|", "cp1252", "cp1252"),
])
def test_any_delimiter_and_encoding_is_detected(crm, tmp_path, delimiter, encoding, detected):
    path = write_csv(tmp_path / "people.csv", ROWS, delimiter=delimiter, encoding=encoding)
    summary = import_contacts(crm, path)
    assert (summary.encoding, summary.delimiter) == (detected, delimiter)
    assert counts(summary) == (3, 3, 0, 0, 0)
    people = contacts_by_email(crm)
    assert (people["zoe@example.com"].first_name, people["zoe@example.com"].last_name) == ("Zoë", "Ünal")
    assert people["jose@example.com"].address.city == "Zürich"
    assert people["zoe@example.com"].tags == ["vip", "beta"]
    assert people["zoe@example.com"].phone == "+4930901820"
    assert "ada@example.com" in people


def test_encoding_can_be_forced(crm, tmp_path):
    # Bytes that are valid cp1252 *and* valid latin-1 read differently: \x80 is € in cp1252.
    path = write_csv(tmp_path / "legacy.csv", [["Euro\u20ac", "Person", "euro@example.com", "", "", ""]], encoding="cp1252")
    import_contacts(crm, path, encoding="latin-1")
    assert contacts_by_email(crm)["euro@example.com"].first_name == "Euro\x80"


def test_unknown_encoding_is_an_error_naming_it(crm, tmp_path):
    path = write_csv(tmp_path / "people.csv", ROWS)
    with pytest.raises(ValidationFailed) as caught:
        import_contacts(crm, path, encoding="no-such-codec")
    assert caught.value.issues[0].field == "encoding"


def test_a_row_in_another_encoding_is_rejected_with_the_column_not_a_crash(crm, tmp_path):
    good = write_csv(tmp_path / "mixed.csv", ROWS).read_bytes()
    bad_row = "Fran\u00e7ois,Bad,francois@example.com,,Nantes,\r\n".encode("cp1252")  # ç as one byte 0xe7
    path = tmp_path / "mixed.csv"
    path.write_bytes(good + bad_row)
    summary = import_contacts(crm, path)
    assert counts(summary) == (4, 3, 0, 0, 1)
    with open(summary.errors_file, encoding="utf-8", errors="surrogateescape", newline="") as handle:
        rejected = list(csv.DictReader(handle))
    assert rejected[0]["_row"] == "5"
    assert rejected[0]["_errors"].startswith("First Name: byte 0xe7 is not valid utf-8")
    assert "[invalid_encoding]" in rejected[0]["_errors"]
    # The bytes are kept as they were, for a person to fix.
    assert Path(summary.errors_file).read_bytes().count(b"Fran\xe7ois") == 1
    assert "francois@example.com" not in contacts_by_email(crm)


def test_json_lines_with_nested_objects_and_broken_lines(crm, tmp_path):
    path = tmp_path / "people.jsonl"
    lines = [
        json.dumps({"first_name": "Ada", "email": "ada@example.com", "address": {"city": "London"}, "tags": ["a", "b"],
                    "external_ids": {"shop": "C-1"}}),
        "",
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"email": "grace@example.com", "favourite_colour": "blue"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = import_contacts(crm, path)
    assert counts(summary) == (4, 1, 0, 0, 3)
    ada = contacts_by_email(crm)["ada@example.com"]
    assert (ada.address.city, ada.tags) == ("London", ["a", "b"])
    errors = [json.loads(line) for line in Path(summary.errors_file).read_text().splitlines()]
    assert [e["_row"] for e in errors] == [3, 4, 5]
    assert "[invalid_json]" in errors[0]["_errors"]
    assert errors[2]["_errors"].startswith("favourite_colour:")
    # The external id given in the file makes a re-import match it.
    assert counts(import_contacts(crm, path)) == (4, 0, 0, 1, 3)


# --- mapping ------------------------------------------------------------------------------


def test_map_custom_fields_nested_fields_tags_and_external_ids(crm, cli, tmp_path):
    crm.custom_fields.define("contact", "budget", "number")
    header = ["Mail", "Vorname", "Budget", "Stadt", "Labels", "Shop ID", "Kampagne", "Notes"]
    path = write_csv(tmp_path / "shop.csv", [["ada@example.com", "Ada", "1200.50", "London", "a, b", "C-1", "spring", "x"],
                                            ["", "Nobody", "12", "", "", "C-2", "", ""]], header=header)
    args = ["import", "contacts", str(path), "--map", "Mail=email", "--map", "Vorname=first_name", "--map", "Budget=custom.budget",
            "--map", "Stadt=address.city", "--map", "Shop ID=external_id.shop", "--map", "Kampagne=source.utm_campaign", "--map", "Notes="]
    summary = cli.json(*args)
    assert {k: summary[k] for k in ("read", "created", "rejected", "errors_file")} == {"read": 2, "created": 2, "rejected": 0, "errors_file": None}
    ada = contacts_by_email(crm)["ada@example.com"]
    assert (ada.first_name, ada.custom, ada.address.city, ada.tags, ada.source.utm_campaign) == ("Ada", {"budget": 1200.5}, "London", ["a", "b"], "spring")
    with crm.read() as uow:
        table = uow.tables["external_ids"]
        known = dict(uow.connection.execute(sa.select(table.c.value, table.c.contact_id).where(table.c.system == "shop")).all())
    assert known["C-1"] == ada.id
    # Matched on the shop id the second time, even for the row without an e-mail address.
    again = cli.json(*args)
    assert (again["created"], again["skipped"]) == (0, 2)
    assert crm.contacts.count() == 2


def test_a_column_matching_no_field_fails_before_anything_is_written(crm, cli, tmp_path):
    path = write_csv(tmp_path / "people.csv", ROWS, header=[*HEADER[:-1], "Favourite colour"])
    result = cli("import", "contacts", str(path))
    assert result.exit_code == 1
    assert "Favourite colour" in result.stderr and "--map" in result.stderr
    assert crm.contacts.count() == 0
    ok = cli.json("import", "contacts", str(path), "--ignore-unknown")
    assert ok["created"] == 3


def test_map_to_an_undefined_custom_field_names_it(crm, tmp_path):
    path = write_csv(tmp_path / "people.csv", ROWS)
    with pytest.raises(ValidationFailed) as caught:
        import_contacts(crm, path, mapping=["Tags=custom.nope"])
    assert caught.value.issues[0].field == "custom.nope"
    assert "no custom field 'nope'" in caught.value.issues[0].message


# --- the errors file, dry runs, duplicates ------------------------------------------------


def test_errors_file_can_be_fixed_and_imported_as_it_is(crm, tmp_path):
    rows = [*ROWS, ["Bad", "Mail", "bad@", "", "", ""], ["Bad", "Phone", "phone@example.com", "12", "", ""]]
    path = write_csv(tmp_path / "people.csv", rows)
    first = import_contacts(crm, path)
    assert counts(first) == (5, 3, 0, 0, 2)
    errors_path = Path(first.errors_file)
    assert errors_path == tmp_path / "people.errors.csv"
    with errors_path.open(newline="", encoding="utf-8") as handle:
        rejected = list(csv.DictReader(handle))
    assert [(r["_row"], r["_errors"].split(":")[0]) for r in rejected] == [("5", "email"), ("6", "phone")]
    assert rejected[1]["_errors"].endswith("[invalid_phone]")
    # Fix the rows in place and import the errors file itself: its _row/_errors are ignored.
    text = errors_path.read_text(encoding="utf-8").replace("bad@,", "bad@example.com,").replace(",12,", ",+1 212 555 0123,")
    errors_path.write_text(text, encoding="utf-8")
    second = import_contacts(crm, errors_path)
    assert counts(second) == (2, 2, 0, 0, 0)
    assert second.errors_file is None
    assert crm.contacts.count() == 5
    # A clean run of the original file leaves no stale errors file behind.
    import_contacts(crm, write_csv(path, ROWS))
    assert not errors_path.exists()


def test_dry_run_validates_and_matches_but_writes_nothing(crm, tmp_path):
    crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"})
    rows = [*ROWS, ["Bad", "Mail", "bad@", "", "", ""]]
    path = write_csv(tmp_path / "people.csv", rows)
    with crm.read() as uow:
        outbox_before = uow.connection.execute(sa.select(sa.func.count()).select_from(uow.tables["outbox_events"])).scalar_one()
    summary = import_contacts(crm, path, dry_run=True)
    assert counts(summary) == (4, 2, 1, 0, 1)
    assert summary.dry_run is True
    assert crm.contacts.count() == 1
    assert crm.contacts.find_by_email("ada@example.com").last_name is None
    with crm.read() as uow:
        assert uow.connection.execute(sa.select(sa.func.count()).select_from(uow.tables["outbox_events"])).scalar_one() == outbox_before
        assert uow.connection.execute(sa.select(sa.func.count()).select_from(uow.tables["external_ids"])).scalar_one() == 0


@pytest.mark.parametrize(("mode", "expected", "last_name", "contacts"), [
    ("update", (1, 0, 1, 0, 0), "Lovelace", 1),
    ("skip", (1, 0, 0, 1, 0), None, 1),
    ("create", (1, 1, 0, 0, 0), None, 2),
])
def test_on_duplicate_modes(crm, tmp_path, mode, expected, last_name, contacts):
    original = crm.intake.submit({"email": "ada@example.com", "first_name": "Ada"}).contact
    path = write_csv(tmp_path / "people.csv", [["Ada", "Lovelace", "ada@example.com", "", "", ""]])
    assert counts(import_contacts(crm, path, on_duplicate=mode)) == expected
    assert crm.contacts.get(original.id).last_name == last_name
    assert crm.contacts.count() == contacts


def test_json_summary_has_the_documented_keys(cli, tmp_path):
    path = write_csv(tmp_path / "people.csv", [*ROWS, ["", "", "nope", "", "", ""]])
    result = cli("import", "contacts", str(path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"read", "created", "updated", "skipped", "rejected", "errors_file"} <= set(summary)
    assert (summary["read"], summary["created"], summary["rejected"]) == (4, 3, 1)
    assert Path(summary["errors_file"]).is_file()


def test_human_summary(cli, tmp_path):
    result = cli("import", "contacts", str(write_csv(tmp_path / "people.csv", ROWS)), "--dry-run")
    assert result.exit_code == 0
    assert "Dry run" in result.stdout and "3 created" in result.stdout


# --- idempotence on every backend, and workers --------------------------------------------


def test_import_and_reimport_on_every_backend(any_crm, tmp_path):
    rows = [*ROWS, ["Only", "Names", "", "", "Oslo", ""], ["Only", "Names", "", "", "Oslo", ""], ["Bad", "Mail", "bad@", "", "", ""]]
    path = write_csv(tmp_path / "people.csv", rows)
    first = import_contacts(any_crm, path, batch_size=2)
    # The two identical rows without an e-mail or phone are one person (same content key).
    assert counts(first) == (6, 4, 0, 1, 1)
    second = import_contacts(any_crm, path, batch_size=2)
    assert counts(second) == (6, 0, 0, 5, 1)
    assert any_crm.contacts.count() == 4


def test_workers_give_the_same_result_as_one_process(crm_factory, tmp_path):
    rng = random.Random(7)
    rows = []
    for i in range(600):
        email = f"p{i % 450}@example.com" if i % 10 else f"broken{i}@"
        phone = "" if i % 3 else f"+1 212 555 {1000 + i % 500:04d}"
        rows.append([f"First{i % 450}", rng.choice(["Lee", "Kim", ""]), email, phone, "", "t1,t2" if i % 2 else ""])
    path = write_csv(tmp_path / "people.csv", rows)
    one, two = crm_factory(), crm_factory()
    single = import_contacts(one, path, batch_size=50, errors_path=tmp_path / "one.csv")
    parallel = import_contacts(two, path, batch_size=50, workers=2, errors_path=tmp_path / "two.csv")
    assert counts(single) == counts(parallel)

    def state(crm):
        return sorted((c.email or "", c.phone or "", c.first_name or "", c.last_name or "", tuple(c.tags)) for c in crm.contacts.list(limit=None))

    assert state(one) == state(two)
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()


# --- organizations and deals --------------------------------------------------------------


def test_organizations_import_matches_on_domain_then_name(any_crm, tmp_path):
    any_crm.custom_fields.define("organization", "tier", "choice", choices=["gold", "silver"])
    path = write_csv(tmp_path / "orgs.csv", [
        ["Acme", "https://www.acme.com/about", "Paris", "gold"],
        ["Globex", "", "Rome", ""],
        ["", "nameless.com", "", ""],
        ["Initech", "initech.com", "", "platinum"],
    ], header=["Company", "Website", "City", "Tier"], delimiter=";")
    first = import_organizations(any_crm, path, mapping=["Tier=custom.tier"])
    assert counts(first) == (4, 2, 0, 0, 2)
    with open(first.errors_file, newline="", encoding="utf-8") as handle:
        reasons = [r["_errors"] for r in csv.DictReader(handle)]
    assert reasons[0].startswith("name: is required") and "custom.tier: 'platinum' is not one of: gold, silver" in reasons[1]
    acme = any_crm.organizations.list(name="Acme")[0]
    assert (acme.domain, acme.address.city, acme.custom) == ("https://www.acme.com/about", "Paris", {"tier": "gold"})
    assert counts(import_organizations(any_crm, path, mapping=["Tier=custom.tier"])) == (4, 0, 0, 2, 2)
    renamed = write_csv(tmp_path / "renamed.csv", [["Acme Corporation", "acme.com", "", ""]], header=["Company", "Website", "City", "Tier"])
    assert counts(import_organizations(any_crm, renamed, mapping=["Tier=custom.tier"])) == (1, 0, 1, 0, 0)
    assert any_crm.organizations.get(acme.id).name == "Acme Corporation"
    assert any_crm.organizations.count() == 2


def test_deals_import_with_pipeline_stage_and_contact_email(any_crm, tmp_path):
    any_crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Proposal", 0.5, "open"), ("Won", 1, "won"), ("Lost", 0, "lost")])
    ada = any_crm.intake.submit({"email": "ada@example.com"}).contact
    header = ["Deal name", "Pipeline", "Stage", "Value", "Currency", "Contact e-mail", "Close date"]
    path = write_csv(tmp_path / "deals.csv", [
        ["Big one", "Sales", "Proposal", "1200.50", "EUR", "ada@example.com", "2025-01-31"],
        ["Won one", "Sales", "Won", "10", "", "", ""],
        ["Orphan", "Sales", "", "5", "", "nobody@example.com", ""],
        ["Lost pipeline", "Nope", "", "5", "", "", ""],
        ["Bad amount", "Sales", "", "-3", "", "", ""],
    ], header=header)
    first = import_deals(any_crm, path)
    assert counts(first) == (5, 2, 0, 0, 3)
    with open(first.errors_file, newline="", encoding="utf-8") as handle:
        reasons = [r["_errors"] for r in csv.DictReader(handle)]
    assert reasons[0].startswith("contact_email: no contact with e-mail 'nobody@example.com' [not_found]")
    assert reasons[1].startswith("pipeline: no pipeline named 'Nope'")
    assert reasons[2].startswith("amount:")
    deals = {d.title: d for d in any_crm.deals.list(limit=None)}
    big = deals["Big one"]
    assert (big.contact_id, str(big.amount), big.currency, big.expected_close.isoformat()) == (ada.id, "1200.5", "EUR", "2025-01-31")
    pipeline = any_crm.pipelines.get("Sales")
    assert big.stage_id == pipeline.stage_named("Proposal").id
    assert deals["Won one"].status.value == "won" and deals["Won one"].closed_at is not None
    assert len(any_crm.deals.history(big.id)) == 1
    again = import_deals(any_crm, path)
    assert counts(again) == (5, 0, 0, 2, 3)
    assert any_crm.deals.count() == 2


def test_deals_take_the_pipeline_option_for_rows_without_one(crm, cli, tmp_path):
    crm.pipelines.create("Sales", [("Lead", 0.1, "open"), ("Won", 1, "won")])
    path = write_csv(tmp_path / "deals.csv", [["One", "100"], ["Two", "200"]], header=["Title", "Amount"])
    missing = cli.json("import", "deals", str(path))
    assert (missing["created"], missing["rejected"]) == (0, 2)
    summary = cli.json("import", "deals", str(path), "--pipeline", "Sales")
    assert (summary["created"], summary["rejected"]) == (2, 0)


def test_xlsx_import_when_openpyxl_is_installed(crm, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for row in ROWS:
        sheet.append(row)
    sheet.append([None] * len(HEADER))
    sheet.append(["Bad", "Mail", "bad@", None, None, None])
    path = tmp_path / "people.xlsx"
    book.save(path)
    summary = import_contacts(crm, path)
    assert counts(summary) == (4, 3, 0, 0, 1)
    assert summary.errors_file.endswith("people.errors.csv")
    assert counts(import_contacts(crm, path)) == (4, 0, 0, 3, 1)


# --- the acceptance test of the "Clean data" issue ----------------------------------------


def generate_messy_file(path: Path, rows: int, seed: int = 2024) -> dict[str, int]:
    """A UTF-8 CSV of ``rows`` contacts, 5% of them malformed in one of four ways (a bad
    e-mail, a bad phone, no identifying field at all, a row saved as cp1252). Deterministic.
    Returns how many rows of each kind were written."""
    rng = random.Random(seed)
    kinds = {"good": 0, "bad_email": 0, "bad_phone": 0, "missing": 0, "bad_encoding": 0}
    first_names = ["Zoë", "José", "Ada", "Grace", "Ünal", "Chloé", "Søren", "Li", "Amara", "Jörg"]
    with path.open("wb") as handle:
        handle.write(b"first_name,last_name,email,phone,city,tags\r\n")
        for i in range(rows):
            first, last = rng.choice(first_names), f"Family{i}"
            email = f"person{i}@example{i % 97}.com"
            phone = f"+1 212 {200 + (i // 10000) % 700} {i % 10000:04d}" if i % 4 == 0 else ""
            kind = "good"
            if i % 20 == 7:  # 5% malformed, spread evenly through the file
                kind = ("bad_email", "bad_phone", "missing", "bad_encoding")[(i // 20) % 4]
            if kind == "bad_email":
                email = f"person{i}@@example.com"
            elif kind == "bad_phone":
                phone = "+1 000"
            elif kind == "missing":
                first = last = email = phone = ""
            elif kind == "bad_encoding":
                first = "Chloé"  # é is one byte (0xe9) in cp1252, not valid UTF-8
            line = f"{first},{last},{email},{phone},Town{i % 50},t{i % 3}\r\n"
            handle.write(line.encode("cp1252" if kind == "bad_encoding" else "utf-8"))
            kinds[kind] += 1
    return kinds


@pytest.mark.slow
def test_100k_rows_with_5_percent_malformed_import_exactly_the_good_rows_and_rerun_changes_nothing(crm_factory, tmp_path):
    # Events wait in the outbox (as with a separate dispatcher): this test is about the import,
    # not about what each installed subscriber does with 95,000 contact.created events.
    crm = crm_factory(dispatch_inline=False)
    path = tmp_path / "contacts.csv"
    kinds = generate_messy_file(path, 100_000)
    bad = kinds["bad_email"] + kinds["bad_phone"] + kinds["missing"] + kinds["bad_encoding"]
    assert bad == 5_000

    first = import_contacts(crm, path, batch_size=2000)
    assert counts(first) == (100_000, kinds["good"], 0, 0, bad)
    assert crm.contacts.count() == kinds["good"]

    with open(first.errors_file, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rejected = list(csv.DictReader(handle))
    assert len(rejected) == bad
    codes = {}
    for row in rejected:
        code = row["_errors"].rsplit("[", 1)[1].rstrip("]")
        codes[code] = codes.get(code, 0) + 1
        assert row["_errors"] and int(row["_row"]) >= 2
    assert codes == {"invalid_email": kinds["bad_email"], "invalid_phone": kinds["bad_phone"],
                     "required": kinds["missing"], "invalid_encoding": kinds["bad_encoding"]}

    with crm.read() as uow:
        outbox = uow.tables["outbox_events"]
        created_events = uow.connection.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.type == "contact.created")).scalar_one()
        all_events = uow.connection.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one()
    assert created_events == kinds["good"]

    second = import_contacts(crm, path, batch_size=2000)
    assert counts(second) == (100_000, 0, 0, kinds["good"], bad)
    assert crm.contacts.count() == kinds["good"]
    with crm.read() as uow:
        assert uow.connection.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == all_events  # no event either


def test_deferred_events_wait_in_the_outbox_for_the_dispatcher(crm, events, tmp_path):
    summary = import_contacts(crm, write_csv(tmp_path / "people.csv", ROWS), defer_events=True)
    assert summary.created == 3
    assert "contact.created" not in events.types()
    assert crm.dispatch_inline is True  # restored after the import
    assert crm.events.counts()["pending"] == 3
    crm.events.drain()
    assert events.types().count("contact.created") == 3
