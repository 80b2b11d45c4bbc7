"""Fellegi–Sunter scoring with weights learned without labels.

Each field's comparison level ``l`` has an *m* probability (how often duplicates show that level)
and a *u* probability (how often distinct records do). A pair's weight is the sum over its fields
of ``log2(m / u)`` — positive when the level is likelier for duplicates — which makes the score
explainable field by field; a missing value contributes nothing. Added to the prior log-odds it
gives the probability that the pair is a duplicate.

m, u and the prior are fitted by expectation–maximisation on the counts of agreement *patterns*
(one level per field) among the candidate pairs: a two-class mixture, duplicates and distinct
pairs, with fields independent within a class. Only pattern counts are needed, so fitting costs
O(patterns · fields · iterations) however many pairs there are. Three choices, and why:

* u is fitted on the candidates, not taken from random pairs: blocking selects distinct pairs
  that agree on the blocking keys far more often than random pairs do, and scoring those very
  candidates with random-pair u would read every shared blocking key as evidence (on FEBRL 2 that
  drives EM to call every candidate a duplicate). Random pairs only provide EM's starting u.
* The M-step is a MAP estimate with a few pseudo-pairs drawn from the starting values, so a small
  data set with a handful of duplicates cannot fit weights to two or three pairs.
* After EM, each field's m is pooled so that m/u never falls as the level rises (see
  :func:`_monotone`): an explanation saying an exact match weighs less than a typo would mislead.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import attrs

from crmkit.dedupe.compare import Comparator, Level, ManyFunction
from crmkit.dedupe.records import PreparedRecord

Pattern = tuple[Level, ...]

# Probabilities are kept away from 0 and 1 so that a level never seen in one class gives a large
# but finite weight instead of ±infinity.
_FLOOR = 1e-6


@attrs.define
class FieldModel:
    field: str
    comparator: str
    labels: tuple[str, ...]
    m: list[float]
    u: list[float]

    @property
    def weights(self) -> list[float]:
        return [math.log2(m / u) for m, u in zip(self.m, self.u, strict=True)]


@attrs.define
class MatchModel:
    """Fitted m/u probabilities per field level, and the share of duplicates among candidate pairs."""

    fields: list[FieldModel]
    prior: float
    iterations: int = 0
    converged: bool = False
    _weights: list[list[float]] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Recompute the weight tables after changing ``fields`` in place."""
        self._weights = [f.weights for f in self.fields]

    @property
    def prior_weight(self) -> float:
        return math.log2(self.prior / (1.0 - self.prior))

    def weight(self, pattern: Pattern) -> float:
        """Sum of the per-field weights (log2 Bayes factor) of an agreement pattern."""
        return sum(w[level] for w, level in zip(self._weights, pattern, strict=True) if level is not None)

    def field_weight(self, index: int, level: Level) -> float:
        return 0.0 if level is None else self._weights[index][level]

    def probability(self, weight: float) -> float:
        """Posterior probability of a duplicate for a total weight."""
        log_odds = weight + self.prior_weight
        if log_odds > 60:
            return 1.0
        return 1.0 - 1.0 / (1.0 + 2.0 ** log_odds)


def field_layout(comparators: Sequence[Comparator]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(field, comparator, labels) for every output of every comparator, in pattern order."""
    return [(field, c.comparator, c.labels) for c in comparators for field in c.fields]


def random_pair_levels(
    records: Sequence[PreparedRecord], compare_many: ManyFunction, sample_size: int, seed: int = 0,
) -> Counter[Pattern]:
    """Agreement patterns of about ``sample_size`` random record pairs — how distinct records compare.

    Drawn as random records against a handful of random partners each, so the comparisons run
    batched like the engine's own.
    """
    rng = random.Random(seed)
    n = len(records)
    counts: Counter[Pattern] = Counter()
    if n < 2:
        return counts
    partners_each = 10
    for _ in range(max(1, sample_size // partners_each)):
        i = rng.randrange(n)
        partners = [records[j] for j in (rng.randrange(n) for _ in range(partners_each)) if j != i]
        if partners:
            counts.update(zip(*compare_many(records[i], partners), strict=True))
    return counts


def _level_distribution(counts: Counter[Pattern], index: int, size: int, pseudo: float) -> list[float]:
    totals = [pseudo] * size
    for pattern, count in counts.items():
        level = pattern[index]
        if level is not None:
            totals[level] += count
    total = sum(totals)
    return [max(t / total, _FLOOR) for t in totals]


def initial_model(
    comparators: Sequence[Comparator], random_patterns: Counter[Pattern], prior: float = 0.05,
) -> MatchModel:
    """u from random pairs; m favouring agreement (geometric in the level), to be refined by EM."""
    fields = []
    for index, (field, comparator, labels) in enumerate(field_layout(comparators)):
        size = len(labels)
        u = _level_distribution(random_patterns, index, size, pseudo=0.5)
        raw = [2.0 ** (2 * level) for level in range(size)]
        m = [r / sum(raw) for r in raw]
        fields.append(FieldModel(field, comparator, labels, m, u))
    return MatchModel(fields, prior)


def fit_em(
    model: MatchModel,
    patterns: Counter[Pattern],
    *,
    pseudo_pairs: float = 20.0,
    max_iterations: int = 200,
    tolerance: float = 1e-6,
    monotone: bool = True,
) -> MatchModel:
    """Refine ``model`` by EM on pattern counts; returns a new model (the input is not changed).

    The M-step is a MAP estimate: each field's m and u get ``pseudo_pairs`` imaginary pairs
    distributed as in the starting ``model``. Against thousands of real duplicates they weigh
    nothing; in a small set with a handful of duplicates they keep EM from fitting a field's
    weights to two or three pairs, or from zeroing a field it saw no duplicate agree on.
    """
    sizes = [len(f.labels) for f in model.fields]
    m = [list(f.m) for f in model.fields]
    u = [list(f.u) for f in model.fields]
    m_prior = [[pseudo_pairs * p for p in f.m] for f in model.fields]
    u_prior = [[pseudo_pairs * p for p in f.u] for f in model.fields]
    prior = model.prior
    items = [(count, [(k, level) for k, level in enumerate(pattern) if level is not None])
             for pattern, count in patterns.items()]
    total = sum(patterns.values())
    converged = False
    iteration = 0
    for iteration in range(1, max_iterations + 1):  # noqa: B007 — the count is reported
        m_counts = [list(p) for p in m_prior]
        u_counts = [list(p) for p in u_prior]
        matched = 0.0
        log_prior = math.log(prior / (1.0 - prior))
        log_ratio = [[math.log(mk / uk) for mk, uk in zip(m[k], u[k], strict=True)] for k in range(len(sizes))]
        for count, present in items:
            log_odds = log_prior
            for k, level in present:
                log_odds += log_ratio[k][level]
            share = 1.0 / (1.0 + math.exp(-log_odds)) if log_odds > -700 else 0.0
            matched += share * count
            for k, level in present:
                m_counts[k][level] += share * count
                u_counts[k][level] += (1.0 - share) * count
        new_prior = min(max(matched / total, _FLOOR), 1.0 - _FLOOR) if total else prior
        change = abs(new_prior - prior)
        for k in range(len(sizes)):
            new_m, new_u = _normalise(m_counts[k], m[k]), _normalise(u_counts[k], u[k])
            change = max(change, *(abs(a - b) for a, b in zip(new_m + new_u, m[k] + u[k], strict=True)))
            m[k], u[k] = new_m, new_u
        prior = new_prior
        if change < tolerance:
            converged = True
            break
    if monotone:
        m = [_monotone(m_k, u_k) for m_k, u_k in zip(m, u, strict=True)]
    fields = [attrs.evolve(f, m=m[k], u=u[k]) for k, f in enumerate(model.fields)]
    return MatchModel(fields, prior, iterations=iteration, converged=converged)


def _monotone(m: list[float], u: list[float]) -> list[float]:
    """Adjust ``m`` so that ``m/u`` never falls as the level rises (pool-adjacent-violators).

    Without it, the blocked population can make "exact" look weaker than "close" — non-duplicates
    sharing an exact name are common among candidates precisely because names were blocked on —
    and an explanation saying an exact match counts less than a typo would mislead reviewers.
    Pooling keeps each pool's total m, and gives every level in it the pool's m/u ratio.
    """
    pools: list[list[int]] = []  # [first level, last level] with a common ratio
    sums: list[list[float]] = []  # [Σm, Σu] per pool
    for level, (m_level, u_level) in enumerate(zip(m, u, strict=True)):
        pools.append([level, level])
        sums.append([m_level, u_level])
        while len(pools) > 1 and sums[-2][0] / sums[-2][1] > sums[-1][0] / sums[-1][1]:
            last_pool, last_sum = pools.pop(), sums.pop()
            pools[-1][1] = last_pool[1]
            sums[-1][0] += last_sum[0]
            sums[-1][1] += last_sum[1]
    result = list(m)
    for (first, last), (m_sum, u_sum) in zip(pools, sums, strict=True):
        for level in range(first, last + 1):
            result[level] = u[level] * m_sum / u_sum
    return result


def _normalise(counts: list[float], previous: list[float]) -> list[float]:
    total = sum(counts)
    if total <= 0:  # the field was missing in every pair: keep what we had
        return previous
    return [max(c / total, _FLOOR) for c in counts]
