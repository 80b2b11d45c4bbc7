"""The SQL storage backend: SQLite (embedded default), PostgreSQL (psycopg 3), MariaDB/MySQL
(PyMySQL), all through SQLAlchemy 2 Core, with Alembic migrations."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from crmkit.errors import ConfigError, CRMError
from crmkit.storage.uow import UnitOfWork

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
CORE_BRANCH = "crmkit_core"

#: Driver chosen when a URL names only the database (``postgresql://`` would otherwise mean
#: psycopg2, which crmkit does not install).
DEFAULT_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}


def normalize_url(url: str) -> sa.URL:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"database URL {url!r} is not valid: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif "+" not in parsed.drivername and backend in DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{DEFAULT_DRIVERS[backend]}")
    if backend in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _sqlite_setup(engine: sa.Engine) -> None:
    """WAL, foreign keys, a busy timeout, and transactions that take the write lock at BEGIN.

    pysqlite's own transaction handling begins lazily and a read-then-write transaction can
    fail with "database is locked" without waiting; issuing ``BEGIN IMMEDIATE`` for units of
    work makes concurrent writers queue on the busy timeout instead.
    """

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("crmkit_write") else "BEGIN")


class SQLBackend:
    """Implements :class:`crmkit.storage.StorageBackend` for SQLAlchemy-supported databases."""

    def __init__(
        self,
        url: str,
        *,
        metadata: sa.MetaData,
        migrations: dict[str, str] | None = None,
        unmigrated_tables: Iterable[str] = (),
        event_types: Callable[[str], None] | None = None,
        engine_options: dict[str, Any] | None = None,
    ):
        self.url = normalize_url(url)
        self.metadata = metadata
        self.migrations = {CORE_BRANCH: str(MIGRATIONS_DIR / "versions"), **(migrations or {})}
        self.unmigrated_tables = list(unmigrated_tables)
        self._check_event_type = event_types
        options = dict(engine_options or {})
        if self.url.get_backend_name() == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            options.setdefault("pool_pre_ping", True)
        try:
            self.engine = sa.create_engine(self.url, **options)
        except ImportError as exc:
            raise ConfigError(f"the database driver for {self.url.drivername} is not installed: {exc}") from None
        if self.url.get_backend_name() == "sqlite":
            _sqlite_setup(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def check_event_type(self, event_type: str) -> None:
        if self._check_event_type is not None:
            self._check_event_type(event_type)

    def unit_of_work(self, after_commit: Callable[..., None] | None = None, actor: str | None = None, *, readonly: bool = False,
                     before_commit: Callable[..., None] | None = None) -> UnitOfWork:
        return UnitOfWork(self, after_commit=after_commit, actor=actor, readonly=readonly, before_commit=before_commit)

    def connect(self) -> sa.Connection:
        """A connection for reads (and for code that manages its own transaction)."""
        return self.engine.connect()

    # --- migrations -------------------------------------------------------------------

    def alembic_config(self, connection: sa.Connection | None = None) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", os.pathsep.join(self.migrations.values()))
        cfg.attributes["metadata"] = self.metadata
        cfg.attributes["connection"] = connection
        cfg.attributes["unmigrated_tables"] = set(self.unmigrated_tables)
        return cfg

    def upgrade(self, target: str = "heads") -> list[str]:
        """Apply every branch's migrations, then create plugin tables that have none."""
        from alembic import command

        scripts = self.scripts()
        with self.engine.begin() as connection:
            self._require_utf8mb4(connection)
            # Revisions of branches whose plugin is not loaded now (disabled or uninstalled) are
            # unknown to Alembic, which would refuse to run at all; set them aside for the
            # upgrade and put them back, so re-enabling the plugin finds its tables as it left them.
            foreign = self._foreign_revisions(connection, scripts)
            version_table = sa.table("alembic_version", sa.column("version_num"))
            if foreign:
                connection.execute(sa.delete(version_table).where(version_table.c.version_num.in_(foreign)))
            command.upgrade(self.alembic_config(connection), target)
            if foreign:
                connection.execute(sa.insert(version_table), [{"version_num": rev} for rev in foreign])
            if self.unmigrated_tables:
                tables = [self.metadata.tables[name] for name in self.unmigrated_tables]
                self.metadata.create_all(connection, tables=tables, checkfirst=True)
        return self.current()

    def _require_utf8mb4(self, connection: sa.Connection) -> None:
        """MySQL/MariaDB tables take the database's default character set; anything but
        utf8mb4 would refuse Persian names or emoji at the first insert, far from the cause."""
        if self.dialect not in ("mysql", "mariadb"):
            return
        charset = connection.exec_driver_sql("SELECT @@character_set_database").scalar()
        if charset != "utf8mb4":
            name = self.url.database
            raise CRMError(
                f"the database {name!r} uses the character set {charset}; crmkit needs utf8mb4 to store text in "
                f"every script and emoji. Run: ALTER DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; "
                "then `crmkit db upgrade` again"
            )

    def current(self) -> list[str]:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return sorted(MigrationContext.configure(connection).get_current_heads())

    @staticmethod
    def _foreign_revisions(connection: sa.Connection, scripts: Any) -> list[str]:
        """Revisions recorded in the database that no loaded branch knows."""
        from alembic.runtime.migration import MigrationContext

        known = {script.revision for script in scripts.walk_revisions()}
        return sorted(set(MigrationContext.configure(connection).get_current_heads()) - known)

    def heads(self) -> list[str]:
        return sorted(self.scripts().get_heads())

    def scripts(self) -> Any:
        """The migration scripts of every branch, checked to form one valid history: a plugin's
        bad ``down_revision``/``depends_on`` is reported with the branches, not as a bare
        ``KeyError`` from deep inside Alembic."""
        from alembic.script import ScriptDirectory
        from alembic.script.revision import RevisionError
        from alembic.util import CommandError

        scripts = ScriptDirectory.from_config(self.alembic_config())
        try:
            scripts.get_heads()  # builds the revision graph, where broken references surface
        except (KeyError, RevisionError, CommandError) as exc:
            branches = ", ".join(f"{label} ({path})" for label, path in self.migrations.items())
            raise CRMError(
                f"the migration scripts do not form a valid history: {type(exc).__name__}: {exc} "
                f"(branches: {branches}); down_revision and depends_on must name a revision id or a "
                f"branch label such as {CORE_BRANCH!r}"
            ) from None
        return scripts

    def require_current(self) -> None:
        """Refuse to run against a database whose schema is behind the code.

        Revisions of plugins that are not loaded now (disabled) are not the code's concern."""
        scripts = self.scripts()
        with self.engine.connect() as connection:
            foreign = set(self._foreign_revisions(connection, scripts))
        current, heads = set(self.current()) - foreign, set(scripts.get_heads())
        where = self.url.render_as_string(hide_password=True)
        if current != heads:
            raise CRMError(
                f"the database at {where} is not migrated "
                f"(at {sorted(current) or 'nothing'}, code wants {sorted(heads)}); run `crmkit db upgrade`"
            )
        # Plugin tables without migrations are only created by an upgrade: a plugin installed
        # since the last one would otherwise fail later, on its first query.
        missing = sorted(set(self.unmigrated_tables) - set(sa.inspect(self.engine).get_table_names())) if self.unmigrated_tables else []
        if missing:
            raise CRMError(f"the database at {where} lacks plugin table(s) {', '.join(missing)}; run `crmkit db upgrade`")

    def dispose(self) -> None:
        self.engine.dispose()
