"""``crm.dedupe`` / ``crmkit dedupe scan``: duplicate detection over the contacts a CRM stores.

Contacts go in through the intake pipeline (``on_duplicate=create``, so the pipeline does not
match them away before the scan can) among a few hundred distinct people, some sharing a name.
The storage-facing tests run on SQLite, PostgreSQL and MariaDB (``any_crm``); the command-line
ones on SQLite.
"""

from __future__ import annotations

import json
import random

import pytest
from crmkit.dedupe import contact_record
from crmkit.dedupe.scan import RECORD_FIELDS, CandidatePair, DuplicateScanner
from crmkit.domain import Address, Contact
from crmkit.errors import ValidationFailed

GIVEN = ["Oliver", "Ruby", "Jack", "Chloe", "Liam", "Ava", "Noah", "Mia", "Ethan", "Zoe", "Lucas", "Isla", "Mason", "Ella",
         "Henry", "Ivy", "Leo", "Grace", "Owen", "Lily"]
FAMILY = ["Smith", "Brown", "Wilson", "Taylor", "Nguyen", "Martin", "White", "Clarke", "Walker", "Hall", "Young", "King",
          "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Carter",
          "Phillips", "Evans"]
TOWNS = [("Springfield", "62701"), ("Shelbyville", "62565"), ("Ogdenville", "62702"), ("Brockway", "62703"),
         ("North Haverbrook", "62704"), ("Capital City", "62705")]

#: name → the fields it is stored with; pairs of names in DUPLICATES are one person.
PEOPLE: dict[str, dict[str, object]] = {
    # a typo in the family name, the e-mail left out on the second entry
    "johnson": {"first_name": "Katherine", "last_name": "Johnson", "email": "katherine.johnson@example.com",
                "phone": "+14155550101", "birth_date": "1918-08-26",
                "address": {"street": "1 Langley Road", "city": "Hampton", "postcode": "23681"}},
    "jonhson": {"first_name": "Katherine", "last_name": "Jonhson", "phone": "+1 415 555 0101", "birth_date": "1918-08-26",
                "address": {"street": "1 Langley Rd", "city": "Hampton", "postcode": "23681"}},
    # given and family name swapped
    "turing": {"first_name": "Alan", "last_name": "Turing", "email": "alan@example.org", "birth_date": "1912-06-23",
               "address": {"street": "78 High Street", "city": "Wilmslow", "postcode": "SK9 1AA"}},
    "swapped": {"first_name": "Turing", "last_name": "Alan", "birth_date": "1912-06-23", "phone": "+14155550144",
                "address": {"street": "78 High Street", "city": "Wilmslow", "postcode": "SK9 1AA"}},
    # the same e-mail address in another case
    "hopper": {"first_name": "Grace", "last_name": "Hopper", "email": "grace.hopper@example.net", "birth_date": "1906-12-09",
               "address": {"city": "Arlington", "postcode": "22201"}},
    "hopper_caps": {"first_name": "Grace", "last_name": "Hopper", "email": "GRACE.HOPPER@EXAMPLE.NET",
                    "address": {"city": "Arlington", "postcode": "22201"}},
    # one phone number written two ways
    "dijkstra": {"first_name": "Edsger", "last_name": "Dijkstra", "phone": "+1 (415) 555-0177", "email": "ewd@example.com",
                 "address": {"street": "5 Nuenen Lane", "city": "Austin", "postcode": "78701"}},
    "dijkstra_phone": {"first_name": "Edsger", "last_name": "Dijkstra", "phone": "+1.415.555.0177",
                       "address": {"street": "5 Nuenen Lane", "city": "Austin", "postcode": "78701"}},
    # two different people who share a name
    "smith_1": {"first_name": "John", "last_name": "Smith", "email": "john.smith@example.com", "phone": "+14155550155",
                "birth_date": "1970-01-05", "address": {"street": "12 Oak Street", "city": "Springfield", "postcode": "62701"}},
    "smith_2": {"first_name": "John", "last_name": "Smith", "email": "jsmith@example.org", "phone": "+14155550166",
                "birth_date": "1985-07-30", "address": {"street": "400 Mill Road", "city": "Shelbyville", "postcode": "62565"}},
}
DUPLICATES = [("johnson", "jonhson"), ("turing", "swapped"), ("hopper", "hopper_caps"), ("dijkstra", "dijkstra_phone")]


def background(count: int, seed: int = 7) -> list[dict[str, object]]:
    """Distinct people: names drawn from short lists (so namesakes occur), everything else their own."""
    rng = random.Random(seed)
    people = []
    for k in range(count):
        town, postcode = rng.choice(TOWNS)
        first, last = rng.choice(GIVEN), rng.choice(FAMILY)
        person: dict[str, object] = {
            "first_name": first, "last_name": last,
            "address": {"street": f"{rng.randint(1, 400)} {rng.choice(['Kent', 'Oak', 'High', 'Mill', 'Elm'])} Street",
                        "city": town, "postcode": postcode},
        }
        if rng.random() < 0.7:
            person["email"] = f"{first}.{last}.{k}@example.com".lower()
        if rng.random() < 0.6:
            person["phone"] = f"+1415555{2000 + k:04d}"
        if rng.random() < 0.6:
            person["birth_date"] = f"{rng.randint(1930, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        people.append(person)
    return people


def store(crm, records: list[dict[str, object]]) -> list[str]:
    """Store through the intake pipeline without matching; the new contacts' ids, in order."""
    submitted = [crm.intake.record(r, on_duplicate="create", source="test") for r in records]
    done = list(crm.intake.submit_many(submitted))
    assert not [r.issues for r in done if r.rejected]
    return [r.contact_id for r in done]


def populate(crm, extra: int = 300) -> dict[str, str]:
    """PEOPLE among ``extra`` background contacts; name → contact id."""
    ids = store(crm, [*PEOPLE.values(), *background(extra)])
    return dict(zip(PEOPLE, ids, strict=False))


def ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


# --- storage: every backend ----------------------------------------------------------------------


def test_scan_finds_the_known_duplicates_and_explains_them(any_crm) -> None:
    ids = populate(any_crm)
    result = any_crm.dedupe.scan()
    pairs = {(p.a, p.b): p for p in result.pairs}
    expected = {ordered(ids[x], ids[y]) for x, y in DUPLICATES}

    assert expected <= set(pairs), [(x, y) for x, y in DUPLICATES if ordered(ids[x], ids[y]) not in pairs]
    # The pairs are certain enough to merge without a person; nothing else is.
    assert {key for key, p in pairs.items() if p.decision == "auto_merge"} == expected
    assert not {ids["smith_1"], ids["smith_2"]} & {c for key in pairs for c in key}, "namesakes reported as duplicates"
    assert len(pairs) <= len(expected) + 2 and all(p.decision == "review" for key, p in pairs.items() if key not in expected)
    assert [p.score for p in result.pairs] == sorted((p.score for p in result.pairs), reverse=True)

    def explained(x: str, y: str) -> dict[str, object]:
        pair = pairs[ordered(ids[x], ids[y])]
        assert pair.a < pair.b and pair.score >= 0.99
        assert pair.weight == pytest.approx(sum(e.weight for e in pair.explanation))
        return {e.field: e for e in pair.explanation}

    typo = explained("johnson", "jonhson")
    assert typo["last_name"].agreement in ("close", "similar") and 0.8 <= typo["last_name"].similarity < 1
    assert typo["email"].agreement == "missing" and typo["email"].weight == 0 and typo["email"].similarity is None
    assert typo["phone"].agreement == "exact" and typo["phone"].weight > 0  # +1 415 555 0101 is +14155550101
    swap = explained("turing", "swapped")
    assert swap["first_name"].note == "given and family name swapped" and swap["first_name"].weight > 0
    case = explained("hopper", "hopper_caps")
    assert case["email"].agreement == "exact" and case["email"].weight > 5
    phone = explained("dijkstra", "dijkstra_phone")
    assert phone["phone"].agreement == "exact" and phone["phone"].weight > 5

    summary = result.summary
    assert summary.contacts == len(PEOPLE) + 300 and summary.reported == len(result.pairs)
    assert summary.auto_merge == len(expected) and (summary.auto_merge_at, summary.review_at) == (0.99, 0.5)
    assert {c.ids for c in result.clusters} >= {tuple(sorted(key)) for key in expected}


def test_auto_merge_merges_each_pair_and_undo_restores_them(any_crm) -> None:
    ids = populate(any_crm, extra=200)
    before = {name: any_crm.contacts.get(i) for name, i in ids.items()}
    result = any_crm.dedupe.scan()
    merges = any_crm.dedupe.auto_merge(result)

    assert [m.status for m in merges] == ["merged"] * len(DUPLICATES)
    assert {ordered(m.a, m.b) for m in merges} == {ordered(ids[x], ids[y]) for x, y in DUPLICATES}
    for m in merges:
        assert {m.survivor_id, m.duplicate_id} == {m.a, m.b}
        assert any_crm.contacts.find(m.duplicate_id) is None
        assert any_crm.merges.get(m.merge_id).actor == "dedupe-scan"
    assert any_crm.contacts.count() == len(PEOPLE) + 200 - len(DUPLICATES)
    assert not {ordered(p.a, p.b) for p in any_crm.dedupe.scan().pairs if p.decision == "auto_merge"}

    for m in reversed(merges):
        any_crm.merges.undo(m.merge_id)
    for name, contact in before.items():
        assert any_crm.contacts.get(ids[name]) == contact
    again = any_crm.dedupe.scan()
    assert [(p.a, p.b, p.decision) for p in again.pairs] == [(p.a, p.b, p.decision) for p in result.pairs]


def test_a_skewed_block_is_capped_and_reported(any_crm) -> None:
    # 60 people typed in with the same placeholder birth date: 1,770 pairs if compared all with all.
    placeholder = [{**p, "birth_date": "1900-01-01"} for p in background(60, seed=3)]
    store(any_crm, [*PEOPLE.values(), *background(150), *placeholder])
    result = any_crm.dedupe.scan()
    summary = result.summary
    assert summary.capped_blocks >= 1 and summary.skipped_blocks == 0 and summary.largest_block >= 60
    assert any(w.startswith("birth_date: blocks over the cap of 20") and "19000101" in w for w in summary.warnings)
    skipped = any_crm.dedupe.scan(oversized="skip", max_block_size=30)
    assert skipped.summary.skipped_blocks >= 1 and skipped.summary.candidate_pairs < summary.candidate_pairs


# --- reading, options and the Python API (SQLite) ------------------------------------------------


def test_record_fields_are_the_engines_contact_record() -> None:
    contact = Contact(first_name="Ada", address=Address(city="London"))
    assert tuple(contact_record(contact)) == RECORD_FIELDS


def test_records_stream_in_pages_each_contact_once(crm) -> None:
    ids = store(crm, background(23))
    streamed = [r["id"] for r in crm.dedupe.records(page_size=5)]
    assert sorted(streamed) == streamed == sorted(ids)
    assert crm.dedupe.count() == 23
    row = next(r for r in crm.dedupe.records() if r["id"] == ids[0])
    assert set(row.keys()) == set(RECORD_FIELDS)
    with pytest.raises(ValidationFailed, match="page_size"):
        list(crm.dedupe.records(page_size=0))


def test_page_size_does_not_change_the_answer_and_progress_is_reported(crm) -> None:
    populate(crm, extra=120)
    seen: list[tuple[str, int, int | None]] = []
    paged = crm.dedupe.scan(page_size=7, progress=lambda stage, done, total: seen.append((stage, done, total)))
    whole = crm.dedupe.scan()
    assert [(p.a, p.b, p.score) for p in paged.pairs] == [(p.a, p.b, p.score) for p in whole.pairs]
    total = len(PEOPLE) + 120
    assert seen[0] == ("reading", 0, total) and ("reading", total, total) in seen and seen[-1] == ("scoring", 0, None)


def test_thresholds_limit_and_bad_options(crm) -> None:
    ids = populate(crm)
    strict = crm.dedupe.scan(review_at=0.999999, auto_merge_at=0.999999)
    assert strict.pairs and all(p.score >= 0.999999 and p.decision == "auto_merge" for p in strict.pairs)
    raised = crm.dedupe.scan(review_at=0.995)  # above the default auto-merge threshold: raised with it
    assert raised.summary.auto_merge_at == 0.995 and all(p.score >= 0.995 for p in raised.pairs)
    everything = crm.dedupe.scan(auto_merge_at=1.0)
    assert all(p.decision == "review" for p in everything.pairs) and everything.summary.auto_merge == 0
    top = crm.dedupe.scan(limit=2)
    assert len(top.pairs) == 2 and top.summary.reported == 2 and top.summary.auto_merge == len(DUPLICATES)
    assert crm.dedupe.auto_merge(top) and crm.contacts.count() == len(PEOPLE) + 300 - 2
    with pytest.raises(ValidationFailed, match="review_at"):
        crm.dedupe.scan(review_at=0.9, auto_merge_at=0.5)
    with pytest.raises(ValidationFailed, match="max_block_size"):
        crm.dedupe.scan(max_block_size=1)
    with pytest.raises(ValidationFailed, match="oversized"):
        crm.dedupe.scan(oversized="ignore")
    with pytest.raises(ValidationFailed, match="limit"):
        crm.dedupe.scan(limit=0)
    assert ids  # the contacts the scan ran over


def test_a_cluster_of_three_is_merged_pairwise_and_the_leftover_pair_skipped(crm) -> None:
    base = PEOPLE["johnson"]
    third = {**base, "email": "KATHERINE.JOHNSON@example.com", "address": {**base["address"], "street": "1 Langley Road"}}
    ids = store(crm, [base, PEOPLE["jonhson"], third, *background(200)])
    trio = set(ids[:3])
    result = crm.dedupe.scan()
    auto = [p for p in result.pairs if p.decision == "auto_merge"]
    assert {c for p in auto for c in (p.a, p.b)} == trio and len(auto) == 3
    merges = crm.dedupe.auto_merge(result)
    assert sorted(m.status for m in merges) == ["merged", "merged", "skipped"]
    assert [(m.a, m.b) for m in merges] == [(p.a, p.b) for p in auto]  # highest score first
    skipped = next(m for m in merges if m.status == "skipped")
    assert "earlier in this run" in skipped.reason and skipped.merge_id is None
    survivors = trio - {m.duplicate_id for m in merges if m.status == "merged"}
    assert len(survivors) == 1 and crm.contacts.find(next(iter(survivors))) is not None
    # The same scan merged again in the same order: deterministic.
    for m in reversed([m for m in merges if m.status == "merged"]):
        crm.merges.undo(m.merge_id)
    assert [(m.a, m.b, m.status) for m in crm.dedupe.auto_merge(crm.dedupe.scan())] == [(m.a, m.b, m.status) for m in merges]


def test_a_pair_gone_since_the_scan_is_skipped_not_an_error(crm) -> None:
    ids = populate(crm, extra=200)
    result = crm.dedupe.scan()
    crm.contacts.delete(ids["jonhson"])
    merges = {ordered(m.a, m.b): m for m in crm.dedupe.auto_merge(result)}
    gone = merges[ordered(ids["johnson"], ids["jonhson"])]
    assert gone.status == "skipped" and ids["jonhson"] in gone.reason and gone.merge_id is None
    assert sum(m.status == "merged" for m in merges.values()) == len(DUPLICATES) - 1


def test_auto_merge_takes_only_auto_merge_pairs_and_applies_rules(crm) -> None:
    ids = populate(crm, extra=200)
    result = crm.dedupe.scan()
    review = CandidatePair("x", "y", 0.7, 1.0, "review", ())
    merges = crm.dedupe.auto_merge([*result.pairs, review], rules={"email": "keep_b"})
    assert all(m.a != "x" for m in merges) and len(merges) == len(DUPLICATES)
    hopper = next(m for m in merges if ordered(m.a, m.b) == ordered(ids["hopper"], ids["hopper_caps"]))
    b_email = crm.merges.get(hopper.merge_id).rules["fields"]["email"]
    assert b_email["rule"] == "keep_b"
    assert isinstance(crm.dedupe, DuplicateScanner)


# --- the command line (SQLite) -------------------------------------------------------------------


def test_cli_scan_json_is_an_array_of_explained_pairs(crm, cli) -> None:
    ids = populate(crm)
    result = cli("dedupe", "scan", "--json")
    assert result.exit_code == 0, result.output
    pairs = json.loads(result.stdout)
    assert isinstance(pairs, list) and len(pairs) >= len(DUPLICATES)
    for pair in pairs:
        assert {"a", "b", "score", "decision", "explanation"} <= set(pair) and "merge" not in pair
        assert pair["a"] < pair["b"] and 0.5 <= pair["score"] <= 1
        assert pair["explanation"] and all({"field", "agreement", "similarity", "weight"} <= set(e) for e in pair["explanation"])
        assert pair["weight"] == pytest.approx(sum(e["weight"] for e in pair["explanation"]))
    found = {ordered(p["a"], p["b"]) for p in pairs}
    assert {ordered(ids[x], ids[y]) for x, y in DUPLICATES} <= found
    assert "Scanned" in result.stderr  # the summary goes to stderr, so stdout stays one JSON document
    assert len(cli.json("dedupe", "scan", "--limit", "1")) == 1
    assert all(p["score"] >= 0.999 for p in cli.json("dedupe", "scan", "--min-score", "0.999"))


def test_cli_scan_table_summary_and_capped_blocks(crm, cli) -> None:
    populate(crm, extra=150)
    store(crm, [{**p, "birth_date": "1900-01-01"} for p in background(40, seed=3)])
    result = cli("dedupe", "scan")
    assert result.exit_code == 0, result.output
    assert "Possible duplicates" in result.output and "auto_merge" in result.output
    assert f"Scanned {len(PEOPLE) + 190:,} contacts" in result.output
    assert "over the block cap" in result.output and "birth_date" in result.output
    assert "\x1b[" not in result.output and "Reading contacts" not in result.output  # no progress display off a terminal
    assert cli("dedupe", "scan", "--min-score", "0").exit_code == 2
    assert cli("dedupe", "scan", "--rule", "email=keep_a").exit_code == 2  # --rule needs --auto-merge
    bad = cli("dedupe", "scan", "--min-score", "0.9", "--auto-merge-at", "0.6")
    assert bad.exit_code == 1 and "review_at" in bad.output


def test_cli_auto_merge_reports_merge_ids_that_undo(crm, cli) -> None:
    ids = populate(crm, extra=200)
    pairs = cli.json("dedupe", "scan", "--auto-merge")
    merged = [p["merge"] for p in pairs if p["decision"] == "auto_merge"]
    assert len(merged) == len(DUPLICATES) and all(m["status"] == "merged" and m["merge_id"] for m in merged)
    assert all(p["merge"] is None for p in pairs if p["decision"] == "review")
    assert crm.contacts.count() == len(PEOPLE) + 200 - len(DUPLICATES)
    for m in reversed(merged):
        assert cli("dedupe", "undo", m["merge_id"]).exit_code == 0
    assert crm.contacts.count() == len(PEOPLE) + 200
    assert {ordered(p["a"], p["b"]) for p in cli.json("dedupe", "scan") if p["decision"] == "auto_merge"} == \
        {ordered(ids[x], ids[y]) for x, y in DUPLICATES}

    human = cli("dedupe", "scan", "--auto-merge", "--limit", "1")
    assert human.exit_code == 0 and "Auto-merge: 1 merged, 0 skipped, 0 failed." in human.output
    assert "crmkit dedupe undo MERGE_ID" in human.output
    merge_id = human.output.split("(merge ")[1].split(")")[0]
    assert crm.merges.get(merge_id).undone_at is None
