"""The core schema as SQLAlchemy Core tables.

:func:`core_metadata` builds a fresh :class:`~sqlalchemy.MetaData` per call (no module-level
schema state), so each CRM can add its plugins' tables to its own copy.
Alembic migrations under ``migrations/versions`` must agree with this module; a test checks it.
"""

from __future__ import annotations

import sqlalchemy as sa

from crmkit.storage.sql.types import Money, UTCDateTime, json_type

ID = sa.String(32)
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _id() -> sa.Column:
    return sa.Column("id", ID, primary_key=True)


def _fk(name: str, target: str, *, nullable: bool = True, ondelete: str | None = "SET NULL", index: bool = True) -> sa.Column:
    return sa.Column(name, ID, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index)


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    ]


def _address(prefix: str = "address_") -> list[sa.Column]:
    return [
        sa.Column(f"{prefix}street", sa.String(255)),
        sa.Column(f"{prefix}city", sa.String(120)),
        sa.Column(f"{prefix}region", sa.String(120)),
        sa.Column(f"{prefix}postcode", sa.String(32)),
        sa.Column(f"{prefix}country", sa.String(2)),
    ]


def core_metadata() -> sa.MetaData:
    md = sa.MetaData(naming_convention=NAMING)

    sa.Table(
        "teams", md, _id(),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    sa.Table(
        "users", md, _id(),
        sa.Column("email", sa.String(255), nullable=False, unique=True),
        sa.Column("name", sa.String(255)),
        sa.Column("role", sa.String(32), nullable=False),
        _fk("team_id", "teams.id"),
        sa.Column("active", sa.Boolean, nullable=False, default=True),
        *_stamps(),
    )
    sa.Table(
        "organizations", md, _id(),
        sa.Column("name", sa.String(255), nullable=False, index=True),
        sa.Column("domain", sa.String(255), index=True),
        sa.Column("industry", sa.String(120)),
        sa.Column("size", sa.String(32)),
        sa.Column("phone", sa.String(32)),
        *_address(),
        _fk("owner_id", "users.id"),
        sa.Column("tags", json_type(), nullable=False),
        sa.Column("custom", json_type(), nullable=False),
        *_stamps(),
        # A team-scoped API key lists one range per owner (see crmkit.api.visibility).
        sa.Index("ix_organizations_owner_id_created_at_id", "owner_id", "created_at", "id"),
    )
    sa.Table(
        "campaigns", md, _id(),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("channel", sa.String(64), index=True),
        sa.Column("spend", Money(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("starts_on", sa.Date),
        sa.Column("ends_on", sa.Date),
        *_stamps(),
    )
    sa.Table(
        "contacts", md, _id(),
        sa.Column("first_name", sa.String(120)),
        sa.Column("last_name", sa.String(120)),
        sa.Column("email", sa.String(255), index=True),
        sa.Column("phone", sa.String(32), index=True),
        *_address(),
        sa.Column("birth_date", sa.Date),
        sa.Column("account_number", sa.String(64), index=True),
        sa.Column("job_title", sa.String(120)),
        sa.Column("industry", sa.String(120)),
        sa.Column("location", sa.String(255)),
        sa.Column("lifecycle_stage", sa.String(32), nullable=False, index=True),
        _fk("owner_id", "users.id"),
        _fk("organization_id", "organizations.id"),
        sa.Column("source_channel", sa.String(64)),
        sa.Column("source_campaign_id", ID, sa.ForeignKey("campaigns.id", ondelete="SET NULL")),
        sa.Column("source_utm_source", sa.String(255)),
        sa.Column("source_utm_medium", sa.String(255)),
        sa.Column("source_utm_campaign", sa.String(255)),
        sa.Column("source_utm_term", sa.String(255)),
        sa.Column("source_utm_content", sa.String(255)),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("tags", json_type(), nullable=False),
        sa.Column("custom", json_type(), nullable=False),
        *_stamps(),
        sa.Index("ix_contacts_created_at_id", "created_at", "id"),
        sa.Index("ix_contacts_owner_id_created_at_id", "owner_id", "created_at", "id"),
        sa.Index("ix_contacts_last_name_first_name", "last_name", "first_name"),
    )
    sa.Table(
        "pipelines", md, _id(),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    sa.Table(
        "stages", md, _id(),
        _fk("pipeline_id", "pipelines.id", nullable=False, ondelete="CASCADE"),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.UniqueConstraint("pipeline_id", "name"),
        sa.CheckConstraint("probability >= 0 AND probability <= 1", name="probability_range"),
    )
    sa.Table(
        "deals", md, _id(),
        sa.Column("title", sa.String(255), nullable=False),
        _fk("pipeline_id", "pipelines.id", nullable=False, ondelete="RESTRICT"),
        _fk("stage_id", "stages.id", nullable=False, ondelete="RESTRICT"),
        _fk("contact_id", "contacts.id"),
        _fk("organization_id", "organizations.id"),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("expected_close", sa.Date, index=True),
        _fk("owner_id", "users.id"),
        sa.Column("status", sa.String(8), nullable=False, index=True),
        sa.Column("lost_reason", sa.String(500)),
        sa.Column("closed_at", UTCDateTime()),
        sa.Column("custom", json_type(), nullable=False),
        *_stamps(),
        sa.Index("ix_deals_created_at_id", "created_at", "id"),
        sa.Index("ix_deals_owner_id_created_at_id", "owner_id", "created_at", "id"),
    )
    sa.Table(
        "stage_changes", md, _id(),
        _fk("deal_id", "deals.id", nullable=False, ondelete="CASCADE", index=False),
        _fk("from_stage_id", "stages.id", ondelete="RESTRICT", index=False),
        _fk("to_stage_id", "stages.id", nullable=False, ondelete="RESTRICT"),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        _fk("changed_by", "users.id", index=False),
        sa.Index("ix_stage_changes_deal_id_changed_at", "deal_id", "changed_at"),
    )
    sa.Table(
        "activities", md, _id(),
        sa.Column("kind", sa.String(64), nullable=False, index=True),
        _fk("contact_id", "contacts.id", ondelete="CASCADE", index=False),
        _fk("deal_id", "deals.id"),
        _fk("organization_id", "organizations.id"),
        sa.Column("channel", sa.String(64)),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(500)),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("payload", json_type(), nullable=False),
        sa.Column("external_id", sa.String(255)),
        _fk("created_by", "users.id", index=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Index("ix_activities_contact_id_occurred_at", "contact_id", "occurred_at"),
        # Idempotency: the same provider message/event id is logged once per channel.
        sa.UniqueConstraint("channel", "external_id"),
    )
    sa.Table(
        "tasks", md, _id(),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("notes", sa.Text),
        sa.Column("due_at", UTCDateTime(), index=True),
        sa.Column("done_at", UTCDateTime()),
        _fk("assignee_id", "users.id"),
        _fk("contact_id", "contacts.id", ondelete="CASCADE"),
        _fk("deal_id", "deals.id", ondelete="CASCADE"),
        *_stamps(),
    )
    sa.Table(
        "consents", md, _id(),
        _fk("contact_id", "contacts.id", nullable=False, ondelete="CASCADE", index=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(255)),
        sa.Column("evidence", json_type(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Index("ix_consents_contact_channel_purpose", "contact_id", "channel", "purpose", "recorded_at"),
    )
    sa.Table(
        "custom_field_definitions", md, _id(),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("label", sa.String(255)),
        sa.Column("required", sa.Boolean, nullable=False),
        sa.Column("choices", json_type(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("entity", "name"),
    )
    sa.Table(
        "external_ids", md,
        # A contact's identifiers in other systems (a shop's customer number, an import's row
        # key): matching on them makes re-imports and webhook redeliveries idempotent.
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
        _fk("contact_id", "contacts.id", nullable=False, ondelete="CASCADE"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    sa.Table(
        "merges", md, _id(),
        # The audit log of contact merges, and what undoing one needs. No foreign keys: the
        # duplicate row is gone after a merge, and the record must outlive both contacts.
        sa.Column("survivor_id", ID, nullable=False, index=True),
        sa.Column("duplicate_id", ID, nullable=False, index=True),
        sa.Column("rules", json_type(), nullable=False),
        sa.Column("snapshot", json_type(), nullable=False),
        sa.Column("consent_conflicts", json_type(), nullable=False),
        sa.Column("actor", sa.String(64)),
        sa.Column("merged_at", UTCDateTime(), nullable=False),
        sa.Column("undone_at", UTCDateTime()),
        sa.Column("undone_by", sa.String(64)),
    )
    sa.Table(
        "api_keys", md, _id(),
        # Credentials of the HTTP API. Only a SHA-256 of the secret is kept (the key is shown
        # once); the id is part of the key, so lookup is by primary key, never by hash.
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("scopes", json_type(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        _fk("user_id", "users.id"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
    )
    sa.Table(
        "idempotency_keys", md,
        # The first response to a POST sent with an Idempotency-Key, replayed for retries. The
        # key is stored hashed (with the API key it belongs to), next to a hash of the request.
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("api_key_id", ID, nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("response", json_type()),
        sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
    )
    sa.Table(
        "outbox_events", md,
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("id", ID, nullable=False, unique=True),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("subject_id", ID),
        sa.Column("data", json_type(), nullable=False),
        sa.Column("actor", sa.String(64)),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("dispatched_at", UTCDateTime()),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Index("ix_outbox_events_pending", "dispatched_at", "next_attempt_at"),
    )
    sa.Table(
        "event_deliveries", md,
        sa.Column("event_id", ID, sa.ForeignKey("outbox_events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("subscriber", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    return md


CORE_TABLES = (
    "teams", "users", "organizations", "campaigns", "contacts", "pipelines", "stages", "deals",
    "stage_changes", "activities", "tasks", "consents", "custom_field_definitions",
    "external_ids", "merges", "api_keys", "idempotency_keys", "outbox_events", "event_deliveries",
)
