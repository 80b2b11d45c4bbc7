"""The segment tables (Alembic branch ``crmkit_segments``, scripts in ``migrations/``; a test
compares the two on every backend).

``segment_members.contact_id`` deliberately has no foreign key to ``contacts``: a merge moves
every row that references a contact onto the survivor, which would collide with the survivor's
own membership row. Membership is derived data: the segment subscriber drops a merged or
deleted contact's rows when the event arrives, and a rebuild drops any left behind.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from crmkit.storage.sql.tables import ID
from crmkit.storage.sql.types import UTCDateTime, json_type

BRANCH = "crmkit_segments"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SEGMENTS = "segments"
MEMBERS = "segment_members"


def define_tables(metadata: sa.MetaData) -> list[sa.Table]:
    segments = sa.Table(
        SEGMENTS, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("conditions", json_type(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("rebuilt_at", UTCDateTime()),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    members = sa.Table(
        MEMBERS, metadata,
        sa.Column("segment_id", ID, sa.ForeignKey(f"{SEGMENTS}.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("contact_id", ID, primary_key=True),
        sa.Column("entered_at", UTCDateTime(), nullable=False),
        sa.Index("ix_segment_members_contact_id", "contact_id"),
    )
    return [segments, members]
