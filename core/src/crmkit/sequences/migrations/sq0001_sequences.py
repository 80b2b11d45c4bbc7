"""sequences: drip sequences and their enrollments

The sequences plugin's own Alembic branch (``crmkit_sequences``), so it migrates independently
of the core's linear history; enrollments reference ``contacts`` of ``c0002``.

Revision ID: sq0001
Revises:
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

import crmkit.storage.sql.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "sq0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("crmkit_sequences",)
depends_on: str | Sequence[str] | None = "c0002"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _dt() -> sa.types.TypeEngine:
    return crmkit.storage.sql.types.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "sequences",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("steps", _json(), nullable=False),
        sa.Column("exit_on", _json(), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequences")),
        sa.UniqueConstraint("name", name=op.f("uq_sequences_name")),
    )
    op.create_table(
        "sequence_enrollments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("sequence_id", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.String(length=32), nullable=False),
        sa.Column("active_key", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("next_step_at", _dt(), nullable=True),
        sa.Column("enrolled_at", _dt(), nullable=False),
        sa.Column("last_step_at", _dt(), nullable=True),
        sa.Column("ended_at", _dt(), nullable=True),
        sa.Column("exit_reason", sa.String(length=32), nullable=True),
        sa.Column("exit_detail", sa.Text(), nullable=True),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(["sequence_id"], ["sequences.id"], name=op.f("fk_sequence_enrollments_sequence_id_sequences"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_sequence_enrollments_contact_id_contacts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sequence_enrollments")),
        sa.UniqueConstraint("sequence_id", "active_key", name=op.f("uq_sequence_enrollments_sequence_id_active_key")),
    )
    op.create_index(op.f("ix_sequence_enrollments_contact_id"), "sequence_enrollments", ["contact_id"])
    op.create_index(op.f("ix_sequence_enrollments_next_step_at"), "sequence_enrollments", ["next_step_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_sequence_enrollments_next_step_at"), table_name="sequence_enrollments")
    op.drop_index(op.f("ix_sequence_enrollments_contact_id"), table_name="sequence_enrollments")
    op.drop_table("sequence_enrollments")
    op.drop_table("sequences")
