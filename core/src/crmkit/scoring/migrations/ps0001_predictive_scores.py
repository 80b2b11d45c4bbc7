"""scoring: trained predictive models and the predicted score per contact

The scoring plugin's own Alembic branch (``crmkit_scoring``), so it migrates independently of
the core's linear history. ``predicted_scores.contact_id`` names contacts without a foreign key
(see ``crmkit.scoring.tables``); the branch still follows the core's ``c0002``.

Revision ID: ps0001
Revises:
Create Date: 2026-11-23 16:40:00
"""

from collections.abc import Sequence

import crmkit.storage.sql.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "ps0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("crmkit_scoring",)
depends_on: str | Sequence[str] | None = "c0002"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _dt() -> sa.types.TypeEngine:
    return crmkit.storage.sql.types.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "scoring_models",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("trained_at", _dt(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("negatives", sa.Integer(), nullable=False),
        sa.Column("holdout_auc", sa.Float(), nullable=True),
        sa.Column("model", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_models")),
    )
    op.create_index(op.f("ix_scoring_models_trained_at"), "scoring_models", ["trained_at"])
    op.create_table(
        "predicted_scores",
        sa.Column("contact_id", sa.String(length=32), nullable=False),
        sa.Column("model_id", sa.String(length=32), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("drivers", _json(), nullable=False),
        sa.Column("scored_at", _dt(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_predicted_scores")),
    )


def downgrade() -> None:
    op.drop_table("predicted_scores")
    op.drop_index(op.f("ix_scoring_models_trained_at"), table_name="scoring_models")
    op.drop_table("scoring_models")
