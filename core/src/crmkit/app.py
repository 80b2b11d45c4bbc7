"""The composition root: :func:`open` wires configuration, plugins, storage and services into
a :class:`CRM`. Nothing here holds business rules; services and the domain do."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from crmkit.config import Config, build_settings, load_config
from crmkit.errors import ConfigError, CRMError, PluginError
from crmkit.plugins import Plugins, Registry, make_plugin_manager
from crmkit.storage.sql.tables import core_metadata
from crmkit.storage.uow import UnitOfWork


class CRM:
    """One CRM: its configuration, plugin manager, storage backend and services.

    Build it with :func:`crmkit.open`. Services (``crm.contacts``, ``crm.deals`` …) are what the
    CLI and the HTTP API call; use them from Python the same way.
    """

    def __init__(self, config: Config, plugins: Plugins, *, migrate: bool = False, dispatch_inline: bool = True,
                 check_schema: bool = True):
        from crmkit.channels.dispatch import MessageService
        from crmkit.dedupe.scan import DuplicateScanner
        from crmkit.events import Dispatcher
        from crmkit.intake import Intake
        from crmkit.metrics import metrics
        from crmkit.privacy import Privacy
        from crmkit.merge.service import MergeService
        from crmkit.services.engagement import ActivityService, ConsentService, CustomFieldService, TaskService
        from crmkit.services.records import CampaignService, ContactService, OrganizationService, TeamService, UserService
        from crmkit.services.sales import DealService, PipelineService

        self.config = config
        self.plugins = plugins
        self.dispatch_inline = dispatch_inline
        self.settings = self._load_settings()
        self.event_types: Registry[str] = plugins.collect("crmkit_register_event_types", Registry("event type"))
        self.backend = self._open_storage()
        try:
            if migrate:
                self.backend.upgrade()
            elif check_schema:
                self.backend.require_current()

            self.contacts = ContactService(self)
            self.organizations = OrganizationService(self)
            self.pipelines = PipelineService(self)
            self.deals = DealService(self)
            self.activities = ActivityService(self)
            self.tasks = TaskService(self)
            self.campaigns = CampaignService(self)
            self.consents = ConsentService(self)
            self.users = UserService(self)
            self.teams = TeamService(self)
            self.custom_fields = CustomFieldService(self)
            self.intake = Intake(self)
            self.events = Dispatcher(self)
            self.privacy = Privacy(self)
            self.metrics = metrics(self)
            self.merges = MergeService(self)
            self.dedupe = DuplicateScanner(self)
            self.messages = MessageService(self)
            plugins.call("crmkit_startup", crm=self)
        except BaseException:
            self.backend.dispose()  # a failed open must not leave its connection pool behind
            raise

    # --- wiring -------------------------------------------------------------------------

    def _load_settings(self) -> dict[str, Any]:
        declared: Registry[type] = self.plugins.collect("crmkit_register_settings", Registry("settings section"))
        unknown = set(self.config.plugin_sections) - set(declared)
        if unknown:
            known = ", ".join(sorted(declared)) or "none"
            raise ConfigError(f"{self.config.path or 'configuration'}: no plugin declares [plugins.{sorted(unknown)[0]}] (declared: {known})")
        return {
            section: build_settings(section, cls, self.config.plugin_sections.get(section, {}), str(self.config.path or "configuration"))
            for section, cls in declared.items()
        }

    def _open_storage(self) -> Any:
        from crmkit.storage.sql.backend import normalize_url

        backends: Registry[Any] = self.plugins.collect("crmkit_register_storage_backends", Registry("storage backend"))
        scheme = normalize_url(self.config.database_url).get_backend_name()
        if scheme not in backends:
            raise ConfigError(f"no storage backend for {scheme!r} URLs (installed: {', '.join(sorted(backends)) or 'none'})")
        metadata = core_metadata()
        tables = self._collect_tables(metadata)
        migrations: Registry[str] = self.plugins.collect("crmkit_register_migrations", Registry("migration branch"))
        migrated_owners = {migrations.owners[label] for label in migrations}
        unmigrated = [name for name, owner in tables.owners.items() if owner not in migrated_owners]
        return backends[scheme](
            self.config.database_url,
            metadata=metadata,
            migrations=dict(migrations.items()),
            unmigrated_tables=unmigrated,
            event_types=self._check_event_type,
        )

    def _collect_tables(self, metadata: sa.MetaData) -> Registry[sa.Table]:
        core_tables = set(metadata.tables)
        tables: Registry[sa.Table] = Registry("table", key=lambda t: t.name)
        try:
            return self.plugins.collect("crmkit_register_tables", tables, metadata=metadata)
        except PluginError as exc:
            # SQLAlchemy refuses a second table of the same name before the plugin reaches
            # register(), so the registry never sees the clash: name the first owner here.
            cause = exc.__cause__
            clash = next((name for name in metadata.tables if f"'{name}'" in str(cause)), None)
            if not isinstance(cause, sa.exc.InvalidRequestError) or clash is None:
                raise
            owner = "the crmkit core" if clash in core_tables else f"plugin {tables.owners[clash]!r}" if clash in tables else "another plugin"
            raise PluginError(exc.plugin, f"table {clash!r} is already defined by {owner}") from cause

    def _check_event_type(self, event_type: str) -> None:
        if event_type not in self.event_types:
            raise CRMError(f"event type {event_type!r} is not registered (crmkit_register_event_types)")

    # --- units of work ------------------------------------------------------------------

    def uow(self, actor: str | None = None) -> UnitOfWork:
        """A unit of work: one transaction whose events are dispatched after it commits."""
        after = self.events.dispatch if self.dispatch_inline else None
        return self.backend.unit_of_work(after_commit=after, actor=actor, before_commit=self._before_commit)

    def _before_commit(self, uow: UnitOfWork, events: list[Any]) -> None:
        self.plugins.call("crmkit_before_commit", uow=uow, events=events, crm=self)

    def read(self) -> UnitOfWork:
        """A read-only view (its transaction is rolled back on exit)."""
        return self.backend.unit_of_work(readonly=True)

    def settings_for(self, section: str) -> Any:
        """The validated settings instance a plugin declared with ``crmkit_register_settings``."""
        try:
            return self.settings[section]
        except KeyError:
            raise ConfigError(f"no plugin declared settings section {section!r}") from None

    def close(self) -> None:
        self.backend.dispose()

    def __enter__(self) -> CRM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CRM {self.backend.url.render_as_string(hide_password=True)}>"


def open(  # noqa: A001 - ``crmkit.open`` reads naturally, like ``sqlite3.connect``
    config_or_url: Config | str | os.PathLike[str] | None = None,
    *,
    plugins: Iterable[object] = (),
    migrate: bool = False,
    dispatch_inline: bool = True,
    load_entry_points: bool = True,
    check_schema: bool = True,
) -> CRM:
    """Open a CRM.

    :param config_or_url: a :class:`~crmkit.config.Config`, a database URL
        (``sqlite:///crm.db``, ``postgresql://…``), a path to a ``crmkit.toml``, or None for
        ``CRMKIT_CONFIG`` / ``./crmkit.toml`` / defaults.
    :param plugins: extra plugin objects to register (besides built-ins and entry points).
    :param migrate: apply pending migrations first (otherwise an out-of-date schema is an error).
    :param dispatch_inline: hand events to subscribers right after each commit; with False
        they wait in the outbox for ``crm.events.drain()`` or a worker.
    :param check_schema: refuse a database whose schema is behind the code (only inspection
        such as ``crmkit db current`` turns this off).
    """
    if isinstance(config_or_url, Config):
        config = config_or_url
    elif isinstance(config_or_url, str) and "://" in config_or_url:
        config = load_config(database_url=config_or_url)
    else:
        config = load_config(config_or_url)
    manager = make_plugin_manager(
        enabled=config.enabled_plugins,
        disabled=config.disabled_plugins,
        extra_plugins=plugins,
        load_entry_points=load_entry_points,
    )
    return CRM(config, manager, migrate=migrate, dispatch_inline=dispatch_inline, check_schema=check_schema)
