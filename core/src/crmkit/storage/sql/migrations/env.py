"""Alembic environment for crmkit.

crmkit drives Alembic programmatically (``SQLBackend.upgrade``): the connection and the
metadata (core + plugin tables) arrive through ``config.attributes``; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context

config = context.config
metadata = config.attributes["metadata"]
unmigrated = config.attributes.get("unmigrated_tables", set())


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # Plugin tables without migrations are created from their models, not compared here;
    # foreign tables in a shared database are none of crmkit's business.
    table_name = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    if table_name in unmigrated:
        return False
    if type_ == "table" and reflected and compare_to is None:
        return False
    return True


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("crmkit migrations run online only (crmkit db upgrade)")
run_migrations_online()
