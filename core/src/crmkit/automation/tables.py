"""Automation's tables (Alembic branch ``crmkit_automation``, in ``migrations/versions``; a test
compares the two on every backend)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from crmkit.storage.sql.tables import ID
from crmkit.storage.sql.types import UTCDateTime, json_type

BRANCH = "crmkit_automation"
VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
RULES = "automation_rules"
RUNS = "automation_runs"


def define_tables(metadata: sa.MetaData) -> list[sa.Table]:
    rules = sa.Table(
        RULES, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("trigger", sa.String(64), nullable=False),
        sa.Column("trigger_params", json_type(), nullable=False),
        sa.Column("conditions", json_type()),
        sa.Column("actions", json_type(), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    runs = sa.Table(
        RUNS, metadata,
        sa.Column("id", ID, primary_key=True),
        sa.Column("rule_id", ID, sa.ForeignKey(f"{RULES}.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rule_name", sa.String(120), nullable=False),
        # An outbox event's id, or a scheduled trigger's key for one occurrence.
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(128), nullable=False),
        # The person the run concerns: merges move it, erasure deletes the run.
        sa.Column("contact_id", ID, sa.ForeignKey("contacts.id", ondelete="SET NULL"), index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),  # actions done so far
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("results", json_type(), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        # Once per rule and event, however often the event is delivered.
        sa.UniqueConstraint("rule_id", "event_id"),
    )
    return [rules, runs]
