"""segments: saved contact filters and their membership

The segments plugin's own Alembic branch (``crmkit_segments``), so it migrates independently of
the core's linear history. Membership rows name contacts without a foreign key (see
``crmkit.segments.tables``); the branch still follows the core's ``c0002``.

Revision ID: sg0001
Revises:
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

import crmkit.storage.sql.types
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "sg0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("crmkit_segments",)
depends_on: str | Sequence[str] | None = "c0002"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _dt() -> sa.types.TypeEngine:
    return crmkit.storage.sql.types.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("conditions", _json(), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.Column("rebuilt_at", _dt(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("name", name=op.f("uq_segments_name")),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment_id", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.String(length=32), nullable=False),
        sa.Column("entered_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["segment_id"], ["segments.id"], name=op.f("fk_segment_members_segment_id_segments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("segment_id", "contact_id", name=op.f("pk_segment_members")),
    )
    op.create_index("ix_segment_members_contact_id", "segment_members", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_segment_members_contact_id", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_table("segments")
