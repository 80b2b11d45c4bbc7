"""What a merge returns and what the ``merges`` audit table holds, as attrs classes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from crmkit.domain.contacts import Contact
from crmkit.errors import CRMError, NotFound
from crmkit.merge.consents import ConsentConflict
from crmkit.merge.survivorship import FieldDecision

#: External-id systems under which a merge keeps the identifiers that lost (the duplicate's
#: e-mail when the survivor's was kept …), pointing at the survivor, so a later intake of that
#: address still finds the person (see :mod:`crmkit.merge.plugin`).
MERGED_ID_SYSTEMS: dict[str, str] = {
    "email": "merged_email",
    "phone": "merged_phone",
    "account_number": "merged_account_number",
}


class MergeError(CRMError):
    """A merge or an undo was refused; the message says why. Nothing was written."""


class MergedAway(NotFound):
    """The contact asked for no longer exists because it was merged into another."""

    def __init__(self, ident: str, survivor_id: str, merge_id: str):
        self.kind, self.ident, self.survivor_id, self.merge_id = "contact", ident, survivor_id, merge_id
        CRMError.__init__(self, f"contact {ident!r} was merged into {survivor_id!r} (merge {merge_id}); use that contact or undo the merge")


@attrs.define(kw_only=True)
class MergeResult:
    """The outcome of :meth:`MergeService.merge`.

    :ivar decisions: per field, the rule applied and the side (``a``/``b``, the order the
        records were named in) whose value was kept.
    :ivar consent_conflicts: channel × purpose pairs whose states differed, and what the
        survivor was set to (a ``merge`` ledger entry each).
    :ivar relinked: ``table.column`` → how many rows now point at the survivor.
    :ivar merged_identifiers: ``(system, value)`` external ids added for identifiers that lost.
    """

    merge_id: str
    survivor: Contact
    duplicate_id: str
    decisions: dict[str, FieldDecision]
    consent_conflicts: list[ConsentConflict]
    relinked: dict[str, int]
    merged_identifiers: list[tuple[str, str]]


@attrs.define(kw_only=True)
class MergeRecord:
    """One row of the ``merges`` audit table.

    ``rules`` holds the ids of ``a`` and ``b``, which side survived, and the decision per
    field; ``snapshot`` holds both records as they were before the merge and every row the
    merge touched (what :meth:`MergeService.undo` needs) — or ``{"erased": true}`` after the
    person's data was erased.
    """

    id: str
    survivor_id: str
    duplicate_id: str
    rules: dict[str, Any]
    consent_conflicts: list[dict[str, Any]]
    actor: str | None
    merged_at: datetime
    undone_at: datetime | None = None
    undone_by: str | None = None
    snapshot: dict[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def undone(self) -> bool:
        return self.undone_at is not None

    @property
    def erased(self) -> bool:
        return bool(self.snapshot.get("erased"))

    @classmethod
    def from_row(cls, row: Any) -> MergeRecord:
        mapping = row._mapping  # listings leave the (large) snapshot out
        return cls(**{field.name: mapping[field.name] for field in attrs.fields(cls) if field.name in mapping})


@attrs.define(kw_only=True)
class UndoResult:
    merge_id: str
    survivor: Contact
    duplicate: Contact
    forced: bool
