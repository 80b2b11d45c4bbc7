"""Candidate generation: run the blocking passes and yield each candidate pair exactly once.

Every pass is first turned into an index over record positions — which block each record is in,
the block's members, and for windowed blocks each record's rank — and then candidates are
produced record by record: the union of record ``i``'s blocks (or windows) across all passes,
keeping only partners ``j > i``. The union is per record, so a pair found by several passes is
compared once without any global set of seen pairs.

Cost and memory, for ``n`` records, ``P`` passes, block cap ``C`` and window ``w``:

* index: 12 bytes · n per pass (three ``array('i')``), built with one key sweep per pass whose
  temporary key map is released before the next pass;
* a block of ``s ≤ C`` records proposes s·(s−1)/2 pairs, so a pass proposes at most n·(C−1)/2;
  a block over the cap is compared by a sorted window of ``fallback_window`` inside it (s·(w−1)
  pairs) or skipped — both counted and reported, never silently exploding;
* a sorted-neighbourhood pass sorts its keys once (O(n log n)) and proposes n·(w−1) pairs at most;
* generating candidates costs O(Σ proposed pairs) set insertions, done in C by ``set.update``.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Literal

import attrs

from crmkit.dedupe.keys import BlockingPass, SortedNeighbourhood
from crmkit.dedupe.records import PreparedRecord

OversizedPolicy = Literal["window", "skip"]

_MAX_WARNINGS = 20


@attrs.define
class PassStats:
    name: str
    blocks: int = 0
    largest_block: int = 0
    proposed_pairs: int = 0  # before removing pairs that another pass proposed too
    windowed_blocks: int = 0
    skipped_blocks: int = 0


@attrs.define
class BlockingStats:
    passes: list[PassStats] = attrs.field(factory=list)
    candidate_pairs: int = 0  # distinct pairs over all passes
    warnings: list[str] = attrs.field(factory=list)  # the first few; the counts are complete

    @property
    def windowed_blocks(self) -> int:
        return sum(p.windowed_blocks for p in self.passes)

    @property
    def skipped_blocks(self) -> int:
        return sum(p.skipped_blocks for p in self.passes)

    def warn(self, message: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)


@attrs.define
class _PassIndex:
    """One pass over ``n`` records: ``members[starts[b]:starts[b + 1]]`` are block ``b``'s records."""

    block_of: array  # block per record, -1 for none (no key, singleton or skipped block)
    rank: array  # position inside its block, used by windowed blocks
    members: array
    starts: array
    windowed: bytearray  # per block: 1 if compared by a window of ``window`` rather than all pairs
    window: int

    def partners(self, record: int) -> array | None:
        block = self.block_of[record]
        if block < 0:
            return None
        start, end = self.starts[block], self.starts[block + 1]
        if self.windowed[block]:
            position = start + self.rank[record]
            start, end = max(start, position - self.window + 1), min(end, position + self.window)
        return self.members[start:end]


def _order_key(record: PreparedRecord) -> tuple[str, str, str]:
    # Inside an oversized block, neighbours by name are the likeliest duplicates.
    return record.last_name, record.first_name, record.id


def _window_pair_count(size: int, window: int) -> int:
    reach = min(window - 1, size - 1)
    return reach * size - reach * (reach + 1) // 2


def build_index(
    records: Sequence[PreparedRecord],
    blocking_pass: BlockingPass,
    *,
    max_block_size: int,
    oversized: OversizedPolicy,
    fallback_window: int,
    stats: BlockingStats,
) -> _PassIndex:
    """Group ``records`` by the pass's key; for a sorted-neighbourhood pass, one windowed block of all keyed records."""
    n = len(records)
    pass_stats = PassStats(blocking_pass.name)
    stats.passes.append(pass_stats)
    index = _PassIndex(array("i", [-1]) * n, array("i", [0]) * n, array("i"), array("i", [0]), bytearray(), fallback_window)
    key = blocking_pass.key

    def add_block(ordered: list[int], windowed: bool) -> None:
        block = len(index.windowed)
        for rank, record in enumerate(ordered):
            index.block_of[record] = block
            index.rank[record] = rank
        index.members.extend(ordered)
        index.starts.append(len(index.members))
        index.windowed.append(windowed)
        size = len(ordered)
        pass_stats.blocks += 1
        pass_stats.largest_block = max(pass_stats.largest_block, size)
        pass_stats.proposed_pairs += _window_pair_count(size, index.window) if windowed else size * (size - 1) // 2

    if isinstance(blocking_pass, SortedNeighbourhood):
        index.window = blocking_pass.window
        keyed = sorted((value, _order_key(record), position)
                       for position, record in enumerate(records) if (value := key(record)))
        if len(keyed) > 1:
            add_block([position for _, _, position in keyed], windowed=True)
        return index

    blocks: defaultdict[str, list[int]] = defaultdict(list)
    for position, record in enumerate(records):
        value = key(record)
        if value:
            blocks[value].append(position)
    largest_key = ""
    for value, members in blocks.items():
        size = len(members)
        if size < 2:
            continue
        if size > pass_stats.largest_block:
            largest_key = value
        if size <= max_block_size:
            add_block(members, windowed=False)
        elif oversized == "skip":
            pass_stats.skipped_blocks += 1
            pass_stats.largest_block = max(pass_stats.largest_block, size)
        else:
            pass_stats.windowed_blocks += 1
            add_block(sorted(members, key=lambda position: _order_key(records[position])), windowed=True)
    if pass_stats.windowed_blocks or pass_stats.skipped_blocks:
        # One summary per pass: a skewed key can make thousands of oversized blocks.
        treated = (f"{pass_stats.skipped_blocks} skipped" if oversized == "skip"
                   else f"{pass_stats.windowed_blocks} compared within a sorted window of {fallback_window}")
        stats.warn(f"{blocking_pass.name}: blocks over the cap of {max_block_size} records: {treated}; "
                   f"the largest has {pass_stats.largest_block} records (key {largest_key!r})")
    return index


def candidate_partners(
    records: Sequence[PreparedRecord],
    passes: Sequence[BlockingPass],
    *,
    max_block_size: int = 200,
    oversized: OversizedPolicy = "window",
    fallback_window: int = 10,
    stats: BlockingStats | None = None,
) -> Iterator[tuple[int, list[int]]]:
    """For each record position ``i`` in order, yield ``(i, partners)``: the positions ``j > i`` it is
    to be compared with, ascending. Every candidate pair appears exactly once."""
    stats = stats if stats is not None else BlockingStats()
    indexes = [build_index(records, p, max_block_size=max_block_size, oversized=oversized,
                           fallback_window=fallback_window, stats=stats) for p in passes]
    for i in range(len(records)):
        partners: set[int] = set()
        for index in indexes:
            found = index.partners(i)
            if found is not None:
                partners.update(found)
        later = sorted(j for j in partners if j > i)
        stats.candidate_pairs += len(later)
        yield i, later


def candidate_pairs(
    records: Sequence[PreparedRecord],
    passes: Sequence[BlockingPass],
    **options: object,
) -> Iterator[tuple[int, int]]:
    """:func:`candidate_partners` flattened to ``(i, j)`` pairs with ``i < j``."""
    for i, partners in candidate_partners(records, passes, **options):  # type: ignore[arg-type]
        for j in partners:
            yield i, j
