"""Group matched pairs into clusters of records that are all the same person (union–find, O(n) memory)."""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable


class DisjointSets:
    """Union–find over record indices with path halving and union by size."""

    def __init__(self, size: int) -> None:
        self._parent = array("q", range(size))
        self._size = array("q", [1]) * size

    def find(self, item: int) -> int:
        parent = self._parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: int, b: int) -> int:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return root_a
        if self._size[root_a] < self._size[root_b]:
            root_a, root_b = root_b, root_a
        self._parent[root_b] = root_a
        self._size[root_a] += self._size[root_b]
        return root_a

    def size(self, item: int) -> int:
        return self._size[self.find(item)]


def components(sets: DisjointSets, items: Iterable[int]) -> list[list[int]]:
    """The groups (of two or more) that ``items`` fall into, each sorted."""
    groups: defaultdict[int, set[int]] = defaultdict(set)
    for item in items:
        groups[sets.find(item)].add(item)
    return [sorted(members) for members in groups.values() if len(members) > 1]
