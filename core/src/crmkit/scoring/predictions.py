"""``crm.predictions``: train the predictive score, store it, and keep each contact's predicted
score current from events — with the stored model, never retraining per event.

The event subscriber (called from the scoring plugin's ``crmkit_handle_event``, behind the
same ``enabled`` switch as the rule-based score) rescores a contact when an activity is logged
for it, it is created or changed, or one of its deals is created, moved, won or lost. Each
rescoring rewrites the contact's ``predicted_scores`` row (delete + insert in one transaction),
so a redelivered event writes the same row again. A deleted, erased or merged-away contact's
row is dropped. Until a model is trained, events cost one small read and write nothing.

Two dispatchers rescoring one contact at once can collide on the row's key; the loser raises and
the dispatcher retries it, which rewrites the row from the stored data. ``deal.deleted`` carries
no contact, so a deleted deal's contact keeps its prediction until its next event (or
``crmkit scores train --rescore``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import sqlalchemy as sa

from crmkit.domain import Event
from crmkit.domain.values import new_id, utcnow
from crmkit.errors import NotFound
from crmkit.scoring.features import FeatureReader, numeric_features
from crmkit.scoring.predictive import MIN_PER_CLASS, TOP, Driver, LinearModel, NoModel, Training, train
from crmkit.scoring.settings import SECTION, ScoringSettings
from crmkit.scoring.tables import MODELS, PREDICTIONS

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.storage.uow import UnitOfWork

RESCORE_CONTACT = frozenset({"contact.created", "contact.updated", "contact.merge_undone"})
DROP_CONTACT = frozenset({"contact.deleted", "contact.erased"})
DEAL_EVENTS = frozenset({"deal.created", "deal.updated", "deal.stage_changed", "deal.won", "deal.lost"})
RESCORE_EVENTS = RESCORE_CONTACT | DEAL_EVENTS | {"contact.merged", "activity.logged"}


@attrs.frozen(kw_only=True)
class StoredModel:
    id: str
    trained_at: datetime
    positives: int
    negatives: int
    holdout_auc: float | None
    model: LinearModel


@attrs.frozen(kw_only=True)
class Prediction:
    """A contact's predicted probability of winning and the features that drove it."""

    contact_id: str
    probability: float
    model_id: str
    at: datetime
    drivers: tuple[Driver, ...]


class Predictions:
    def __init__(self, crm: CRM):
        self.crm = crm
        self.settings: ScoringSettings = crm.settings_for(SECTION)

    def _tables(self) -> tuple[sa.Table, sa.Table]:
        tables = self.crm.backend.metadata.tables
        return tables[MODELS], tables[PREDICTIONS]

    def _reader(self, model: LinearModel | None = None) -> FeatureReader:
        """Features as the stored ``model`` was trained on them (its activity kinds), or as the
        settings name them for a new model."""
        kinds = [n.split(".", 1)[1] for n in model.numeric if n.startswith("activities.") and n != "activities.total"] \
            if model is not None else list(self.settings.activity_points)
        return FeatureReader(self.crm.backend.metadata.tables, kinds)

    # --- training -----------------------------------------------------------------------

    def train(self, *, min_per_class: int = MIN_PER_CLASS, now: datetime | None = None) -> tuple[StoredModel, Training]:
        """Train on every contact with a closed deal and store the model (it takes over from the
        previous one). Stored predictions are recomputed as their contacts' events arrive;
        :meth:`rescore_all` (``crmkit scores train --rescore``) updates them all at once."""
        reader = self._reader()
        with self.crm.read() as uow:
            assert uow.connection is not None
            rows, labels = reader.training_rows(uow.connection)
        result = train(rows, labels, numeric_features(reader.kinds), min_per_class=min_per_class)
        stored = StoredModel(id=new_id(), trained_at=now or utcnow(), positives=result.positives,
                             negatives=result.negatives, holdout_auc=result.holdout_auc, model=result.model)
        models, _ = self._tables()
        with self.crm.uow() as uow:
            assert uow.connection is not None
            uow.connection.execute(models.insert().values(
                id=stored.id, trained_at=stored.trained_at, positives=stored.positives, negatives=stored.negatives,
                holdout_auc=stored.holdout_auc, model=stored.model.to_json()))
        return stored, result

    def current_model(self, connection: sa.Connection | None = None) -> StoredModel | None:
        """The newest trained model, or None."""
        models, _ = self._tables()
        stmt = sa.select(models).order_by(models.c.trained_at.desc(), models.c.id.desc()).limit(1)
        if connection is None:
            with self.crm.read() as uow:
                assert uow.connection is not None
                row = uow.connection.execute(stmt).first()
        else:
            row = connection.execute(stmt).first()
        if row is None:
            return None
        return StoredModel(id=row.id, trained_at=row.trained_at, positives=row.positives, negatives=row.negatives,
                           holdout_auc=row.holdout_auc, model=LinearModel.from_json(row.model))

    # --- scoring ------------------------------------------------------------------------

    def _predict(self, connection: sa.Connection, stored: StoredModel, contact_id: str, at: datetime) -> Prediction:
        row = self._reader(stored.model).contact_row(connection, contact_id, at)
        if row is None:
            raise NotFound("contact", contact_id)
        return Prediction(contact_id=contact_id, probability=stored.model.probability(row), model_id=stored.id, at=at,
                          drivers=tuple(stored.model.drivers(row)))

    def predict(self, contact_id: str, now: datetime | None = None) -> Prediction:
        """``contact_id``'s probability of winning as of ``now`` and every feature's part in it,
        largest first; writes nothing. Raises :class:`NoModel` before the first training."""
        with self.crm.read() as uow:
            assert uow.connection is not None
            stored = self.current_model(uow.connection)
            if stored is None:
                raise NoModel("no predictive model yet: train one with `crmkit scores train`")
            return self._predict(uow.connection, stored, contact_id, now or utcnow())

    def stored(self, contact_id: str) -> dict[str, Any] | None:
        """The contact's stored prediction row (probability, model_id, drivers, scored_at), or None."""
        _, predictions = self._tables()
        with self.crm.read() as uow:
            assert uow.connection is not None
            row = uow.connection.execute(sa.select(predictions).where(predictions.c.contact_id == contact_id)).first()
        return None if row is None else dict(row._mapping)

    def rescore(self, contact_id: str, now: datetime | None = None) -> Prediction | None:
        """Recompute and store ``contact_id``'s prediction with the current model (None without
        a model); the top :data:`TOP` drivers are stored with it."""
        _, predictions = self._tables()
        with self.crm.uow() as uow:
            assert uow.connection is not None
            stored = self.current_model(uow.connection)
            if stored is None:
                return None
            prediction = self._predict(uow.connection, stored, contact_id, now or utcnow())
            uow.connection.execute(predictions.delete().where(predictions.c.contact_id == contact_id))
            uow.connection.execute(predictions.insert().values(
                contact_id=contact_id, model_id=stored.id, probability=prediction.probability, scored_at=prediction.at,
                drivers=[attrs.asdict(d) for d in prediction.drivers[:TOP]]))
        return prediction

    def rescore_all(self, now: datetime | None = None, *, batch: int = 500) -> int:
        """Store every contact's prediction with the current model (after training, so no
        prediction of an older model waits for its contact's next event); how many were
        stored — 0 without a model. One short transaction per contact, keyset pages of ids."""
        at, done, after = now or utcnow(), 0, None
        contacts = self.crm.backend.metadata.tables["contacts"]
        while True:
            stmt = sa.select(contacts.c.id).order_by(contacts.c.id).limit(batch)
            with self.crm.read() as uow:
                assert uow.connection is not None
                ids = [r.id for r in uow.connection.execute(stmt if after is None else stmt.where(contacts.c.id > after))]
            if not ids:
                return done
            for contact_id in ids:
                try:
                    done += self.rescore(contact_id, at) is not None
                except NotFound:
                    pass  # deleted since the page was read
            after = ids[-1]

    def forget(self, contact_ids: list[str], uow: UnitOfWork | None = None) -> None:
        """Drop the contacts' stored predictions (in ``uow``, or a transaction of its own)."""
        _, predictions = self._tables()
        if uow is None:
            with self.crm.uow() as own:
                self.forget(contact_ids, own)
            return
        assert uow.connection is not None
        uow.connection.execute(predictions.delete().where(predictions.c.contact_id.in_(contact_ids)))

    # --- events -------------------------------------------------------------------------

    def _deal_contact(self, event: Event) -> str | None:
        data = event.data if isinstance(event.data, dict) else {}
        if isinstance(data.get("contact_id"), str):
            return data["contact_id"]  # type: ignore[no-any-return]
        deals = self.crm.backend.metadata.tables["deals"]
        with self.crm.read() as uow:
            assert uow.connection is not None
            found = uow.connection.execute(sa.select(deals.c.contact_id).where(deals.c.id == event.subject_id)).scalar()
        return found if isinstance(found, str) else None

    def handle(self, event: Event) -> Prediction | None:
        if not self.settings.enabled:
            return None
        data = event.data if isinstance(event.data, dict) else {}
        if event.type in DROP_CONTACT and event.subject_id:
            self.forget([event.subject_id])
            return None
        if event.type == "contact.merged" and isinstance(data.get("duplicate_id"), str):
            self.forget([data["duplicate_id"]])
        if event.type not in RESCORE_EVENTS or self.current_model() is None:
            return None
        if event.type in DEAL_EVENTS:
            contact_id = self._deal_contact(event)
        elif event.type == "activity.logged":
            contact_id = data.get("contact_id") if isinstance(data.get("contact_id"), str) else None
        else:
            contact_id = event.subject_id
        if contact_id is None:
            return None
        try:
            return self.rescore(contact_id)
        except NotFound:
            return None  # deleted or merged away since


def predictions(crm: CRM) -> Predictions:
    """``crm.predictions`` (set at start-up), or a new one for a CRM still starting."""
    existing = getattr(crm, "predictions", None)
    return existing if isinstance(existing, Predictions) else Predictions(crm)
