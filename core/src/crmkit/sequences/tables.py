"""The sequence tables (Alembic branch ``crmkit_sequences``, scripts in ``migrations/``; a test
compares the two on every backend)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from crmkit.storage.sql.tables import ID
from crmkit.storage.sql.types import UTCDateTime, json_type

BRANCH = "crmkit_sequences"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SEQUENCES = "sequences"
ENROLLMENTS = "sequence_enrollments"


def define_tables(metadata: sa.MetaData) -> list[sa.Table]:
    sequences = sa.Table(
        SEQUENCES, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("steps", json_type(), nullable=False),
        sa.Column("exit_on", json_type(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    enrollments = sa.Table(
        ENROLLMENTS, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("sequence_id", ID, sa.ForeignKey(f"{SEQUENCES}.id", ondelete="CASCADE"), nullable=False),
        # A merge moves the duplicate's enrollments onto the survivor (every contacts.id
        # reference is moved), so they follow the person.
        sa.Column("contact_id", ID, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True),
        # The contact's id while the enrollment is active, NULL after: the unique constraint
        # then allows one active enrollment per contact and sequence on every backend (NULLs
        # never collide), where a partial index would not exist on MariaDB. No foreign key, so
        # a merge leaves it to the subscriber to reconcile (see Sequences.reconcile).
        sa.Column("active_key", ID),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),  # index of the next step to send
        # When the next step is due; NULL once the enrollment has ended. ``tick`` reads it
        # through the index.
        sa.Column("next_step_at", UTCDateTime(), index=True),
        sa.Column("enrolled_at", UTCDateTime(), nullable=False),
        sa.Column("last_step_at", UTCDateTime()),
        sa.Column("ended_at", UTCDateTime()),
        sa.Column("exit_reason", sa.String(32)),
        sa.Column("exit_detail", sa.Text),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("sequence_id", "active_key"),
    )
    return [sequences, enrollments]
