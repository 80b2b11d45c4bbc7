"""A database migrated with a plugin that has its own migration branch stays usable when the
plugin is disabled, and upgrades without it; re-enabling finds everything as it was left."""

import sqlalchemy as sa

import crmkit


def _versions(crm):
    with crm.backend.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(sa.text("SELECT version_num FROM alembic_version")))


def test_disabling_a_plugin_with_a_migration_branch_keeps_the_database_usable(database_url, monkeypatch):
    with crmkit.open(database_url, migrate=True) as crm:
        before = _versions(crm)
        audit_heads = [rev for rev in crm.backend.heads() if rev.startswith("au")]
        assert audit_heads, "the audit plugin has its own branch"

    monkeypatch.setenv("CRMKIT_DISABLE_PLUGINS", "audit")
    with crmkit.open(database_url) as crm:  # no "not migrated" refusal
        crm.contacts.create({"email": "ada@example.com"})
    with crmkit.open(database_url, migrate=True) as crm:  # upgrade without the plugin works
        assert _versions(crm) == before  # ... and keeps the plugin's revision recorded

    monkeypatch.delenv("CRMKIT_DISABLE_PLUGINS")
    with crmkit.open(database_url) as crm:
        assert crm.contacts.count() == 1
        assert _versions(crm) == before
