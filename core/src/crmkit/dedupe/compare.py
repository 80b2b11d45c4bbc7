"""Field comparators: how alike two records are on each field, as a similarity and a discrete level.

Every comparator maps a pair of values to a *level* — an index into its ``labels``, ordered from
``"different"`` (0) to ``"exact"`` (last) — or ``None`` when either value is missing, so a missing
value is neither evidence for nor against a match. The scoring model learns one weight per level.
Similarities come from rapidfuzz.

A comparator has two entry points that must agree (the tests check that they do):

* :meth:`Comparator.compile_many` returns the function the engine runs for every record against
  all its candidate partners at once. It hands each field's whole partner list to one
  ``rapidfuzz.process.extract`` call with a score cutoff, so the similarity loop runs in C and
  only partners that reach a threshold come back to Python — most candidates share nothing
  beyond their blocking key, and this is where the engine spends its time;
* :meth:`Comparator.explain` recomputes similarity and level for one pair, for the few pairs
  that are reported.

Names are compared as a unit (:class:`NameComparator`) because people swap given and family name
on forms: the pair is scored both straight and crossed, and a clearly better crossed reading wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, NamedTuple, Protocol

import attrs
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler

from crmkit.dedupe.records import PreparedRecord

Level = int | None
LevelFunction = Callable[[PreparedRecord, PreparedRecord], tuple[Level, ...]]
#: ``(record, partners) -> one list of levels per field``, each as long as ``partners``.
ManyFunction = Callable[[PreparedRecord, Sequence[PreparedRecord]], list[list[Level]]]

_jaro_winkler = JaroWinkler.normalized_similarity


class Reading(NamedTuple):
    """One field's comparison, for explanations: similarity in [0, 1] (``None`` if missing) and its level."""

    field: str
    comparator: str
    similarity: float | None
    level: Level
    note: str = ""


class Comparator(Protocol):
    """Compares one or more fields of two records; ``fields`` and ``labels`` describe its outputs."""

    @property
    def fields(self) -> tuple[str, ...]: ...

    @property
    def comparator(self) -> str: ...

    @property
    def labels(self) -> tuple[str, ...]: ...

    def compile_many(self) -> ManyFunction: ...

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]: ...


def _hits(query: str, choices: list[str], scorer: Callable[..., Any], cutoff: float) -> dict[int, Any]:
    """Position → score of the ``choices`` that reach ``cutoff`` (a similarity, or a distance for distance scorers)."""
    return {position: score for _, score, position in process.extract(query, choices, scorer=scorer, score_cutoff=cutoff, limit=None)}


def _similarity_level(similarity: float | None, thresholds: tuple[float, ...]) -> Level:
    """Level of a similarity: 0 below ``thresholds[0]``, one more per threshold reached, top level for 1.0."""
    if similarity is None:
        return None
    if similarity >= 1.0:
        return len(thresholds) + 1
    level = 0
    for threshold in thresholds:
        if similarity >= threshold:
            level += 1
    return level


def _rank(similarity: float | None) -> float:
    return -1.0 if similarity is None else similarity


@attrs.frozen
class NameComparator:
    """Given and family name by Jaro–Winkler, tolerant of a given/family swap.

    Levels per name: different, similar (≥ ``thresholds[0]``), close (≥ ``thresholds[1]``), exact.
    Below ``thresholds[0]`` two names count as unrelated (similarity 0 for the swap decision). The
    crossed reading (a's given name against b's family name and vice versa) is taken only if its
    sum beats the straight one's by ``swap_margin``; crossed, the better of the two similarities is
    reported as the given name's, which keeps a pair's levels independent of the records' order.
    """

    thresholds: tuple[float, float] = (0.80, 0.92)
    swap_margin: float = 0.3
    fields: tuple[str, ...] = ("first_name", "last_name")
    comparator: str = "jaro_winkler"
    labels: tuple[str, ...] = ("different", "similar", "close", "exact")

    def similarities(self, a: PreparedRecord, b: PreparedRecord) -> tuple[float | None, float | None, bool]:
        """(given-name similarity, family-name similarity, swapped?) — the reference for :meth:`compile_many`."""
        low = self.thresholds[0]
        af, al, bf, bl = a.first_name, a.last_name, b.first_name, b.last_name
        first = _jaro_winkler(af, bf) if af and bf else None
        last = _jaro_winkler(al, bl) if al and bl else None
        cross_first = _jaro_winkler(af, bl) if af and bl else None
        cross_last = _jaro_winkler(al, bf) if al and bf else None
        # Below `low` a name counts as unrelated, as in compile_many (which never sees those scores).
        clipped = [None if s is None else s if s >= low else 0.0 for s in (first, last, cross_first, cross_last)]
        if (clipped[2] or 0.0) + (clipped[3] or 0.0) > (clipped[0] or 0.0) + (clipped[1] or 0.0) + self.swap_margin:
            if _rank(clipped[3]) > _rank(clipped[2]):
                cross_first, cross_last = cross_last, cross_first
            return cross_first, cross_last, True
        return first, last, False

    def compile_many(self) -> ManyFunction:
        low, high = self.thresholds
        margin = self.swap_margin

        def many(a: PreparedRecord, partners: Sequence[PreparedRecord]) -> list[list[Level]]:
            af, al = a.first_name, a.last_name
            firsts = [p.first_name for p in partners]
            lasts = [p.last_name for p in partners]
            # Similarities at or above `low`, by partner position; absent means below (or missing).
            ff = _hits(af, firsts, _jaro_winkler, low) if af else {}
            ll = _hits(al, lasts, _jaro_winkler, low) if al else {}
            fl = _hits(af, lasts, _jaro_winkler, low) if af else {}
            lf = _hits(al, firsts, _jaro_winkler, low) if al else {}
            # Partners with no similar name either way: "different", or missing.
            first_levels: list[Level] = [0 if bf else None for bf in firsts] if af else [None] * len(partners)
            last_levels: list[Level] = [0 if bl else None for bl in lasts] if al else [None] * len(partners)
            for k in ff.keys() | ll.keys() | fl.keys() | lf.keys():
                bf, bl = firsts[k], lasts[k]
                first = ff.get(k, 0.0) if af and bf else None
                last = ll.get(k, 0.0) if al and bl else None
                if k in fl or k in lf:  # a crossed reading needs at least one crossed name to be similar
                    cross_first = fl.get(k, 0.0) if af and bl else None
                    cross_last = lf.get(k, 0.0) if al and bf else None
                    if (cross_first or 0.0) + (cross_last or 0.0) > (first or 0.0) + (last or 0.0) + margin:
                        if _rank(cross_last) > _rank(cross_first):
                            cross_first, cross_last = cross_last, cross_first
                        first, last = cross_first, cross_last
                first_levels[k] = None if first is None else 3 if first >= 1.0 else 2 if first >= high else 1 if first >= low else 0
                last_levels[k] = None if last is None else 3 if last >= 1.0 else 2 if last >= high else 1 if last >= low else 0
            return [first_levels, last_levels]

        return many

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        first, last, swapped = self.similarities(a, b)
        note = "given and family name swapped" if swapped else ""
        return [
            Reading("first_name", self.comparator, first, _similarity_level(first, self.thresholds), note),
            Reading("last_name", self.comparator, last, _similarity_level(last, self.thresholds), note),
        ]


@attrs.frozen
class StreetComparator:
    """Street lines: the better of the ratio of the space-free text (``"pridhamstreet"``) and the
    token-sort ratio (lines or words in another order). Levels: different, similar, close, exact."""

    field: str = "address_street"
    thresholds: tuple[float, float] = (0.70, 0.90)
    comparator: str = "token_sort_ratio"
    labels: tuple[str, ...] = ("different", "similar", "close", "exact")

    # The word-order reading is tried only from this plain ratio up: two lines of one address in
    # the other order still share the longer line in order, i.e. at least half their characters,
    # and skipping it for the many clearly different streets is most of this comparator's speed.
    _REORDER_FLOOR = 50.0

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def similarity(self, a: PreparedRecord, b: PreparedRecord) -> float | None:
        if not a.street or not b.street:
            return None
        best = fuzz.ratio(a.street_compact, b.street_compact)
        if self._REORDER_FLOOR <= best < 100.0:
            best = max(best, fuzz.token_sort_ratio(a.street, b.street))
        return best / 100.0

    def compile_many(self) -> ManyFunction:
        low, high = (t * 100.0 for t in self.thresholds)
        floor = self._REORDER_FLOOR
        token_sort_ratio = fuzz.token_sort_ratio

        def many(a: PreparedRecord, partners: Sequence[PreparedRecord]) -> list[list[Level]]:
            if not a.street:
                return [[None] * len(partners)]
            levels: list[Level] = [0 if p.street else None for p in partners]
            for k, best in _hits(a.street_compact, [p.street_compact for p in partners], fuzz.ratio, floor).items():
                if best < 100.0:
                    best = max(best, token_sort_ratio(a.street, partners[k].street))
                levels[k] = 3 if best >= 100.0 else 2 if best >= high else 1 if best >= low else 0
            return [levels]

        return many

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        similarity = self.similarity(a, b)
        return [Reading(self.field, self.comparator, similarity, _similarity_level(similarity, self.thresholds))]


@attrs.frozen
class EditDistanceComparator:
    """Codes typed by hand (birth date digits, phone): optimal-string-alignment distance, so one
    mistyped or transposed character is level ``1_edit``.

    Levels: different, then one per distance from ``max_edits`` down to 1, then exact.
    ``suffix`` compares only the last characters (phone numbers with or without a country code).
    """

    field: str
    attribute: str
    max_edits: int = 1
    suffix: int = 0
    comparator: str = "osa_distance"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    @property
    def labels(self) -> tuple[str, ...]:
        near = tuple(f"{n}_edit{'s' if n > 1 else ''}" for n in range(self.max_edits, 0, -1))
        return ("different", *near, "exact")

    def _value(self, record: PreparedRecord) -> str:
        value = getattr(record, self.attribute)
        return value[-self.suffix:] if self.suffix else value

    def compile_many(self) -> ManyFunction:
        get, suffix, max_edits = attrgetter(self.attribute), self.suffix, self.max_edits
        exact = max_edits + 1

        def many(a: PreparedRecord, partners: Sequence[PreparedRecord]) -> list[list[Level]]:
            x = get(a)[-suffix:] if suffix else get(a)
            if not x:
                return [[None] * len(partners)]
            ys = [get(p)[-suffix:] for p in partners] if suffix else [get(p) for p in partners]
            hits = _hits(x, ys, OSA.distance, max_edits)
            return [[None if not y else exact - hits[k] if k in hits else 0 for k, y in enumerate(ys)]]

        return many

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        x, y = self._value(a), self._value(b)
        if not x or not y:
            return [Reading(self.field, self.comparator, None, None)]
        distance = OSA.distance(x, y)
        level = max(self.max_edits + 1 - distance, 0)
        return [Reading(self.field, self.comparator, 1.0 - distance / max(len(x), len(y)), level)]


@attrs.frozen
class ExactComparator:
    """Agree or not. Levels: different, exact."""

    field: str
    attribute: str
    comparator: str = "exact"
    labels: tuple[str, ...] = ("different", "exact")

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def compile_many(self) -> ManyFunction:
        get = attrgetter(self.attribute)

        def many(a: PreparedRecord, partners: Sequence[PreparedRecord]) -> list[list[Level]]:
            x = get(a)
            if not x:
                return [[None] * len(partners)]
            return [[None if not (y := get(p)) else int(x == y) for p in partners]]

        return many

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        x, y = getattr(a, self.attribute), getattr(b, self.attribute)
        level = None if not x or not y else int(x == y)
        return [Reading(self.field, self.comparator, None if level is None else float(level), level)]


@attrs.frozen
class PlaceComparator:
    """Postcode, city and region as one field, because they are not independent evidence: two
    people in the same postcode are in the same city and region too, and counting that three times
    would make neighbours look like duplicates.

    Levels: different, same_region, same_city (or a postcode one edit away), same_postcode (or a
    postcode typo within the same city), same_postcode_and_city.
    """

    field: str = "address_place"
    city_threshold: float = 0.88
    comparator: str = "place"
    labels: tuple[str, ...] = ("different", "same_region", "same_city", "same_postcode", "same_postcode_and_city")

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def parts(self, a: PreparedRecord, b: PreparedRecord) -> tuple[Level, Level, Level]:
        """(postcode 0-2, city 0-2, region 0-1), each ``None`` when missing on a side."""
        postcode = city = region = None
        if a.postcode and b.postcode:
            postcode = max(2 - OSA.distance(a.postcode, b.postcode), 0)
        if a.city and b.city:
            city = 2 if a.city == b.city else int(_jaro_winkler(a.city, b.city) >= self.city_threshold)
        if a.region and b.region:
            region = int(a.region == b.region)
        return postcode, city, region

    @staticmethod
    def combine(postcode: Level, city: Level, region: Level) -> Level:
        if postcode is None and city is None and region is None:
            return None
        if postcode == 2:
            return 4 if city else 3
        if postcode == 1 and city:
            return 3
        if city or postcode == 1:
            return 2
        return 1 if region else 0

    def compile_many(self) -> ManyFunction:
        threshold, combine = self.city_threshold, self.combine

        def many(a: PreparedRecord, partners: Sequence[PreparedRecord]) -> list[list[Level]]:
            ap, ac, ar = a.postcode, a.city, a.region
            postcodes = _hits(ap, [p.postcode for p in partners], OSA.distance, 1) if ap else {}
            cities = _hits(ac, [p.city for p in partners], _jaro_winkler, threshold) if ac else {}
            # Without a similar postcode or city only the region can agree (combine() for that case).
            levels: list[Level] = [
                (1 if ar == p.region else 0) if ar and p.region else
                (0 if (ap and p.postcode) or (ac and p.city) else None)
                for p in partners
            ]
            for k in postcodes.keys() | cities.keys():
                p = partners[k]
                distance, similarity = postcodes.get(k), cities.get(k)
                postcode = None if not (ap and p.postcode) else 0 if distance is None else 2 - distance
                city = None if not (ac and p.city) else 0 if similarity is None else 2 if similarity >= 1.0 else 1
                levels[k] = combine(postcode, city, None if not (ar and p.region) else int(ar == p.region))
            return [levels]

        return many

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        postcode, city, region = self.parts(a, b)
        level = self.combine(postcode, city, region)
        words = {None: "missing", 0: "different", 1: "similar", 2: "same"}
        note = f"postcode {words[postcode]}, city {words[city]}, region {words[None if region is None else 2 * region]}"
        similarity = None if level is None else level / (len(self.labels) - 1)
        return [Reading(self.field, self.comparator, similarity, level, note)]


def many_function(comparators: Sequence[Comparator]) -> ManyFunction:
    """All comparators' level columns for a record against its partners, in pattern order."""
    functions = tuple(c.compile_many() for c in comparators)

    def many(a: PreparedRecord, partners: Sequence[PreparedRecord]) -> list[list[Level]]:
        columns: list[list[Level]] = []
        for function in functions:
            columns.extend(function(a, partners))
        return columns

    return many


def pattern_function(comparators: Sequence[Comparator]) -> LevelFunction:
    """One pair's full agreement pattern (for sampling and tests; the engine batches with :func:`many_function`)."""
    many = many_function(comparators)

    def pattern(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
        return tuple(column[0] for column in many(a, (b,)))

    return pattern


def default_comparators() -> tuple[Comparator, ...]:
    """The contact comparators: names (swap-tolerant), e-mail, phone, birth date, street, place.

    E-mail is exact or not: addresses are typed once and bounce when wrong, and near-identical
    addresses (``john.smith12``/``john.smith45``) are usually two people with one name.
    """
    return (
        NameComparator(),
        ExactComparator("email", "email"),
        EditDistanceComparator("phone", "phone", max_edits=1, suffix=9),
        EditDistanceComparator("birth_date", "birth_date", max_edits=2),
        StreetComparator(),
        PlaceComparator(),
    )
