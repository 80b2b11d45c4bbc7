"""Field comparators: how alike two records are on each field, as a similarity and a discrete level.

Every comparator maps a pair of values to a *level* — an index into its ``labels``, ordered from
``"different"`` (0) to ``"exact"`` (last) — or ``None`` when either value is missing, so a missing
value is neither evidence for nor against a match. The scoring model learns one weight per level.
Similarities come from rapidfuzz.

A comparator has two entry points that must agree: :meth:`Comparator.compile` returns the
function the engine calls on every candidate pair — written for speed, with the thresholds bound
as locals and no per-call objects — and :meth:`Comparator.explain` recomputes the similarity and
level for the few pairs that are reported (the tests check that both give the same levels).

Names are compared as a unit (:class:`NameComparator`) because people swap given and family name
on forms: the pair is scored both straight and crossed, and a clearly better crossed reading wins.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import NamedTuple, Protocol

import attrs
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler

from crmkit.dedupe.records import PreparedRecord

Level = int | None
LevelFunction = Callable[[PreparedRecord, PreparedRecord], tuple[Level, ...]]

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

    def compile(self) -> LevelFunction: ...

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]: ...


def _similarity_level(similarity: float | None, thresholds: tuple[float, ...]) -> Level:
    """Level of a similarity: 0 below ``thresholds[0]``, one more per threshold reached, top level for 1.0."""
    if similarity is None:
        return None
    if similarity >= 1.0:
        return len(thresholds) + 1
    return sum(similarity >= t for t in thresholds)


@attrs.frozen
class NameComparator:
    """Given and family name by Jaro–Winkler, tolerant of a given/family swap.

    Levels per name: different, similar (≥ ``thresholds[0]``), close (≥ ``thresholds[1]``), exact.
    The crossed reading (a's given name against b's family name and vice versa) is taken only if
    it beats the straight one by ``swap_margin``: two half-similar names are a coincidence, not a
    swap. Crossed, the better of the two similarities is reported as the given name's.
    """

    thresholds: tuple[float, float] = (0.80, 0.92)
    swap_margin: float = 0.3
    fields: tuple[str, ...] = ("first_name", "last_name")
    comparator: str = "jaro_winkler"
    labels: tuple[str, ...] = ("different", "similar", "close", "exact")

    def similarities(self, a: PreparedRecord, b: PreparedRecord) -> tuple[float | None, float | None, bool]:
        """(given-name similarity, family-name similarity, swapped?)."""
        af, al, bf, bl = a.first_name, a.last_name, b.first_name, b.last_name
        first = (1.0 if af == bf else _jaro_winkler(af, bf)) if af and bf else None
        last = (1.0 if al == bl else _jaro_winkler(al, bl)) if al and bl else None
        straight = (first or 0.0) + (last or 0.0)
        wanted = straight + self.swap_margin
        if wanted >= 2.0:
            return first, last, False
        cross_first = (1.0 if af == bl else _jaro_winkler(af, bl)) if af and bl else None
        # Skip the second crossed comparison when even a perfect one could not make the swap win.
        if (cross_first or 0.0) + (1.0 if al and bf else 0.0) <= wanted:
            return first, last, False
        cross_last = (1.0 if al == bf else _jaro_winkler(al, bf)) if al and bf else None
        if (cross_first or 0.0) + (cross_last or 0.0) > wanted:
            # Which crossed pair is "the given name" depends on which record came first; putting
            # the better one first keeps a pair's score independent of the order of its records.
            if (cross_last or -1.0) > (cross_first or -1.0):
                cross_first, cross_last = cross_last, cross_first
            return cross_first, cross_last, True
        return first, last, False

    def compile(self) -> LevelFunction:
        low, high = self.thresholds
        margin = self.swap_margin
        jaro_winkler = _jaro_winkler

        def levels(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
            # Inlined copy of similarities(): this runs for every candidate pair.
            af, al, bf, bl = a.first_name, a.last_name, b.first_name, b.last_name
            if af == bf and al == bl and af and al:
                return 3, 3
            first = (1.0 if af == bf else jaro_winkler(af, bf)) if af and bf else None
            last = (1.0 if al == bl else jaro_winkler(al, bl)) if al and bl else None
            wanted = (first or 0.0) + (last or 0.0) + margin
            if wanted < 2.0:
                cross_first = (1.0 if af == bl else jaro_winkler(af, bl)) if af and bl else None
                if (cross_first or 0.0) + (1.0 if al and bf else 0.0) > wanted:
                    cross_last = (1.0 if al == bf else jaro_winkler(al, bf)) if al and bf else None
                    if (cross_first or 0.0) + (cross_last or 0.0) > wanted:
                        if (cross_last or -1.0) > (cross_first or -1.0):
                            cross_first, cross_last = cross_last, cross_first
                        first, last = cross_first, cross_last
            return (
                None if first is None else 3 if first >= 1.0 else 2 if first >= high else 1 if first >= low else 0,
                None if last is None else 3 if last >= 1.0 else 2 if last >= high else 1 if last >= low else 0,
            )

        return levels

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        first, last, swapped = self.similarities(a, b)
        note = "given and family name swapped" if swapped else ""
        return [
            Reading("first_name", self.comparator, first, _similarity_level(first, self.thresholds), note),
            Reading("last_name", self.comparator, last, _similarity_level(last, self.thresholds), note),
        ]


@attrs.frozen
class JaroWinklerComparator:
    """Short free text such as the city, by Jaro–Winkler. Levels: different, similar, exact."""

    field: str
    attribute: str
    threshold: float = 0.88
    comparator: str = "jaro_winkler"
    labels: tuple[str, ...] = ("different", "similar", "exact")

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def similarity(self, a: PreparedRecord, b: PreparedRecord) -> float | None:
        x, y = getattr(a, self.attribute), getattr(b, self.attribute)
        if not x or not y:
            return None
        return 1.0 if x == y else _jaro_winkler(x, y)

    def compile(self) -> LevelFunction:
        get, threshold = attrgetter(self.attribute), self.threshold

        def levels(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
            x, y = get(a), get(b)
            if not x or not y:
                return (None,)
            if x == y:
                return (2,)
            return (1 if _jaro_winkler(x, y) >= threshold else 0,)

        return levels

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        similarity = self.similarity(a, b)
        return [Reading(self.field, self.comparator, similarity, _similarity_level(similarity, (self.threshold,)))]


@attrs.frozen
class StreetComparator:
    """Street lines: the better of the token-sort ratio (lines or words in another order) and the
    ratio of the space-free text (``"pridhamstreet"``). Levels: different, similar, close, exact."""

    field: str = "address_street"
    thresholds: tuple[float, float] = (0.70, 0.90)
    comparator: str = "token_sort_ratio"
    labels: tuple[str, ...] = ("different", "similar", "close", "exact")

    # The word-order reading is tried only from this plain ratio up: two lines of one address in
    # the other order still share the longer line in order, i.e. at least half their characters,
    # and skipping it for the many clearly different streets halves this comparator's cost.
    _REORDER_FLOOR = 50.0

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def similarity(self, a: PreparedRecord, b: PreparedRecord) -> float | None:
        if not a.street or not b.street:
            return None
        if a.street_compact == b.street_compact:
            return 1.0
        best = fuzz.ratio(a.street_compact, b.street_compact)
        if best >= self._REORDER_FLOOR:
            best = max(best, fuzz.token_sort_ratio(a.street, b.street))
        return best / 100.0

    def compile(self) -> LevelFunction:
        low, high = (t * 100.0 for t in self.thresholds)
        floor = self._REORDER_FLOOR
        token_sort_ratio, ratio = fuzz.token_sort_ratio, fuzz.ratio

        def levels(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
            if not a.street or not b.street:
                return (None,)
            if a.street_compact == b.street_compact:
                return (3,)
            best = ratio(a.street_compact, b.street_compact)
            if floor <= best < high:  # the word-order reading can only raise the level
                best = max(best, token_sort_ratio(a.street, b.street))
            return (3 if best >= 100.0 else 2 if best >= high else 1 if best >= low else 0,)

        return levels

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        similarity = self.similarity(a, b)
        return [Reading(self.field, self.comparator, similarity, _similarity_level(similarity, self.thresholds))]


@attrs.frozen
class EditDistanceComparator:
    """Codes typed by hand (birth date digits, postcode, phone, e-mail): optimal-string-alignment
    distance, so one mistyped or transposed character is level ``1_edit``.

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

    def distance(self, a: PreparedRecord, b: PreparedRecord) -> int | None:
        x, y = getattr(a, self.attribute), getattr(b, self.attribute)
        if not x or not y:
            return None
        if self.suffix:
            x, y = x[-self.suffix:], y[-self.suffix:]
        return OSA.distance(x, y)

    def compile(self) -> LevelFunction:
        get, suffix, exact = attrgetter(self.attribute), self.suffix, self.max_edits + 1
        distance = OSA.distance

        def levels(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
            x, y = get(a), get(b)
            if not x or not y:
                return (None,)
            if suffix:
                x, y = x[-suffix:], y[-suffix:]
            if x == y:
                return (exact,)
            # score_cutoff lets rapidfuzz stop early; anything beyond it comes back as cutoff + 1.
            return (max(exact - distance(x, y, score_cutoff=exact), 0),)

        return levels

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        distance = self.distance(a, b)
        if distance is None:
            return [Reading(self.field, self.comparator, None, None)]
        length = max(len(getattr(a, self.attribute)[-self.suffix:]), len(getattr(b, self.attribute)[-self.suffix:]))
        level = max(self.max_edits + 1 - distance, 0)
        return [Reading(self.field, self.comparator, 1.0 - distance / length, level)]


@attrs.frozen
class ExactComparator:
    """Agree or not (region/state). Levels: different, exact."""

    field: str
    attribute: str
    comparator: str = "exact"
    labels: tuple[str, ...] = ("different", "exact")

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def compile(self) -> LevelFunction:
        get = attrgetter(self.attribute)

        def levels(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
            x, y = get(a), get(b)
            return (None if not x or not y else int(x == y),)

        return levels

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
            postcode = 2 if a.postcode == b.postcode else 1 if OSA.distance(a.postcode, b.postcode, score_cutoff=2) == 1 else 0
        if a.city and b.city:
            city = 2 if a.city == b.city else 1 if _jaro_winkler(a.city, b.city) >= self.city_threshold else 0
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

    def compile(self) -> LevelFunction:
        threshold = self.city_threshold
        distance, jaro_winkler = OSA.distance, _jaro_winkler

        def levels(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
            # Inlined parts() + combine(), cheapest checks first: this runs for every candidate pair.
            ap, bp, ac, bc = a.postcode, b.postcode, a.city, b.city
            postcode = (2 if ap == bp else 1 if distance(ap, bp, score_cutoff=2) == 1 else 0) if ap and bp else None
            if postcode == 2 and ac and ac == bc:
                return (4,)
            city = (2 if ac == bc else 1 if jaro_winkler(ac, bc) >= threshold else 0) if ac and bc else None
            if postcode == 2:
                return (4 if city else 3,)
            if postcode == 1 and city:
                return (3,)
            if city or postcode == 1:
                return (2,)
            if postcode is None and city is None and not (a.region and b.region):
                return (None,)
            return (1 if a.region and a.region == b.region else 0,)

        return levels

    def explain(self, a: PreparedRecord, b: PreparedRecord) -> list[Reading]:
        postcode, city, region = self.parts(a, b)
        level = self.combine(postcode, city, region)
        words = {None: "missing", 0: "different", 1: "similar", 2: "same"}
        note = f"postcode {words[postcode]}, city {words[city]}, region {words[None if region is None else 2 * region]}"
        similarity = None if level is None else level / (len(self.labels) - 1)
        return [Reading(self.field, self.comparator, similarity, level, note)]


def pattern_function(comparators: tuple[Comparator, ...] | list[Comparator]) -> LevelFunction:
    """One function giving a pair's full agreement pattern: the comparators' levels, concatenated."""
    functions = tuple(c.compile() for c in comparators)

    def pattern(a: PreparedRecord, b: PreparedRecord) -> tuple[Level, ...]:
        result: tuple[Level, ...] = ()
        for function in functions:
            result += function(a, b)
        return result

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
