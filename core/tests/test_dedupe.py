"""The duplicate-detection engine: keys, blocking, comparators, explanations, EM and decisions."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from datetime import date

import pytest
from crmkit.dedupe import DedupeConfig, Deduplicator, contact_record, find_duplicates
from crmkit.dedupe.blocking import BlockingStats, candidate_pairs
from crmkit.dedupe.compare import (
    EditDistanceComparator,
    NameComparator,
    PlaceComparator,
    StreetComparator,
    default_comparators,
    many_function,
    pattern_function,
)
from crmkit.dedupe.evaluation import febrl_record, pairwise_scores
from crmkit.dedupe.keys import ExactKey, SortedNeighbourhood, last_name_key, name_tokens_key, phonetic_names_key, soundex
from crmkit.dedupe.records import fold, prepare
from crmkit.dedupe.scoring import FieldModel, MatchModel, _monotone, fit_em
from crmkit.dedupe.synthetic import synthetic_contacts, true_pairs
from crmkit.domain import Address, Contact
from hypothesis import given, settings
from hypothesis import strategies as st


def rec(id: str, **fields: object) -> dict[str, object]:
    return {"id": id, **fields}


# --- normalisation -------------------------------------------------------------------------------


def test_prepare_folds_case_accents_punctuation_and_spaces() -> None:
    p = prepare(rec("1", first_name=" Zoë-Ann ", last_name="Mc Donald", email="Ann+News@Example.ORG",
                    phone="+44 20 7946-0000", birth_date=date(1980, 2, 29), address_street="7  Rue de l'Église",
                    address_city="St. Albans", address_postcode="al1 3xy", address_region="Herts"))
    assert (p.first_name, p.last_name) == ("zoeann", "mcdonald")
    assert p.email == "ann@example.org"
    assert p.phone == "442079460000"
    assert p.birth_date == "19800229"
    assert p.street == "7 rue de l eglise" and p.street_compact == "7ruedeleglise"
    assert prepare(rec("2", address_street="20 Rupp Pl")).street == "20 rupp place"
    assert prepare(rec("3", address_street="5 St Kilda Rd, 2nd floor")).street == "5 st kilda road 2nd floor"
    assert prepare(rec("4", address_street="12 Kent St")).street == "12 kent street"
    assert (p.city, p.postcode, p.region) == ("stalbans", "al13xy", "herts")


def test_prepare_treats_absent_and_empty_values_as_missing() -> None:
    p = prepare(rec("1", first_name=None, email="", birth_date=None))
    assert p.first_name == p.email == p.birth_date == p.street == ""


def test_prepare_requires_an_id_and_the_engine_names_the_record() -> None:
    with pytest.raises(ValueError, match="^id: "):
        prepare({"first_name": "Ada"})
    with pytest.raises(ValueError, match=r"record 1: id: every record needs an id"):
        find_duplicates([rec("a"), {"first_name": "Ada"}])
    with pytest.raises(ValueError, match=r"record 1: id: 'a' appears twice"):
        find_duplicates([rec("a"), rec("a")])


def test_contact_record_flattens_a_domain_contact() -> None:
    contact = Contact(first_name="Ada", last_name="Lovelace", email="ada@example.com", birth_date=date(1815, 12, 10),
                      address=Address(street="1 Main St", city="London", postcode="W1", region="LDN"))
    flat = contact_record(contact)
    assert flat["id"] == contact.id
    assert flat["address_city"] == "London" and flat["address_postcode"] == "W1" and flat["birth_date"] == date(1815, 12, 10)
    assert prepare(flat).last_name == "lovelace"


def test_fold_keeps_non_latin_letters() -> None:
    assert fold("Łódź  Straße") == "łodz strasse"  # casefold: ß is ss
    assert fold("山田 太郎") == "山田 太郎"


# --- blocking keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "code"), [
    ("robert", "r163"), ("rupert", "r163"), ("ashcraft", "a261"), ("tymczak", "t522"),
    ("pfister", "p236"), ("honeyman", "h555"), ("lee", "l000"), ("", ""),
])
def test_soundex(name: str, code: str) -> None:
    assert soundex(name) == code


def test_name_keys_survive_a_swap_and_need_both_names() -> None:
    straight, swapped = prepare(rec("1", first_name="Lee", last_name="Ann")), prepare(rec("2", first_name="Ann", last_name="Lee"))
    assert name_tokens_key(straight) == name_tokens_key(swapped) == "ann lee"
    assert phonetic_names_key(prepare(rec("1", first_name="Smith", last_name="John"))) == \
        phonetic_names_key(prepare(rec("2", first_name="Jon", last_name="Smyth")))
    assert name_tokens_key(prepare(rec("3", last_name="Lee"))) == ""


# --- candidate generation ------------------------------------------------------------------------


def _naive_pairs(records, passes, cap, window, oversized):
    """What the passes propose, computed the obvious quadratic way."""
    found = set()
    for p in passes:
        keyed = [(p.key(r), (r.last_name, r.first_name, r.id), k) for k, r in enumerate(records) if p.key(r)]
        if isinstance(p, SortedNeighbourhood):
            order = [k for *_, k in sorted(keyed)]
            found |= {tuple(sorted((order[x], order[y]))) for x in range(len(order)) for y in range(x + 1, min(x + p.window, len(order)))}
            continue
        for value in {v for v, *_ in keyed}:
            members = sorted((o, k) for v, o, k in keyed if v == value)
            if len(members) <= cap:
                found |= {tuple(sorted((a, b))) for (_, a), (_, b) in itertools.combinations(members, 2)}
            elif oversized == "window":
                order = [k for _, k in members]
                found |= {tuple(sorted((order[x], order[y]))) for x in range(len(order)) for y in range(x + 1, min(x + window, len(order)))}
    return found


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.tuples(st.sampled_from(["ann", "bob", "cy", ""]), st.sampled_from(["lee", "li", "ng", ""]),
                             st.sampled_from(["1", "2", ""])), min_size=2, max_size=40),
    cap=st.integers(2, 6), window=st.integers(2, 4), oversized=st.sampled_from(["window", "skip"]),
)
def test_candidates_are_each_pair_of_every_pass_exactly_once(names, cap, window, oversized) -> None:
    records = [prepare(rec(f"r{k}", first_name=f, last_name=last, address_postcode=pc)) for k, (f, last, pc) in enumerate(names)]
    passes = (ExactKey("postcode", lambda r: r.postcode), ExactKey("names", name_tokens_key),
              SortedNeighbourhood("last", last_name_key, window=3))
    produced = list(candidate_pairs(records, passes, max_block_size=cap, fallback_window=window, oversized=oversized))
    assert all(i < j for i, j in produced)
    assert len(produced) == len(set(produced))
    assert set(produced) == _naive_pairs(records, passes, cap, window, oversized)


def test_oversized_blocks_are_windowed_or_skipped_counted_and_warned() -> None:
    records = [prepare(rec(f"r{k:03d}", first_name=f"n{k:03d}", address_postcode="same")) for k in range(100)]
    passes = (ExactKey("postcode", lambda r: r.postcode),)
    stats = BlockingStats()
    windowed = list(candidate_pairs(records, passes, max_block_size=20, fallback_window=5, stats=stats))
    assert len(windowed) == 4 * 100 - 10  # each record and its next four, in name order
    assert stats.windowed_blocks == 1 and stats.passes[0].largest_block == 100
    assert "postcode: blocks over the cap of 20 records: 1 compared within a sorted window of 5" in stats.warnings[0]
    stats = BlockingStats()
    assert list(candidate_pairs(records, passes, max_block_size=20, oversized="skip", stats=stats)) == []
    assert stats.skipped_blocks == 1 and "1 skipped" in stats.warnings[0]


def test_a_skewed_key_does_not_explode_the_engine() -> None:
    # 3,000 contacts sharing one placeholder birth date: 4.5 million pairs unguarded.
    records = [rec(f"r{k}", first_name=f"name{k}", last_name=f"family{k}", birth_date="1900-01-01") for k in range(3000)]
    result = find_duplicates(records)
    assert result.stats.candidate_pairs < 3000 * 25
    assert result.stats.blocking.windowed_blocks >= 1
    assert any(w.startswith("birth_date: blocks over the cap") for w in result.stats.blocking.warnings)


# --- comparators ---------------------------------------------------------------------------------


def _levels(comparator, a, b):
    return pattern_function([comparator])(prepare(rec("a", **a)), prepare(rec("b", **b)))


def test_names_swapped_between_fields_are_recognised_and_explained() -> None:
    names = NameComparator()
    a, b = {"first_name": "Morrison", "last_name": "Nathan"}, {"first_name": "Nathas", "last_name": "Morriosn"}
    assert _levels(names, a, b) == (2, 2)  # close, close — crossed
    readings = names.explain(prepare(rec("a", **a)), prepare(rec("b", **b)))
    assert [r.note for r in readings] == ["given and family name swapped"] * 2
    # A family name written where the given name should be, the other half missing:
    assert _levels(names, {"last_name": "Smith"}, {"first_name": "Smith", "last_name": "Jones"}) == (3, None)


def test_names_are_not_crossed_for_a_coincidence() -> None:
    names = NameComparator()
    assert _levels(names, {"first_name": "Ann", "last_name": "Lee"}, {"first_name": "Ann", "last_name": "Leigh"})[0] == 3
    # Straight, the names are close enough that a crossed reading is not even tried:
    assert _levels(names, {"first_name": "Marc", "last_name": "Tran"}, {"first_name": "Mark", "last_name": "Trann"}) == (1, 2)


def test_name_typos_and_lost_spaces() -> None:
    names = NameComparator()
    assert _levels(names, {"first_name": "Luc y", "last_name": "Hannagan"}, {"first_name": "Lucy", "last_name": "Hannaan"}) == (3, 2)
    assert _levels(names, {"first_name": "Ann"}, {"first_name": "Ann"}) == (3, None)


def test_edit_distance_levels_and_phone_suffix() -> None:
    dob = EditDistanceComparator("birth_date", "birth_date", max_edits=2)
    assert dob.labels == ("different", "2_edits", "1_edit", "exact")
    assert _levels(dob, {"birth_date": "19161017"}, {"birth_date": "19161017"}) == (3,)
    assert _levels(dob, {"birth_date": "19161017"}, {"birth_date": "19160117"}) == (2,)  # transposition
    assert _levels(dob, {"birth_date": "19161017"}, {"birth_date": "19261027"}) == (1,)
    assert _levels(dob, {"birth_date": "19161017"}, {"birth_date": "20010203"}) == (0,)
    assert _levels(dob, {"birth_date": "19161017"}, {}) == (None,)
    phone = EditDistanceComparator("phone", "phone", max_edits=1, suffix=9)
    assert _levels(phone, {"phone": "+44 7955 327850"}, {"phone": "07955 327850"}) == (2,)


def test_street_lines_in_another_order_or_without_spaces() -> None:
    street = StreetComparator()
    assert _levels(street, {"address_street": "177 Pridham Street"}, {"address_street": "177 pridhamstreet"}) == (3,)
    assert _levels(street, {"address_street": "148 Sinclair Street, Brumby's Run"},
                   {"address_street": "148 Brumby's Run Sinclair Street"}) == (3,)
    assert _levels(street, {"address_street": "12 Kent Street"}, {"address_street": "12 Kent Streeet"}) == (2,)
    assert _levels(street, {"address_street": "12 Kent Street"}, {"address_street": "9 Oak Avenue"}) == (0,)


def test_place_is_one_hierarchical_field() -> None:
    place = PlaceComparator()
    here = {"address_postcode": "2119", "address_city": "Cleveland", "address_region": "SA"}
    assert _levels(place, here, dict(here)) == (4,)
    assert _levels(place, here, {**here, "address_city": "Delmar"}) == (3,)
    assert _levels(place, here, {**here, "address_postcode": "2191"}) == (3,)  # postcode typo, same town
    assert _levels(place, here, {**here, "address_postcode": "5000"}) == (2,)
    assert _levels(place, here, {"address_postcode": "5000", "address_city": "Perth", "address_region": "SA"}) == (1,)
    assert _levels(place, here, {"address_postcode": "5000", "address_city": "Perth", "address_region": "WA"}) == (0,)
    assert _levels(place, here, {"first_name": "x"}) == (None,)


_values = st.one_of(st.just(""), st.text(alphabet="abcdeé 1-", max_size=9), st.sampled_from(["anna", "anne", "ann lee", "2119", "2191"]))


@settings(max_examples=150, deadline=None)
@given(a=st.fixed_dictionaries({k: _values for k in ("first_name", "last_name", "email", "phone", "birth_date", "address_street",
                                                     "address_city", "address_region", "address_postcode")}),
       b=st.fixed_dictionaries({k: _values for k in ("first_name", "last_name", "email", "phone", "birth_date", "address_street",
                                                     "address_city", "address_region", "address_postcode")}))
def test_fast_levels_and_explanations_agree(a, b) -> None:
    left, right = prepare(rec("a", **a)), prepare(rec("b", **b))
    comparators = default_comparators()
    explained = tuple(reading.level for c in comparators for reading in c.explain(left, right))
    assert pattern_function(comparators)(left, right) == explained
    assert pattern_function(comparators)(right, left) == explained  # symmetric


@settings(max_examples=100, deadline=None)
@given(people=st.lists(st.fixed_dictionaries({k: _values for k in ("first_name", "last_name", "phone", "birth_date",
                                                                      "address_street", "address_city", "address_postcode")}),
                       min_size=1, max_size=12))
def test_batched_levels_equal_pairwise_levels(people) -> None:
    records = [prepare(rec(f"r{k}", **p)) for k, p in enumerate(people)]
    comparators = default_comparators()
    columns = many_function(comparators)(records[0], records)
    pairwise = [pattern_function(comparators)(records[0], other) for other in records]
    assert list(zip(*columns, strict=True)) == pairwise


# --- scoring -------------------------------------------------------------------------------------


def test_em_recovers_the_parameters_that_generated_the_patterns() -> None:
    rng = random.Random(3)
    m_true = [[0.05, 0.15, 0.8], [0.1, 0.9], [0.02, 0.08, 0.9]]
    u_true = [[0.85, 0.1, 0.05], [0.7, 0.3], [0.9, 0.08, 0.02]]
    prior_true = 0.1
    patterns: Counter = Counter()
    for _ in range(40_000):
        probs = m_true if rng.random() < prior_true else u_true
        patterns[tuple(rng.choices(range(len(p)), p)[0] for p in probs)] += 1
    start = MatchModel([FieldModel(f"f{k}", "c", tuple(str(x) for x in range(len(p))), [1 / len(p)] * len(p), list(p))
                        for k, p in enumerate([[0.5, 0.3, 0.2], [0.6, 0.4], [0.5, 0.3, 0.2]])], prior=0.05)
    start.fields = [attrs_evolve_m(f, [0.1] * (len(f.m) - 1) + [1.0]) for f in start.fields]
    start.refresh()
    fitted = fit_em(start, patterns, monotone=False)
    assert fitted.converged
    assert fitted.prior == pytest.approx(prior_true, abs=0.01)
    for field, m, u in zip(fitted.fields, m_true, u_true, strict=True):
        assert field.m == pytest.approx(m, abs=0.03)
        assert field.u == pytest.approx(u, abs=0.03)


def attrs_evolve_m(field: FieldModel, raw: list[float]) -> FieldModel:
    return FieldModel(field.field, field.comparator, field.labels, [x / sum(raw) for x in raw], field.u)


def test_monotone_pooling_orders_weights_and_keeps_the_mass() -> None:
    m, u = [0.1, 0.3, 0.1, 0.5], [0.5, 0.01, 0.3, 0.19]  # level 1 looks stronger than level 3
    pooled = _monotone(m, u)
    ratios = [x / y for x, y in zip(pooled, u, strict=True)]
    assert ratios == sorted(ratios)
    assert sum(pooled) == pytest.approx(sum(m))
    assert pooled[0] == m[0] and pooled[3] == m[3]  # untouched outside the violating run


def test_probability_is_the_logistic_of_weight_plus_prior() -> None:
    model = MatchModel([], prior=0.2)
    assert model.probability(0.0) == pytest.approx(0.2)
    assert model.probability(2.0) == pytest.approx(1 / (1 + 2 ** -(2 + math.log2(0.25))))


# --- the engine ----------------------------------------------------------------------------------


PEOPLE = [
    rec("a1", first_name="Mikhayla", last_name="Hannagan", birth_date="1977-05-01", email="mh@example.com",
        address_street="20 Rupp Place", address_city="Penshurst", address_postcode="2257", address_region="VIC"),
    rec("a2", first_name="Hannagan", last_name="Mikhvyla", birth_date="1977-05-01", email="MH+crm@example.com",
        address_street="20 Rupp Place", address_city="Penshurst", address_postcode="2257", address_region="VIC"),
    rec("a3", first_name="Mikhayla", last_name="Hannaan", birth_date=None, email="mh@example.com", address_street="20 Rupp Pl",
        address_city="Penshurst", address_postcode="2283", address_region="VIC"),
    rec("b1", first_name="Naomi", last_name="Millar", birth_date="1975-08-18", phone="+61 2 9999 0001",
        address_street="7 Southern Cross Drive Glengar", address_city="St Agnes", address_postcode="5172", address_region="QLD"),
    rec("b2", first_name="Naomi", last_name="Milfra", birth_date="1975-08-18", phone="02 9999 0001",
        address_street="7 Glengar Southern Cross Drive", address_city="St Agnes", address_postcode="5172"),
]


def _world(extra: int = 400) -> list[dict[str, object]]:
    """The people above among distinct contacts, some sharing their names, towns or birth dates."""
    rng = random.Random(5)
    firsts = ["Mikhayla", "Naomi", "Oliver", "Ruby", "Jack", "Chloe", "Liam", "Ava", "Noah", "Mia"]
    lasts = ["Hannagan", "Millar", "Smith", "Brown", "Wilson", "Taylor", "Nguyen", "Martin", "White", "Clarke"]
    towns = [("Penshurst", "2257"), ("St Agnes", "5172"), ("Mansfield", "4122"), ("Banyo", "4014")]
    others = []
    for k in range(extra):
        town, postcode = rng.choice(towns)
        others.append(rec(f"x{k}", first_name=rng.choice(firsts), last_name=rng.choice(lasts),
                          birth_date=f"{rng.randint(1930, 2000)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                          address_street=f"{rng.randint(1, 300)} {rng.choice(['Kent', 'Oak', 'High', 'Mill'])} Street",
                          address_city=town, address_postcode=postcode, address_region="VIC"))
    return PEOPLE + others


def test_engine_finds_typos_swaps_and_missing_values_and_explains_them() -> None:
    result = find_duplicates(_world())
    clusters = {c.ids for c in result.clusters}
    assert ("a1", "a2", "a3") in clusters and ("b1", "b2") in clusters
    assert result.stats.largest_cluster == 3
    assert not any(id.startswith("x") for c in clusters if "a1" in c or "b1" in c for id in c)
    pair = next(p for p in result.pairs if (p.left_id, p.right_id) == ("a1", "a2"))
    assert pair.decision == "auto_merge" and pair.score >= 0.99
    evidence = {e.field: e for e in pair.evidence}
    assert set(evidence) == {"first_name", "last_name", "email", "phone", "birth_date", "address_street", "address_place"}
    assert evidence["first_name"].note == "given and family name swapped"
    assert evidence["email"].level == "exact"  # the +tag and the case do not matter
    assert evidence["phone"].level is None and evidence["phone"].weight == 0.0 and evidence["phone"].similarity is None
    assert evidence["birth_date"].weight > 0 and evidence["address_street"].weight > 0
    assert pair.weight == pytest.approx(sum(e.weight for e in pair.evidence))
    assert pair.score == pytest.approx(result.model.probability(pair.weight))


def test_any_two_records_can_be_explained_with_a_fitted_model() -> None:
    engine = Deduplicator()
    result = engine.run(_world())
    reported = next(p for p in result.pairs if (p.left_id, p.right_id) == ("b1", "b2"))
    again = engine.explain(PEOPLE[4], PEOPLE[3], result.model)  # order does not matter
    assert (again.left_id, again.right_id, again.decision) == ("b1", "b2", reported.decision)
    assert again.score == pytest.approx(reported.score) and again.evidence == reported.evidence
    unrelated = engine.explain(PEOPLE[0], PEOPLE[3], result.model)
    assert unrelated.decision == "distinct" and unrelated.weight < 0


def test_people_sharing_a_name_are_not_merged() -> None:
    result = find_duplicates(_world())
    # Many x-records share a first and last name with each other; only real duplicates may match.
    wrongly = [p for p in result.pairs if p.left_id.startswith("x") or p.right_id.startswith("x")]
    assert len(wrongly) <= 2
    assert all(p.decision == "review" for p in wrongly)


def test_decisions_follow_the_thresholds() -> None:
    records = _world()
    strict = find_duplicates(records, DedupeConfig(auto_merge_at=0.999999, review_at=0.9))
    loose = find_duplicates(records, DedupeConfig(auto_merge_at=0.6, review_at=0.5))
    assert all(p.score >= 0.9 for p in strict.pairs)
    assert all((p.decision == "auto_merge") == (p.score >= 0.999999) for p in strict.pairs)
    assert strict.stats.auto_merge <= loose.stats.auto_merge
    assert strict.matched_pairs() <= loose.matched_pairs()
    assert strict.stats.auto_merge + strict.stats.review == len(strict.pairs)


def test_cluster_decision_needs_auto_merge_links_throughout() -> None:
    result = find_duplicates(_world())
    for cluster in result.clusters:
        auto = {(p.left_id, p.right_id) for p in result.pairs if p.decision == "auto_merge"}
        if cluster.decision == "auto_merge":
            linked = {cluster.ids[0]}
            while True:
                more = {b for a, b in auto if a in linked} | {a for a, b in auto if b in linked}
                if more <= linked:
                    break
                linked |= more
            assert linked == set(cluster.ids)


@pytest.mark.parametrize("bad", [
    {"review_at": 0.0}, {"review_at": 0.9, "auto_merge_at": 0.8}, {"auto_merge_at": 1.5},
    {"max_block_size": 1}, {"fallback_window": 1},
])
def test_config_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad)).split("_at")[0]):
        DedupeConfig(**bad)


def test_empty_and_single_inputs() -> None:
    assert find_duplicates([]).pairs == []
    one = find_duplicates([rec("only", first_name="Ada")])
    assert one.pairs == [] and one.clusters == [] and one.stats.records == 1


def test_synthetic_contacts_with_injected_duplicates() -> None:
    records = list(synthetic_contacts(3000, seed=2))
    assert len({r["id"] for r in records}) == 3000
    truth = true_pairs(records)
    assert 250 < len(truth) < 600
    result = find_duplicates(records)
    scores = pairwise_scores(result.cluster_pairs(), truth)
    # Measured (seed 2): P 1.000, R 0.919. Most misses are people who moved, changed e-mail and
    # left phone and birth date empty: nothing is left to tell them from a namesake.
    assert scores.precision >= 0.995
    assert scores.recall >= 0.9


def test_febrl_rows_map_onto_contact_fields() -> None:
    nan = float("nan")
    record = febrl_record("rec-3-dup-1", {"given_name": "naomi", "surname": "millar", "street_number": "7",
                                          "address_1": "southern cross drive", "address_2": "glengar", "suburb": "st agnes",
                                          "postcode": "5172", "state": nan, "date_of_birth": "19750818", "soc_sec_id": "7751504"})
    assert record == {"id": "rec-3-dup-1", "first_name": "naomi", "last_name": "millar", "birth_date": "19750818",
                      "address_street": "7 southern cross drive glengar", "address_city": "st agnes",
                      "address_region": "", "address_postcode": "5172"}


def test_pairwise_scores() -> None:
    scores = pairwise_scores([("b", "a"), ("c", "d"), ("e", "f")], [("a", "b"), ("c", "d"), ("g", "h"), ("i", "j")])
    assert (scores.true_positives, scores.predicted, scores.actual) == (2, 3, 4)
    assert scores.precision == pytest.approx(2 / 3) and scores.recall == 0.5 and scores.f1 == pytest.approx(4 / 7)


def test_deduplicator_is_reusable_and_deterministic() -> None:
    engine = Deduplicator()
    first, second = engine.run(_world()), engine.run(_world())
    assert [(p.left_id, p.right_id, p.score) for p in first.pairs] == [(p.left_id, p.right_id, p.score) for p in second.pairs]
