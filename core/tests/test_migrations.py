"""Migrations on SQLite, PostgreSQL and MariaDB: an empty database reaches the heads, the
models and the migrations agree, plugins bring their own branch (or get their tables created),
and an un-migrated database is refused."""

from __future__ import annotations

import textwrap
from pathlib import Path

import crmkit
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from crmkit.errors import CRMError
from crmkit.plugins import hookimpl
from crmkit.storage.sql.tables import CORE_TABLES
from crmkit.storage.sql.types import UTCDateTime

LOYALTY_MIGRATION = '''
"""loyalty points (a plugin's own migration branch)"""

import sqlalchemy as sa
from alembic import op

import crmkit.storage.sql.types

revision = "loyalty0001"
down_revision = None
branch_labels = ("loyalty",)
depends_on = "crmkit_core"  # the table references contacts, created by the core's first revision


def upgrade():
    op.create_table(
        "loyalty_points",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.String(length=32), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("earned_at", crmkit.storage.sql.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name="fk_loyalty_points_contact_id_contacts", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_loyalty_points"),
    )
    op.create_index("ix_loyalty_points_contact_id", "loyalty_points", ["contact_id"])


def downgrade():
    op.drop_index("ix_loyalty_points_contact_id", table_name="loyalty_points")
    op.drop_table("loyalty_points")
'''


class LoyaltyPlugin:
    """A plugin that ships a table *and* an Alembic branch for it."""

    crmkit_plugin_name = "loyalty"

    def __init__(self, versions: Path):
        self.versions = versions

    @hookimpl
    def crmkit_register_tables(self, metadata, register):
        register(sa.Table(
            "loyalty_points", metadata,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True),
            sa.Column("points", sa.Integer, nullable=False),
            sa.Column("earned_at", UTCDateTime(), nullable=False),
        ))

    @hookimpl
    def crmkit_register_migrations(self, register):
        register("loyalty", str(self.versions))


class NotesPlugin:
    """A plugin with a table and no migrations: ``upgrade`` creates the table from its model."""

    crmkit_plugin_name = "sticky-notes"

    @hookimpl
    def crmkit_register_tables(self, metadata, register):
        register(sa.Table(
            "sticky_notes", metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("contact_id", sa.String(32), sa.ForeignKey("contacts.id", ondelete="CASCADE")),
            sa.Column("text", sa.Text, nullable=False),
        ))


@pytest.fixture
def loyalty(tmp_path: Path) -> LoyaltyPlugin:
    versions = tmp_path / "loyalty_versions"
    versions.mkdir()
    (versions / "loyalty0001_points.py").write_text(textwrap.dedent(LOYALTY_MIGRATION), encoding="utf-8")
    return LoyaltyPlugin(versions)


def schema_differences(crm) -> list:
    """What Alembic's autogenerate would change to make the database match the models."""
    unmigrated = set(crm.backend.unmigrated_tables)

    def include(obj, name, type_, reflected, compare_to):
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        return table not in unmigrated

    with crm.backend.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include})
        return compare_metadata(context, crm.backend.metadata)


def table_names(crm) -> set[str]:
    return set(sa.inspect(crm.backend.engine).get_table_names())


def test_empty_database_is_refused_then_migrated_to_heads_matching_the_models(database_url, crm_factory):
    with pytest.raises(CRMError, match="is not migrated .*run `crmkit db upgrade`"):
        crmkit.open(database_url)

    crm = crm_factory(database_url)
    assert crm.backend.current() == crm.backend.heads() != []
    assert set(CORE_TABLES) <= table_names(crm)
    assert schema_differences(crm) == []

    # Reopening needs no migration, and migrating again is a no-op.
    crm_factory(database_url, migrate=False)
    assert crm.backend.upgrade() == crm.backend.heads()


def test_plugin_branch_and_unmigrated_tables_are_created(database_url, crm_factory, loyalty):
    crm = crm_factory(database_url, plugins=[loyalty, NotesPlugin()])

    heads = crm.backend.current()
    assert "loyalty0001" in heads
    assert len(heads) == len(crm.backend.migrations), heads  # one head per branch: the core's, the built-in plugins' and this one's
    assert heads == crm.backend.heads()
    assert {"loyalty_points", "sticky_notes"} <= table_names(crm)
    assert crm.backend.unmigrated_tables == ["sticky_notes"]
    assert schema_differences(crm) == []  # the plugin's migration matches its model too

    contact = crm.contacts.create({"first_name": "Ada"})
    with crm.uow() as uow:
        uow.connection.execute(sa.insert(uow.table("loyalty_points")), [{"id": "p1", "contact_id": contact.id, "points": 5, "earned_at": contact.created_at}])
        uow.connection.execute(sa.insert(uow.table("sticky_notes")), [{"contact_id": contact.id, "text": "نکته 📝"}])
    crm.contacts.delete(contact.id)
    with crm.read() as uow:
        for name in ("loyalty_points", "sticky_notes"):
            assert uow.connection.execute(sa.select(sa.func.count()).select_from(uow.table(name))).scalar_one() == 0

    # Another process with the same plugins opens it without migrating.
    crm_factory(database_url, plugins=[loyalty, NotesPlugin()], migrate=False)


def test_a_broken_plugin_history_is_reported_with_its_branch(crm_factory, loyalty):
    script = loyalty.versions / "loyalty0001_points.py"
    script.write_text(script.read_text().replace('depends_on = "crmkit_core"', 'depends_on = "crmkit_core@head"'))
    with pytest.raises(CRMError, match=r"do not form a valid history.*'crmkit_core@head'.*loyalty \("):
        crm_factory(plugins=[loyalty])


def test_a_new_plugin_is_refused_until_the_database_is_upgraded(crm_factory, tmp_path, loyalty):
    url = f"sqlite:///{tmp_path / 'grow.db'}"
    crm_factory(url)

    with pytest.raises(CRMError, match="loyalty0001.*run `crmkit db upgrade`"):
        crmkit.open(url, plugins=[loyalty])
    with pytest.raises(CRMError, match="sticky_notes.*run `crmkit db upgrade`"):
        crmkit.open(url, plugins=[NotesPlugin()])

    crm = crm_factory(url, plugins=[loyalty, NotesPlugin()])
    assert {"loyalty_points", "sticky_notes"} <= table_names(crm)
    crm_factory(url, plugins=[loyalty, NotesPlugin()], migrate=False)


def test_a_partially_migrated_database_is_refused_then_upgraded(crm_factory, tmp_path):
    from crmkit.storage.sql.backend import SQLBackend
    from crmkit.storage.sql.tables import core_metadata

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = SQLBackend(url, metadata=core_metadata())
    assert old.upgrade("c0001") == ["c0001"]
    old.dispose()

    with pytest.raises(CRMError, match=r"at \['c0001'\], code wants .*run `crmkit db upgrade`"):
        crmkit.open(url)
    crm = crm_factory(url)
    assert crm.backend.current() == crm.backend.heads()
    assert schema_differences(crm) == []


def test_mariadb_refuses_a_database_that_cannot_store_every_script(crm_factory):
    """A MariaDB database whose default character set is not utf8mb4 would accept the schema
    and then fail on the first Persian name or emoji; upgrade says so up front."""
    from crmkit.testing import create_server_database

    url, drop = create_server_database("mariadb")
    try:
        admin = sa.create_engine(url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE `{admin.url.database}` CHARACTER SET latin1 COLLATE latin1_swedish_ci")
        admin.dispose()
        with pytest.raises(CRMError, match="uses the character set latin1; crmkit needs utf8mb4.*ALTER DATABASE"):
            crmkit.open(url, migrate=True)
    finally:
        drop()
