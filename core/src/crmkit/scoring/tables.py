"""The predictive score's tables (Alembic branch ``crmkit_scoring``, scripts in ``migrations/``;
``test_migrations`` compares the two on every backend).

* ``scoring_models`` — every trained model, newest in force: the coefficients, intercept,
  feature names, scaler and one-hot parameters as JSON (never a pickle: loading a model must
  not run code), with when it was trained, on how many contacts and its holdout ROC AUC.
* ``predicted_scores`` — one row per scored contact: the probability, the model that gave it
  and the features that drove it. Kept apart from ``contacts.score`` (the rule-based points) so
  the two scores never overwrite each other and writing a prediction does not fire
  ``contact.updated``. ``contact_id`` has no foreign key, like ``segment_members``: a merge
  would move the duplicate's row onto the survivor's; the event handler drops it instead.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from crmkit.storage.sql.tables import ID
from crmkit.storage.sql.types import UTCDateTime, json_type

BRANCH = "crmkit_scoring"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MODELS = "scoring_models"
PREDICTIONS = "predicted_scores"


def define_tables(metadata: sa.MetaData) -> list[sa.Table]:
    models = sa.Table(
        MODELS, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("trained_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("positives", sa.Integer, nullable=False),
        sa.Column("negatives", sa.Integer, nullable=False),
        sa.Column("holdout_auc", sa.Float),
        sa.Column("model", json_type(), nullable=False),
    )
    predictions = sa.Table(
        PREDICTIONS, metadata,
        sa.Column("contact_id", ID, primary_key=True),
        sa.Column("model_id", ID, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("drivers", json_type(), nullable=False),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
    )
    return [models, predictions]
