"""``crm.scores``: lead scores kept current from events, with their explanation.

The ``crmkit_handle_event`` subscriber recomputes a contact's score when something that feeds
it happens — an activity of a scored kind, the contact's creation, a change to a field a rule
reads — and writes it only when it changed, through ``contacts.update`` (so
``contact.updated`` fires), together with ``contact.score_changed`` and, at the thresholds, a
lifecycle promotion. Scoring's own update changes only ``score`` and ``lifecycle_stage``,
fields no rule reads, so it does not set off another recomputation. A merge is left alone
(rewriting the survivor would stop the merge from being undone); the survivor's score follows
its next scored event.

Between events, decay makes stored scores drift above their current value; ``refresh_all``
(``crmkit scores refresh --all``) brings every stored score up to date when that matters.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from crmkit.automation.engine import attribute
from crmkit.domain import Event
from crmkit.domain.values import utcnow
from crmkit.errors import NotFound
from crmkit.scoring.model import PLACES, ScoreCard, compute, promotion
from crmkit.scoring.settings import SECTION, ScoringSettings
from crmkit.serialize import to_jsonable

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

ACTOR = "scoring"
EVENT_TYPES = {"contact.score_changed": "a contact's lead score changed (data: from, to, lifecycle_from, lifecycle_to, cause)"}


class Scores:
    def __init__(self, crm: CRM):
        self.crm = crm
        self.settings: ScoringSettings = crm.settings_for(SECTION)

    def watched_fields(self) -> set[str]:
        """Contact fields the field rules read (top level: ``custom`` for ``custom.budget``)."""
        return {rule.field.split(".", 1)[0] for rule in self.settings.field_rules}

    # --- computing ----------------------------------------------------------------------

    def _card(self, uow: UnitOfWork, contact_id: str, now: datetime) -> ScoreCard:
        contact = uow.contacts.get(contact_id)
        t = uow.activities.table
        kinds = list(self.settings.activity_points)
        rows: list[Any] = []
        if kinds:
            assert uow.connection is not None
            rows = list(uow.connection.execute(
                sa.select(t.c.kind, t.c.occurred_at)
                .where(t.c.contact_id == contact_id, t.c.kind.in_(kinds), t.c.occurred_at >= now - timedelta(days=self.settings.horizon_days))
            ))
        score, contributions = compute(to_jsonable(contact), [(r.kind, r.occurred_at) for r in rows], self.settings, now)
        target = promotion(contact.lifecycle_stage, score, self.settings)
        return ScoreCard(contact_id=contact.id, score=score, at=now, half_life_days=self.settings.half_life_days,
                         contributions=tuple(contributions), stored_score=contact.score,
                         lifecycle_stage=str(contact.lifecycle_stage), promotes_to=None if target is None else target.value)

    def explain(self, contact_id: str, now: datetime | None = None) -> ScoreCard:
        """The score ``contact_id`` has at ``now`` and each rule's part in it; writes nothing."""
        with self.crm.read() as uow:
            return self._card(uow, contact_id, now or utcnow())

    def refresh(self, contact_id: str, now: datetime | None = None, *, cause: Event | None = None) -> ScoreCard:
        """Recompute and store the score (and promote the lifecycle stage at a threshold).
        Nothing is written when neither changed."""
        with self.crm.uow() as uow:
            card = self._card(uow, contact_id, now or utcnow())
            if round(card.stored_score, PLACES) == card.score and card.promotes_to is None:
                return card
            changes: dict[str, Any] = {"score": card.score}
            if card.promotes_to is not None:
                changes["lifecycle_stage"] = card.promotes_to
            self.crm.contacts.update_in(uow, contact_id, changes)
            uow.emit("contact.score_changed", contact_id, {
                "from": card.stored_score, "to": card.score, "lifecycle_from": card.lifecycle_stage,
                "lifecycle_to": card.promotes_to or card.lifecycle_stage,
                "cause": None if cause is None else {"event_id": cause.id, "type": cause.type},
            })
            attribute(uow, ACTOR)  # the events say scoring made the change
        return card

    def refresh_all(self, now: datetime | None = None, *, batch: int = 500) -> int:
        """Bring every stored score up to date (decay included); how many changed."""
        at = now or utcnow()
        changed, after = 0, None
        while True:
            with self.crm.read() as uow:
                t = uow.contacts.table
                stmt = sa.select(t.c.id).order_by(t.c.id).limit(batch)
                assert uow.connection is not None
                ids = [r.id for r in uow.connection.execute(stmt.where(t.c.id > after) if after else stmt)]
            if not ids:
                return changed
            for contact_id in ids:
                card = self.refresh(contact_id, at)
                changed += round(card.stored_score, PLACES) != card.score or card.promotes_to is not None
            after = ids[-1]

    # --- events -------------------------------------------------------------------------

    def contact_to_rescore(self, event: Event) -> str | None:
        """The contact whose score ``event`` may change, or None."""
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "activity.logged":
            contact_id = data.get("contact_id")
            return contact_id if data.get("kind") in self.settings.activity_points and isinstance(contact_id, str) else None
        if event.type == "contact.created":
            return event.subject_id
        if event.type == "contact.updated" and set(data.get("changes") or {}) & self.watched_fields():
            return event.subject_id
        return None

    def handle(self, event: Event) -> ScoreCard | None:
        if not self.settings.enabled:
            return None
        contact_id = self.contact_to_rescore(event)
        if contact_id is None or (event.type == "contact.created" and self._settled_at_creation(event)):
            return None
        try:
            return self.refresh(contact_id, cause=event)
        except NotFound:
            return None  # deleted or merged away since: nothing to score

    def _settled_at_creation(self, event: Event) -> bool:
        """Whether a new contact needs no scoring yet, judged from the event alone.

        A contact that arrives with a score (an import from another system) keeps it until
        something scoring counts happens to it. Otherwise it has no activities yet, so its
        score is its field rules' — computable from the event's data without touching the
        database; most contacts of an import match no rule, and this spares each of them a
        write transaction.
        """
        data = event.data if isinstance(event.data, dict) else {}
        stored = data.get("score") or 0
        if not isinstance(stored, int | float) or stored:
            return True
        score, _ = compute(data, [], self.settings, utcnow())
        stage = data.get("lifecycle_stage")
        return score == 0 and isinstance(stage, str) and promotion(stage, score, self.settings) is None


def scores(crm: CRM) -> Scores:
    """``crm.scores`` (set at start-up), or a new one for a CRM still starting."""
    existing = getattr(crm, "scores", None)
    return existing if isinstance(existing, Scores) else Scores(crm)
