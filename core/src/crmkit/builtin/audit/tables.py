"""The audit log's table. The migration in ``migrations/versions`` must agree with it (a test
compares them on every backend)."""

from __future__ import annotations

import sqlalchemy as sa

from crmkit.storage.sql.tables import ID
from crmkit.storage.sql.types import UTCDateTime, json_type

TABLE = "audit_log"


def audit_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        TABLE, metadata,
        # seq orders entries exactly as they were committed, even within one microsecond.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", ID, nullable=False, unique=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("actor", sa.String(64), index=True),
        sa.Column("type", sa.String(128), nullable=False, index=True),
        sa.Column("subject_id", ID, index=True),
        # The person the change is about (the subject, or the contact a deal/activity names),
        # so an erasure or an export finds every entry that concerns them.
        sa.Column("contact_id", ID, index=True),
        sa.Column("changes", json_type(), nullable=False),
    )
