"""Scanning the contacts a CRM stores for duplicates, and merging the certain ones (``crm.dedupe``).

The engine (:mod:`crmkit.dedupe.engine`) knows nothing about storage; this module feeds it. It
reads the contacts table with SQLAlchemy Core in pages by keyset on the primary key — only the
columns the engine compares, each page its own short read transaction, each row handed to the
engine and dropped once normalised — so besides the engine's own O(n) state (about 1 KB per
contact) memory holds one page. A row's column names are already the flat record shape
:func:`~crmkit.dedupe.records.contact_record` produces (``address_city`` …), so no entity is
built per row.

What comes back is meant to be acted on: each :class:`CandidatePair` names both contact ids,
the score (posterior probability of being one person), the decision band (``auto_merge`` /
``review``) and why (per field: agreement level, similarity and the weight it added). The
summary says how many blocks went over the block cap, because a capped block is a place where
duplicates may have been missed.

:meth:`DuplicateScanner.auto_merge` merges the ``auto_merge`` pairs through ``crm.merges`` —
the same survivorship rules, consent handling, audit row and undo as ``crmkit dedupe merge`` —
one merge (one transaction) per pair, highest score first. A pair whose contact was merged away
earlier in the same run is skipped rather than failed: in a cluster of three, the pairs that
remain after the first merge are already settled, or are found again by the next scan against
the survivor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import sqlalchemy as sa

from crmkit.dedupe.engine import Cluster, DedupeConfig, DedupeResult, Deduplicator, PairMatch
from crmkit.dedupe.keys import SortedNeighbourhood
from crmkit.errors import NotFound, ValidationFailed
from crmkit.merge.records import MergeError

if TYPE_CHECKING:
    from crmkit.app import CRM

#: The contacts columns the engine compares — the keys of :func:`~crmkit.dedupe.records.contact_record`.
RECORD_FIELDS = (
    "id", "first_name", "last_name", "email", "phone", "birth_date",
    "address_street", "address_city", "address_region", "address_postcode",
)
#: Rows read per query. Big enough that the round trips cost little next to the engine's work,
#: small enough that a page is a few MB.
PAGE_SIZE = 5000
#: Who the audit trail says merged a pair automatically (``crmkit audit list --actor dedupe-scan``).
AUTO_MERGE_ACTOR = "dedupe-scan"

#: ``progress(stage, done, total)``: ``stage`` is ``"reading"`` (contacts read so far, of
#: ``total``), ``"scoring"`` (blocking, comparing and fitting; no counts) or ``"merging"``.
Progress = Callable[[str, int, int | None], None]
MergeStatus = Literal["merged", "skipped", "failed"]


@attrs.frozen
class FieldExplanation:
    """One field's part in a pair's score.

    :ivar agreement: the comparator's level (``exact``, ``close``, ``different`` …), or
        ``missing`` when either contact has no value — which weighs nothing either way.
    :ivar similarity: in [0, 1], ``None`` when missing.
    :ivar weight: log2 Bayes factor this field added to the pair's weight (negative: evidence
        against); the weights of a pair sum to its ``weight``.
    """

    field: str
    comparator: str
    agreement: str
    similarity: float | None
    weight: float
    note: str = ""


@attrs.frozen
class CandidatePair:
    """Two stored contacts that may be one person. ``a < b``; ``score`` is the posterior
    probability that they are; ``decision`` is ``auto_merge`` or ``review``."""

    a: str
    b: str
    score: float
    weight: float
    decision: str
    explanation: tuple[FieldExplanation, ...]

    @classmethod
    def from_match(cls, match: PairMatch) -> CandidatePair:
        explanation = tuple(
            FieldExplanation(e.field, e.comparator, "missing" if e.level is None else e.level, e.similarity, e.weight, e.note)
            for e in match.evidence
        )
        return cls(match.left_id, match.right_id, match.score, match.weight, match.decision, explanation)


@attrs.frozen
class ScanSummary:
    """Counts of one scan. ``auto_merge``/``review`` count every pair found, ``reported`` those
    returned (``limit``). ``capped_blocks`` are blocks over ``max_block_size`` compared only within
    a sorted window (or, with ``oversized="skip"``, ``skipped_blocks`` not compared at all):
    a skewed key such as a placeholder birth date, worth fixing at the source."""

    contacts: int
    candidate_pairs: int
    auto_merge: int
    review: int
    reported: int
    clusters: int
    largest_cluster: int
    capped_blocks: int
    skipped_blocks: int
    largest_block: int
    warnings: tuple[str, ...]
    auto_merge_at: float
    review_at: float
    seconds: dict[str, float]


@attrs.define
class ScanResult:
    pairs: list[CandidatePair]  # highest score first
    clusters: list[Cluster]  # every cluster found (not cut by ``limit``)
    summary: ScanSummary


@attrs.frozen
class AutoMerge:
    """What auto-merge did with one ``auto_merge`` pair. ``merge_id`` undoes a merge
    (``crm.merges.undo`` / ``crmkit dedupe undo``); ``reason`` says why a pair was skipped or failed."""

    a: str
    b: str
    status: MergeStatus
    merge_id: str | None = None
    survivor_id: str | None = None
    duplicate_id: str | None = None
    reason: str = ""


def scan_config(
    *,
    auto_merge_at: float | None = None,
    review_at: float | None = None,
    max_block_size: int | None = None,
    oversized: str | None = None,
    base: DedupeConfig | None = None,
) -> DedupeConfig:
    """The engine configuration for a scan: ``base`` (default: the engine's defaults) with the
    given overrides. Bad values raise :class:`ValidationFailed` naming the parameter."""
    base = base or DedupeConfig()
    if review_at is not None and auto_merge_at is None and review_at > base.auto_merge_at:
        # "Only pairs above 0.995": every such pair was auto_merge anyway, so raising the
        # auto-merge threshold to match changes no decision and keeps review_at <= auto_merge_at.
        auto_merge_at = review_at
    changes = {name: value for name, value in (("auto_merge_at", auto_merge_at), ("review_at", review_at),
                                               ("max_block_size", max_block_size), ("oversized", oversized))
               if value is not None}
    if "oversized" in changes and changes["oversized"] not in ("window", "skip"):
        raise ValidationFailed.single("oversized", "invalid_choice", f"{changes['oversized']!r} is not one of: window, skip")
    try:
        return attrs.evolve(base, **changes)
    except ValueError as exc:
        field = str(exc).split(":", 1)[0].split("/", 1)[0]
        raise ValidationFailed.single(field, "invalid", str(exc)) from None


class DuplicateScanner:
    """Duplicate detection over the CRM's stored contacts (``crm.dedupe``)."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    # --- reading ------------------------------------------------------------------------------

    def count(self) -> int:
        with self.crm.read() as uow:
            table = uow.contacts.table
            return int(uow.connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())  # type: ignore[union-attr]

    def records(self, *, page_size: int = PAGE_SIZE) -> Iterator[Mapping[str, Any]]:
        """Every stored contact as an engine input record, streamed in pages ordered by id.

        Each page is its own read transaction, so a long scan holds no lock or snapshot on the
        table; a contact added meanwhile may or may not be seen, and one merged away before its
        page is read is not.
        """
        if page_size < 1:
            raise ValidationFailed.single("page_size", "invalid", "must be at least 1")
        after: str | None = None
        while True:
            with self.crm.read() as uow:
                table = uow.contacts.table
                query = sa.select(*(table.c[name] for name in RECORD_FIELDS)).order_by(table.c.id).limit(page_size)
                if after is not None:
                    query = query.where(table.c.id > after)
                page = uow.connection.execute(query).mappings().all()  # type: ignore[union-attr]
            yield from page
            if len(page) < page_size:
                return
            after = page[-1]["id"]

    # --- scanning -----------------------------------------------------------------------------

    def scan(
        self,
        *,
        auto_merge_at: float | None = None,
        review_at: float | None = None,
        max_block_size: int | None = None,
        oversized: str | None = None,
        limit: int | None = None,
        config: DedupeConfig | None = None,
        page_size: int = PAGE_SIZE,
        progress: Progress | None = None,
    ) -> ScanResult:
        """Find the likely duplicates among all stored contacts.

        :param auto_merge_at: score from which a pair is ``auto_merge`` (default 0.99).
        :param review_at: score from which a pair is reported at all, as ``review`` (default 0.5).
        :param max_block_size: blocks bigger than this are compared by a sorted window only
            (``oversized="window"``, the default) or not at all (``"skip"``); counted in the summary.
        :param limit: return only the ``limit`` highest-scoring pairs (the summary counts all).
        :param config: a full engine configuration to start from (passes, comparators …).
        :raises ValidationFailed: a threshold or option out of range, naming it.
        """
        if limit is not None and limit < 1:
            raise ValidationFailed.single("limit", "invalid", "must be at least 1")
        engine_config = scan_config(auto_merge_at=auto_merge_at, review_at=review_at, max_block_size=max_block_size,
                                    oversized=oversized, base=config)
        began = time.perf_counter()
        records = self.records(page_size=page_size)
        if progress is not None:
            records = _reporting(records, progress, self.count())
        result = Deduplicator(engine_config).run(records)
        seconds = time.perf_counter() - began
        chosen = result.pairs if limit is None else result.pairs[:limit]
        clock = time.perf_counter()
        pairs = [CandidatePair.from_match(match) for match in chosen]
        explain_seconds = time.perf_counter() - clock
        return ScanResult(pairs, result.clusters, _summary(result, engine_config, len(pairs),
                                                            {**result.stats.seconds, "total": seconds, "explain": explain_seconds}))

    # --- merging ------------------------------------------------------------------------------

    def auto_merge(
        self,
        pairs: Sequence[CandidatePair] | ScanResult,
        *,
        rules: Mapping[str, str] | None = None,
        actor: str | None = AUTO_MERGE_ACTOR,
        progress: Progress | None = None,
    ) -> list[AutoMerge]:
        """Merge every ``auto_merge`` pair of ``pairs``, highest score first (ties by ids), each
        through :meth:`crm.merges.merge <crmkit.merge.service.MergeService.merge>` in its own
        transaction, with the default survivor (the older contact) and ``rules`` overriding the
        default survivorship rules as in ``crmkit dedupe merge --rule``.

        A pair with a contact merged away earlier in this run, or gone since the scan (merged or
        deleted by someone else), is ``skipped``; a merge the service refuses (a plugin's unique
        constraint …) is ``failed`` with the reason and the run goes on: each merge stands alone
        and each ``merged`` one can be undone by its ``merge_id``.
        """
        candidates = pairs.pairs if isinstance(pairs, ScanResult) else pairs
        wanted = sorted((p for p in candidates if p.decision == "auto_merge"), key=lambda p: (-p.score, p.a, p.b))
        merged_into: dict[str, str] = {}
        outcomes: list[AutoMerge] = []
        for done, pair in enumerate(wanted):
            if progress is not None:
                progress("merging", done, len(wanted))
            gone = next((c for c in (pair.a, pair.b) if c in merged_into), None)
            if gone is not None:
                outcomes.append(AutoMerge(pair.a, pair.b, "skipped", reason=f"contact {gone} was merged into "
                                          f"{_final(merged_into, gone)} earlier in this run"))
                continue
            try:
                merged = self.crm.merges.merge(pair.a, pair.b, rules=rules, actor=actor)
            except NotFound as exc:  # MergedAway included: someone else got there first
                outcomes.append(AutoMerge(pair.a, pair.b, "skipped", reason=str(exc)))
                continue
            except MergeError as exc:
                outcomes.append(AutoMerge(pair.a, pair.b, "failed", reason=str(exc)))
                continue
            merged_into[merged.duplicate_id] = merged.survivor.id
            outcomes.append(AutoMerge(pair.a, pair.b, "merged", merge_id=merged.merge_id,
                                      survivor_id=merged.survivor.id, duplicate_id=merged.duplicate_id))
        if progress is not None:
            progress("merging", len(wanted), len(wanted))
        return outcomes


def _final(merged_into: Mapping[str, str], contact_id: str) -> str:
    """The contact ``contact_id`` lives on in after this run's merges (a chain: A into B, B into C)."""
    while contact_id in merged_into:
        contact_id = merged_into[contact_id]
    return contact_id


def _reporting(records: Iterator[Mapping[str, Any]], progress: Progress, total: int) -> Iterator[Mapping[str, Any]]:
    """Pass ``records`` through, telling ``progress`` how many were read; when they run out the
    engine moves on to blocking and scoring, and that is reported too."""
    done = 0
    progress("reading", 0, total)
    for record in records:
        yield record
        done += 1
        if done % 1000 == 0:
            progress("reading", done, total)
    progress("reading", done, total)
    progress("scoring", 0, None)


def _summary(result: DedupeResult, config: DedupeConfig, reported: int, seconds: dict[str, float]) -> ScanSummary:
    stats, blocking = result.stats, result.stats.blocking
    return ScanSummary(
        contacts=stats.records, candidate_pairs=stats.candidate_pairs, auto_merge=stats.auto_merge, review=stats.review,
        reported=reported, clusters=len(result.clusters), largest_cluster=stats.largest_cluster,
        capped_blocks=blocking.windowed_blocks, skipped_blocks=blocking.skipped_blocks,
        # A sorted-neighbourhood pass is one windowed "block" of every keyed record: not a block size.
        largest_block=max((s.largest_block for s, p in zip(blocking.passes, config.passes, strict=True)
                           if not isinstance(p, SortedNeighbourhood)), default=0),
        warnings=tuple(blocking.warnings), auto_merge_at=config.auto_merge_at, review_at=config.review_at,
        seconds={name: round(value, 3) for name, value in seconds.items()},
    )
