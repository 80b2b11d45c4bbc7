"""The duplicate-detection engine: records in, explained and decided duplicate pairs out.

Steps, for ``n`` records and ``c`` candidate pairs:

1. **prepare** — normalise every record once (:mod:`crmkit.dedupe.records`); the records are read
   from any iterable, so they can stream from storage;
2. **block** — the passes of :mod:`crmkit.dedupe.keys` propose candidate pairs, each once, with
   oversized blocks capped (:mod:`crmkit.dedupe.blocking`); record by record, never all at once;
3. **compare** — each record against its candidate partners, batched per field
   (:mod:`crmkit.dedupe.compare`), reduced to agreement patterns stored as a partner position and
   a pattern code: 8 bytes per candidate pair, no per-pair objects;
4. **fit** — Fellegi–Sunter m/u probabilities and prior by EM on the pattern counts, no labels
   (:mod:`crmkit.dedupe.scoring`);
5. **decide** — score = posterior probability of a duplicate; ``auto_merge`` / ``review`` /
   ``distinct`` by the two thresholds; matched pairs are grouped into clusters; per-field evidence
   of a reported pair is worked out when it is first read.

Memory is O(n) for the prepared records and the blocking indexes plus 8 bytes per candidate pair
(at most about ``n · passes · max(cap, window) / 2``); time is O(c) comparisons plus
O(n log n) sorting. Nothing here touches storage.
"""

from __future__ import annotations

import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import attrs

from crmkit.dedupe.blocking import BlockingStats, OversizedPolicy, candidate_partners
from crmkit.dedupe.clustering import DisjointSets, components
from crmkit.dedupe.compare import Comparator, default_comparators, many_function
from crmkit.dedupe.keys import BlockingPass, default_passes
from crmkit.dedupe.records import PreparedRecord, prepare
from crmkit.dedupe.scoring import MatchModel, Pattern, field_layout, fit_em, initial_model, random_pair_levels

Decision = Literal["auto_merge", "review", "distinct"]


@attrs.frozen
class DedupeConfig:
    """How to look for duplicates. The defaults are meant for contacts and need no training data.

    :ivar auto_merge_at: posterior probability from which a pair may be merged without a human.
    :ivar review_at: posterior probability from which a pair is shown for review.
    :ivar max_block_size: blocks larger than this are not compared pair by pair (see ``oversized``).
    :ivar oversized: ``"window"`` compares an oversized block by a sorted window of
        ``fallback_window``; ``"skip"`` leaves it out. Either way it is counted and warned about.
    :ivar random_pairs: random record pairs compared to give EM its starting u probabilities.
    """

    passes: tuple[BlockingPass, ...] = attrs.field(factory=default_passes)
    comparators: tuple[Comparator, ...] = attrs.field(factory=default_comparators)
    auto_merge_at: float = 0.99
    review_at: float = 0.5
    # A block of s records costs (s - 1) / 2 comparisons per record; a window of w costs at most
    # w - 1. Past s = 2w the window is cheaper, so that is where the cap sits by default; inside
    # an oversized block records are sorted by name, so the neighbours compared are the likeliest
    # duplicates. Exact-key blocks of real data are mostly far smaller (FEBRL: all under 50).
    max_block_size: int = 20
    oversized: OversizedPolicy = "window"
    fallback_window: int = 10
    random_pairs: int = 5_000
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        if not 0.0 < self.review_at <= self.auto_merge_at <= 1.0:
            raise ValueError("review_at/auto_merge_at: need 0 < review_at <= auto_merge_at <= 1")
        if self.max_block_size < 2:
            raise ValueError("max_block_size: must be at least 2")
        if self.fallback_window < 2:
            raise ValueError("fallback_window: must be at least 2")


class FieldEvidence(NamedTuple):
    """One field's part in a pair's score (a tuple: thousands are built per run)."""

    field: str
    comparator: str
    similarity: float | None  # None: missing on at least one side
    level: str | None  # the comparator's level label
    weight: float  # log2(m/u) added to the pair's weight; 0 when missing
    note: str = ""


@attrs.define(eq=False)
class PairMatch:
    """A scored pair. ``evidence`` is worked out on first access — most callers page through a
    few pairs of many — and always sums to ``weight``."""

    left_id: str
    right_id: str
    score: float  # posterior probability of being the same person
    weight: float  # sum of the evidence weights (log2 Bayes factor)
    decision: Decision
    _explain: Callable[[], tuple[FieldEvidence, ...]] | None = attrs.field(repr=False, alias="explain")
    _evidence: tuple[FieldEvidence, ...] | None = attrs.field(default=None, repr=False, alias="evidence")

    @property
    def evidence(self) -> tuple[FieldEvidence, ...]:
        if self._evidence is None:
            assert self._explain is not None
            self._evidence, self._explain = self._explain(), None
        return self._evidence


@attrs.define
class DedupeStats:
    records: int = 0
    candidate_pairs: int = 0
    auto_merge: int = 0
    review: int = 0
    # A cluster far larger than any family of duplicates means weak links chained distinct
    # people together; worth a look before merging anything.
    largest_cluster: int = 0
    blocking: BlockingStats = attrs.field(factory=BlockingStats)
    seconds: dict[str, float] = attrs.field(factory=dict)


@attrs.frozen
class Cluster:
    """Records linked, directly or through others, by ``auto_merge``/``review`` pairs.

    ``decision`` is ``auto_merge`` when ``auto_merge`` pairs alone connect all of them, else ``review``.
    """

    ids: tuple[str, ...]
    decision: Decision


@attrs.define
class DedupeResult:
    pairs: list[PairMatch]  # auto_merge and review pairs, highest score first
    clusters: list[Cluster]  # sorted by their first id
    model: MatchModel
    stats: DedupeStats

    def matched_pairs(self, decisions: Iterable[Decision] = ("auto_merge", "review")) -> set[tuple[str, str]]:
        """Id pairs (sorted within the pair) scored with one of ``decisions``."""
        wanted = set(decisions)
        return {(p.left_id, p.right_id) for p in self.pairs if p.decision in wanted}

    def cluster_pairs(self, decisions: Iterable[Decision] = ("auto_merge", "review")) -> set[tuple[str, str]]:
        """Every pair of records sharing a cluster with one of ``decisions`` — what merging the clusters implies."""
        wanted = set(decisions)
        return {(a, b) for cluster in self.clusters if cluster.decision in wanted
                for k, a in enumerate(cluster.ids) for b in cluster.ids[k + 1:]}


def _ordered(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


class _PatternCodes(dict[Pattern, int]):
    """Pattern → code, encoding a pattern the first time it is seen (a few hundred distinct ones)."""

    def __init__(self, encode: Callable[[Pattern], int]) -> None:
        super().__init__()
        self._encode = encode

    def __missing__(self, pattern: Pattern) -> int:
        code = self[pattern] = self._encode(pattern)
        return code


class Deduplicator:
    """Runs the steps of the module docstring with one :class:`DedupeConfig`."""

    def __init__(self, config: DedupeConfig | None = None) -> None:
        self.config = config or DedupeConfig()
        self._compare_many = many_function(self.config.comparators)
        # Mixed-radix pattern codes: level + 1 per field (0 = missing) packs a pattern into one int.
        self._radix = [len(labels) + 1 for _, _, labels in field_layout(self.config.comparators)]
        self._strides: list[int] = []
        stride = 1
        for radix in self._radix:
            self._strides.append(stride)
            stride *= radix
        self._code_type = "i" if stride < 2**31 else "q"

    def _encode(self, pattern: Pattern) -> int:
        return sum(stride * (0 if level is None else level + 1) for stride, level in zip(self._strides, pattern, strict=True))

    def _decode(self, code: int) -> Pattern:
        levels: list[int | None] = []
        for radix in self._radix:
            code, digit = divmod(code, radix)
            levels.append(None if digit == 0 else digit - 1)
        return tuple(levels)

    def run(self, records: Iterable[Mapping[str, Any]]) -> DedupeResult:
        config = self.config
        stats = DedupeStats()
        clock = time.perf_counter()
        prepared = self._prepare(records)
        stats.records = len(prepared)
        stats.seconds["prepare"] = time.perf_counter() - clock

        clock = time.perf_counter()
        offsets, partners, codes, counts = self._compare_candidates(prepared, stats)
        stats.candidate_pairs = len(codes)
        stats.seconds["block_and_compare"] = time.perf_counter() - clock

        clock = time.perf_counter()
        model = self.fit(prepared, counts)
        stats.seconds["fit"] = time.perf_counter() - clock

        clock = time.perf_counter()
        weights = {code: model.weight(self._decode(code)) for code in counts}
        kept_codes = {code for code, weight in weights.items() if model.probability(weight) >= config.review_at}
        kept: list[tuple[int, int]] = []
        pairs: list[PairMatch] = []
        for i in range(len(prepared)):
            for position in range(offsets[i], offsets[i + 1]):
                code = codes[position]
                if code in kept_codes:
                    j = partners[position]
                    kept.append((i, j))
                    pairs.append(self._pair(prepared[i], prepared[j], model, weights[code]))
        del offsets, partners, codes
        clusters = self._clusters(prepared, kept, pairs)
        stats.largest_cluster = max((len(c.ids) for c in clusters), default=0)
        pairs.sort(key=lambda p: (-p.score, p.left_id, p.right_id))
        stats.auto_merge = sum(p.decision == "auto_merge" for p in pairs)
        stats.review = len(pairs) - stats.auto_merge
        stats.seconds["decide"] = time.perf_counter() - clock
        return DedupeResult(pairs, clusters, model, stats)

    @staticmethod
    def _prepare(records: Iterable[Mapping[str, Any]]) -> list[PreparedRecord]:
        prepared: list[PreparedRecord] = []
        seen: set[str] = set()
        for position, record in enumerate(records):
            try:
                item = prepare(record)
            except ValueError as exc:
                raise ValueError(f"record {position}: {exc}") from None
            if item.id in seen:
                raise ValueError(f"record {position}: id: {item.id!r} appears twice")
            seen.add(item.id)
            prepared.append(item)
        return prepared

    def _compare_candidates(
        self, prepared: Sequence[PreparedRecord], stats: DedupeStats,
    ) -> tuple[array, array, array, Counter[int]]:
        """Compare every candidate pair; keep only its partner position and pattern code (8 bytes).

        Record ``i``'s partners are ``partners[offsets[i]:offsets[i + 1]]``.
        """
        config = self.config
        compare_many = self._compare_many
        offsets, partners, codes = array("q", [0]), array("i"), array(self._code_type)
        code_of = _PatternCodes(self._encode)
        for i, later in candidate_partners(prepared, config.passes, max_block_size=config.max_block_size,
                                           oversized=config.oversized, fallback_window=config.fallback_window,
                                           stats=stats.blocking):
            if later:
                codes.extend(map(code_of.__getitem__, zip(*compare_many(prepared[i], [prepared[j] for j in later]), strict=True)))
                partners.extend(later)
            offsets.append(len(partners))
        return offsets, partners, codes, Counter(codes)

    def fit(self, prepared: Sequence[PreparedRecord], counts: Counter[int]) -> MatchModel:
        """EM on the candidates' pattern counts, started from u measured on random pairs."""
        config = self.config
        random_patterns = random_pair_levels(prepared, self._compare_many, config.random_pairs, config.seed)
        start = initial_model(config.comparators, random_patterns)
        patterns = Counter({self._decode(code): count for code, count in counts.items()})
        return fit_em(start, patterns)

    def _decision(self, score: float) -> Decision:
        config = self.config
        return "auto_merge" if score >= config.auto_merge_at else "review" if score >= config.review_at else "distinct"

    def _pair(self, a: PreparedRecord, b: PreparedRecord, model: MatchModel, weight: float) -> PairMatch:
        score = model.probability(weight)
        left, right = _ordered(a.id, b.id)  # evidence is symmetric, so only the ids need ordering
        return PairMatch(left, right, score, weight, self._decision(score), explain=lambda: self._evidence(a, b, model))

    def _evidence(self, a: PreparedRecord, b: PreparedRecord, model: MatchModel) -> tuple[FieldEvidence, ...]:
        evidence: list[FieldEvidence] = []
        index = 0
        for comparator in self.config.comparators:
            for reading in comparator.explain(a, b):
                labels = model.fields[index].labels
                evidence.append(FieldEvidence(reading.field, reading.comparator, reading.similarity,
                                              None if reading.level is None else labels[reading.level],
                                              model.field_weight(index, reading.level), reading.note))
                index += 1
        return tuple(evidence)

    def explain(self, left: Mapping[str, Any], right: Mapping[str, Any], model: MatchModel) -> PairMatch:
        """Score and explain any two records with a fitted ``model`` (e.g. ``result.model``) — also
        pairs the blocking never proposed, to answer "why were these two not matched?"."""
        a, b = prepare(left), prepare(right)
        evidence = self._evidence(a, b, model)
        weight = sum(e.weight for e in evidence)
        return PairMatch(*_ordered(a.id, b.id), model.probability(weight), weight,
                         self._decision(model.probability(weight)), explain=None, evidence=evidence)

    @staticmethod
    def _clusters(prepared: Sequence[PreparedRecord], kept: Sequence[tuple[int, int]], pairs: Sequence[PairMatch]) -> list[Cluster]:
        """Connected components of the kept pairs (``kept[k]`` scored as ``pairs[k]``)."""
        linked, merged = DisjointSets(len(prepared)), DisjointSets(len(prepared))
        for (i, j), pair in zip(kept, pairs, strict=True):
            linked.union(i, j)
            if pair.decision == "auto_merge":
                merged.union(i, j)
        clusters = []
        for members in components(linked, (k for pair in kept for k in pair)):
            decision: Decision = "auto_merge" if len({merged.find(k) for k in members}) == 1 else "review"
            clusters.append(Cluster(tuple(sorted(prepared[k].id for k in members)), decision))
        clusters.sort(key=lambda c: c.ids)
        return clusters


def find_duplicates(records: Iterable[Mapping[str, Any]], config: DedupeConfig | None = None) -> DedupeResult:
    """Convenience wrapper: ``Deduplicator(config).run(records)``."""
    return Deduplicator(config).run(records)
