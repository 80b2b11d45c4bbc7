"""Consent on merge: never combined silently (pure rules, no storage).

Both contacts' ledgers move onto the survivor, so the *history* is kept whole; the survivor's
*current* state for each channel × purpose is then settled explicitly wherever the two
contacts' current states differ:

* granted only when both were granted;
* otherwise — one withdrawn, or one with no record at all — the survivor gets ``withdrawn``.

"No record" counts as "not granted": a merge cannot establish consent that one of the two
identities never gave (the other's grant may have been for an address the survivor no longer
uses). The ledger has no "unknown" state, so the restriction is written as a ``withdrawn``
entry with source ``merge`` whose evidence names the merge and both prior states; each such
conflict is reported so someone can ask the person again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from crmkit.domain.engagement import Consent
from crmkit.domain.values import ConsentStatus

Key = tuple[str, str]  # (channel, purpose)


@attrs.frozen
class ConsentConflict:
    channel: str
    purpose: str
    survivor_status: ConsentStatus | None
    duplicate_status: ConsentStatus | None
    resolved: ConsentStatus


def current_states(entries: Iterable[Consent]) -> dict[Key, ConsentStatus]:
    """The current state per channel × purpose: the latest entry (by recorded_at, then id,
    the order :meth:`ConsentService.current` uses)."""
    states: dict[Key, ConsentStatus] = {}
    for entry in sorted(entries, key=lambda e: (e.recorded_at, e.id)):
        states[(entry.channel, entry.purpose)] = entry.status
    return states


def most_restrictive(first: ConsentStatus | None, second: ConsentStatus | None) -> ConsentStatus:
    both_granted = first is ConsentStatus.GRANTED and second is ConsentStatus.GRANTED
    return ConsentStatus.GRANTED if both_granted else ConsentStatus.WITHDRAWN


def conflicts(survivor: Mapping[Key, ConsentStatus], duplicate: Mapping[Key, ConsentStatus]) -> list[ConsentConflict]:
    """The channel × purpose pairs whose current states differ, each with the state the
    survivor must end up in; sorted, so the result is reproducible."""
    found = []
    for channel, purpose in sorted(set(survivor) | set(duplicate)):
        mine, theirs = survivor.get((channel, purpose)), duplicate.get((channel, purpose))
        if mine != theirs:
            found.append(ConsentConflict(channel, purpose, mine, theirs, most_restrictive(mine, theirs)))
    return found
