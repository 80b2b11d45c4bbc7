"""Every hook crmkit offers to plugins.

A plugin is a module or object with functions decorated by :data:`crmkit.hookimpl` whose names
match the specifications below. Built-in features are plugins registered exactly like a third
party's (see :data:`crmkit.plugins.BUILTIN_PLUGINS`). Implementations may accept any subset of
the documented parameters, by name.

Registration hooks receive a ``register`` callable bound to the calling plugin, so crmkit knows
who registered what and refuses two plugins registering the same name.

The hook reference in ``docs/hooks.md`` is checked against this module by the test suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from datetime import datetime

    import sqlalchemy as sa

    from crmkit.app import CRM
    from crmkit.channels.protocol import Channel, OutboundMessage
    from crmkit.domain import Contact, Event
    from crmkit.errors import FieldIssue
    from crmkit.intake import IntakeRecord
    from crmkit.storage.uow import UnitOfWork

PROJECT = "crmkit"
hookspec = pluggy.HookspecMarker(PROJECT)


# --- registration -------------------------------------------------------------------------


@hookspec
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    """Declare the settings section a plugin reads from ``crmkit.toml``.

    Called once per CRM while :func:`crmkit.open` builds it, before storage is opened, so a
    bad setting fails the open instead of the first request that reads it.

    :param register: ``register(section, settings_class)``. ``settings_class`` is an attrs
        class whose fields (with defaults) describe ``[plugins.<section>]``; crmkit validates
        the section against it and hands the instance back through
        ``crm.settings_for(section)``. Unknown keys and wrong types are configuration errors
        naming the file, section and key.
    :return: None; the return value is ignored.
    """


@hookspec
def crmkit_register_tables(metadata: sa.MetaData, register: Callable[[sa.Table], None]) -> None:
    """Add a plugin's tables to the schema.

    Called once per CRM when its storage is set up.

    :param metadata: the :class:`sqlalchemy.MetaData` that holds the core tables; define
        tables on it so foreign keys to core tables (``contacts.id`` …) resolve.
    :param register: ``register(table)`` records the table as the plugin's. Tables of plugins
        that declare no migrations (see :func:`crmkit_register_migrations`) are created by
        ``crmkit db upgrade`` from their definition, and a CRM refuses to open on a database
        that lacks them; plugins that evolve their schema should ship Alembic migrations
        instead.
    :return: None.
    """


@hookspec
def crmkit_register_migrations(register: Callable[[str, str], None]) -> None:
    """Declare a directory of Alembic migration scripts for the plugin's tables.

    Called once per CRM when its storage is set up. Opening a CRM refuses a database that
    lacks any branch's head; ``crmkit db upgrade`` (``crm.backend.upgrade()``) applies them.

    :param register: ``register(branch_label, versions_directory)``. The scripts form their
        own Alembic branch (the first script has ``down_revision = None``,
        ``branch_labels = (branch_label,)`` and, when it references core tables,
        ``depends_on = "crmkit_core"``, the core revision that creates them), so plugins
        migrate independently of each other.
    :return: None.
    """


@hookspec
def crmkit_register_storage_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Offer a storage backend for one or more database URL schemes.

    Called when a CRM is opened, to find the backend for its database URL.

    :param register: ``register(scheme, factory)``; ``scheme`` is the part of the URL before
        ``://`` without a driver (``sqlite``, ``postgresql``, ``mysql`` …) and
        ``factory(url, *, metadata, migrations, unmigrated_tables, event_types)`` returns the
        backend: in practice a :class:`crmkit.storage.sql.backend.SQLBackend` or a subclass,
        since repositories and the outbox speak SQLAlchemy Core.
    :return: None.
    """


@hookspec
def crmkit_register_event_types(register: Callable[[str, str], None]) -> None:
    """Declare event types a plugin emits.

    Called once per CRM at start-up. Emitting an undeclared type is an error, so a typo in
    an event name fails at once instead of silently reaching no subscriber.

    :param register: ``register(event_type, description)``.
    :return: None.
    """


@hookspec
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    """Add commands to the ``crmkit`` command line.

    Called when the CLI is built, before arguments are parsed.

    :param register: ``register(command)`` with a :class:`click.Command` or
        :class:`click.Group`. Two plugins registering the same command name is an error.
        Commands reach the CRM through ``crmkit.cli.pass_crm`` / ``ctx.obj.crm()``.
    :return: None.
    """


@hookspec
def crmkit_register_metrics(register: Callable[[Any], None]) -> None:
    """Offer metrics: named calculations over the CRM's data (``crmkit metrics``).

    Called each time a CRM's metrics are listed or computed (``crmkit.metrics.metrics(crm)``,
    ``crmkit metrics list|show``), so a plugin's metrics appear as soon as it is installed.

    :param register: ``register(metric)`` with an object following
        ``crmkit.metrics.Metric`` (``name``, ``description``, ``unit``, ``group_by``,
        ``filters``, ``uses_period`` and ``compute(crm, params)`` returning a
        ``crmkit.metrics.MetricResult``); ``crmkit.metrics.MetricDefinition`` builds one from a
        function. Two plugins registering the same name is an error naming both.
    :return: None.
    """


@hookspec
def crmkit_register_routes(register: Callable[[Any], None]) -> None:
    """Add endpoints to the HTTP API.

    Called once per app when ``crmkit.api.create_app(crm)`` builds it (``crmkit serve``). The
    endpoints sit behind the same API-key authentication and error format as the core's and
    appear in ``/openapi.json``.

    :param register: ``register(handler)`` with a Litestar route handler (a function decorated
        with ``litestar.get``, ``litestar.post`` …) or a ``litestar.Router``. A handler gets the
        CRM as a ``crm: litestar.di.NamedDependency[Any]`` parameter;
        ``crmkit.api.auth.require(request, "contacts:read", record=contact)``
        checks the caller's key for a scope (and, given a record, the record-level rules:
        a record out of reach is a 404) and returns it. A method and path the core or another
        plugin serves already is an error naming the plugin.
    :return: None.
    """


# --- lifecycle and events -----------------------------------------------------------------


@hookspec
def crmkit_startup(crm: CRM) -> None:
    """The CRM has been opened: configuration loaded, storage ready, plugins registered.

    Called once per :func:`crmkit.open`. Use it to warm caches or check the plugin's settings
    against the database. Raising aborts the open with an error naming the plugin.

    :param crm: the CRM being opened.
    :return: None.
    """


@hookspec
def crmkit_handle_event(event: Event, crm: CRM) -> None:
    """React to a domain event after the transaction that produced it has committed.

    Called once per event and subscriber by the dispatcher (in-process right after commit by
    default, or by ``crm.events.drain()`` / ``crmkit events drain`` in another process). Each
    implementation is called on its own: one that raises is recorded and retried later with
    backoff, never undoes the write and never stops other subscribers.
    A subscriber that succeeded is not called again for the same event, but after a crash it
    may see an event twice: use ``event.id`` to deduplicate side effects.

    :param event: the :class:`crmkit.domain.Event` (``type``, ``subject_id``, ``data``, ``id``).
    :param crm: the CRM; writes made here run in their own unit of work.
    :return: None; the return value is ignored.
    """


@hookspec
def crmkit_before_commit(uow: UnitOfWork, events: list[Event], crm: CRM) -> None:
    """Write alongside a unit of work's changes, in its transaction, just before it commits.

    Called once per commit of every unit of work a CRM opens for writing (``crm.uow()``: every
    service, the intake, erasure and plugins' own writes), after its last change and before
    its events are inserted into the outbox. What an implementation writes through
    ``uow.connection`` commits or rolls back with the change, so a record kept here (the audit
    log) cannot disagree with the data. Raising rolls the whole unit of work back; the caller
    gets a ``PluginError`` naming the plugin.

    :param uow: the open unit of work (``uow.actor``, ``uow.connection``, ``uow.table(name)``).
    :param events: the events the unit of work emitted, in order (possibly none); a copy, so
        events an implementation emits are written to the outbox but not passed to this hook.
    :param crm: the CRM.
    :return: None; the return value is ignored.
    """


@hookspec
def crmkit_worker_tick(crm: CRM, now: datetime) -> None:
    """Do time-driven work (steps falling due, scheduled checks) from the background worker.

    Called by the worker (``crmkit worker``; in Redis mode by its relays, not the queue's
    consumers) once per pass, with each implementation on its own: one that raises is logged with the plugin's name and the worker carries on. Several
    workers may call it at the same moment, so an implementation must be safe to run
    concurrently and repeatedly (claim work with a lease or make each effect idempotent).

    :param crm: the CRM the worker drains.
    :param now: the pass's time (timezone-aware UTC); act on what is due at or before it.
    :return: None; the return value is ignored.
    """


# --- intake pipeline ----------------------------------------------------------------------


@hookspec
def crmkit_normalize(record: IntakeRecord, crm: CRM) -> None:
    """Normalise an inbound record's raw fields in place, before validation.

    Called for every record entering the intake pipeline (API, CLI, import row, web form,
    inbound message), first of the stages. Typical work: trim, split a full name, map a
    provider's field names onto crmkit's.

    :param record: the :class:`crmkit.intake.IntakeRecord`; change ``record.data``.
    :param crm: the CRM.
    :return: None.
    """


@hookspec
def crmkit_validate(record: IntakeRecord, crm: CRM) -> list[FieldIssue] | None:
    """Check an inbound record against house rules beyond the core's field validation.

    Called after the core has parsed the record's fields (``record.clean`` holds the parsed
    values). All implementations run; their issues are combined and the record is rejected
    with all of them.

    :param record: the record being checked.
    :param crm: the CRM.
    :return: a list of :class:`crmkit.errors.FieldIssue`, or None (or an empty list) when
        the record is acceptable.
    """


@hookspec
def crmkit_enrich(record: IntakeRecord, crm: CRM) -> None:
    """Add data to a valid record before it is matched (firmographics, geo, scoring hints).

    Called after validation passed. Change ``record.clean``; values added here are not
    validated again, so add only clean values.

    :param record: the record.
    :param crm: the CRM.
    :return: None.
    """


@hookspec(firstresult=True)
def crmkit_match(record: IntakeRecord, crm: CRM) -> str | None:
    """Find the existing contact an inbound record describes.

    Called after enrichment for each record, before :func:`crmkit_match_batch`; the first
    implementation returning an id wins. The core's own matcher is the batch form, so records
    no implementation matched go on to it.

    :param record: the record (``record.clean``).
    :param crm: the CRM.
    :return: the id of the existing contact, or None to let the next matcher try; when no
        matcher finds one the record creates a new contact.
    """


@hookspec(firstresult=True)
def crmkit_persist(record: IntakeRecord, crm: CRM, uow: UnitOfWork) -> str | None:
    """Write an accepted record (create, update or skip) inside the intake's transaction.

    Called once per accepted record, before :func:`crmkit_persist_batch`; the first
    implementation returning an id wins (set ``record.outcome`` too). Records no
    implementation wrote go on to the batch form, where the core's writer runs last.
    ``record.match_id`` says which contact matched, if any, and ``record.on_duplicate`` what
    the caller wants done then.

    :param record: the record.
    :param crm: the CRM.
    :param uow: the open unit of work; write through it so the write and its events commit
        together.
    :return: the id of the contact written, or None to leave it to the next implementation.
    """


@hookspec
def crmkit_react(record: IntakeRecord, contact: Contact, crm: CRM) -> None:
    """React to a record that has been persisted (after its transaction committed).

    Called once per persisted record, after commit, with the contact as stored. Failures are
    logged with the plugin's name and do not undo the intake. For durable side effects
    prefer :func:`crmkit_handle_event`, which is retried.

    :param record: the record as it went through the pipeline (``record.outcome`` is
        ``created``, ``updated`` or ``skipped``).
    :param contact: the stored contact.
    :param crm: the CRM.
    :return: None.
    """


# --- intake pipeline, batch forms ---------------------------------------------------------
# Each stage is called once per batch (an import sends batches of ~1,000 records; a single
# submission is a batch of one), before the per-record form of the same stage.


@hookspec
def crmkit_normalize_batch(records: list[IntakeRecord], crm: CRM) -> None:
    """Normalise a batch of inbound records in place (the batch form of :func:`crmkit_normalize`).

    Called once per batch entering the intake pipeline, before the per-record hook.

    :param records: the batch; change each ``record.data``.
    :param crm: the CRM.
    :return: None.
    """


@hookspec
def crmkit_validate_batch(records: list[IntakeRecord], crm: CRM) -> list[tuple[IntakeRecord, list[FieldIssue]]] | None:
    """Check a batch of parsed records against house rules (batch form of :func:`crmkit_validate`).

    Called once per batch after the core's field validation, with the records that passed it.

    :param records: the records (``record.clean`` holds parsed values).
    :param crm: the CRM.
    :return: ``(record, issues)`` pairs for the records to reject, or None when all are fine.
    """


@hookspec
def crmkit_enrich_batch(records: list[IntakeRecord], crm: CRM) -> None:
    """Add data to a batch of valid records (batch form of :func:`crmkit_enrich`).

    Called once per batch after validation, before the per-record hook.

    :param records: the accepted records; change ``record.clean``.
    :param crm: the CRM.
    :return: None.
    """


@hookspec
def crmkit_match_batch(records: list[IntakeRecord], crm: CRM) -> None:
    """Find existing contacts for a batch of records (batch form of :func:`crmkit_match`).

    Called once per batch with the records no per-record matcher matched. Set
    ``record.match_id`` on the records you match; leave the others alone. The core's matcher
    (external ids, then exact e-mail, phone, account number; one query per key per batch) runs
    last.

    :param records: the still unmatched records.
    :param crm: the CRM.
    :return: None.
    """


@hookspec
def crmkit_persist_batch(records: list[IntakeRecord], crm: CRM, uow: UnitOfWork) -> None:
    """Write a batch of accepted records inside the intake's transaction (batch form of
    :func:`crmkit_persist`).

    Called once per batch with the records no per-record writer handled. Set
    ``record.contact_id`` and ``record.outcome`` on the records you write; the core's writer
    runs last and writes the rest (bulk inserts, one event per record).

    :param records: the records still to write.
    :param crm: the CRM.
    :param uow: the open unit of work.
    :return: None.
    """


# --- personal data rights -----------------------------------------------------------------


@hookspec
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    """Contribute what a plugin holds about a person to a personal-data export.

    Called by ``crm.privacy.export(contact_id)`` (``crmkit privacy export``) once per
    implementing plugin; each plugin's sections must have names of their own.

    :param contact: the person.
    :param crm: the CRM.
    :return: a JSON-serialisable mapping of section name to data, merged into the export;
        or None when the plugin holds nothing about this person.
    """


@hookspec
def crmkit_erase_personal_data(contact: Contact, crm: CRM, uow: UnitOfWork) -> None:
    """Erase or irreversibly anonymise what a plugin holds about a person.

    Called by ``crm.privacy.erase(contact_id)`` (``crmkit privacy erase``) inside the
    erasure's transaction, before the core anonymises its own rows; if any implementation
    raises, nothing is erased.

    :param contact: the person (still readable).
    :param crm: the CRM.
    :param uow: the open unit of work; write through ``uow.connection``.
    :return: None.
    """


# --- messaging ----------------------------------------------------------------------------


@hookspec
def crmkit_register_channels(register: Callable[[Channel], None]) -> None:
    """Offer messaging channels (e-mail, SMS, chat …) to ``crm.messages``.

    Called once per CRM while :func:`crmkit.open` builds it. A channel missing a method of
    :class:`crmkit.channels.Channel`, or whose name is not a lower-case identifier, fails the
    open with an error naming the plugin.

    :param register: ``register(channel)`` with an object implementing
        :class:`crmkit.channels.Channel`; its ``name`` (``email``, ``sms``) names the channel in
        sends, consent entries and activities (``email.sent``). Two plugins registering the same
        name is an error.
    :return: None.
    """


@hookspec
def crmkit_veto_send(message: OutboundMessage, contact: Contact, crm: CRM) -> str | None:
    """Refuse to send a message (house rules beyond consent, suppression and frequency caps).

    Called for every message when it is queued and again just before its channel is called
    (after the core's consent, suppression and frequency-cap checks passed), so a rule that
    changes while a message waits for a retry still applies. Every implementation is asked
    until one objects. A vetoed message is never sent: it is stored as ``vetoed`` with the
    reason and logged as a ``<channel>.vetoed`` activity. An implementation that raises never
    lets a message through: when queueing, the send fails with a ``PluginError`` naming the
    plugin and nothing is queued; before sending, it counts as a transient failure (retried).

    :param message: the rendered :class:`crmkit.channels.OutboundMessage` (``channel``,
        ``to``, ``purpose``, ``body`` …).
    :param contact: the recipient.
    :param crm: the CRM.
    :return: a reason (a short sentence) to veto, or None to let the message through.
    """


# --- automation ---------------------------------------------------------------------------


@hookspec
def crmkit_register_automation_triggers(register: Callable[[Any], None]) -> None:
    """Offer trigger types for automation rules: what starts a rule.

    Called once per CRM at start-up, when ``crm.automations`` is built. A rule naming a
    trigger no plugin registers is refused when it is saved (and skipped, with a warning, if
    the plugin goes away later).

    :param register: ``register(trigger)`` with a ``crmkit.automation.TriggerType``: its
        ``name``, the event types it listens to (``events``, ``"*"`` for all), its parameters
        (``params``, field specs checked when a rule is saved), the records its rules may use
        (``facts``), and ``matches(event, params, facts)``; or, for a scheduled trigger,
        ``scan(crm, rule, now, limit)`` returning the occurrences ``crm.automations.tick(now)``
        should run the rule for. Two plugins registering the same name is an error naming both.
    :return: None.
    """


@hookspec
def crmkit_register_automation_actions(register: Callable[[Any], None]) -> None:
    """Offer action types for automation rules: what a rule does.

    Called once per CRM at start-up, when ``crm.automations`` is built. Actions run after the
    triggering write committed, once per rule and event; a failing one is recorded on the
    rule's run and never undoes the triggering write.

    :param register: ``register(action)`` with a ``crmkit.automation.ActionType``: its
        ``name``, its parameters (``params``, checked when a rule is saved, with ``templates``
        naming the ones that are Jinja2 templates), the records it ``needs``, and
        ``run(context)``. A ``transactional`` action writes through ``context.uow``, which
        commits together with the run's progress, so a redelivered event cannot repeat it; a
        non-transactional one (an outside call) gets ``context.idempotency_key`` to pass on.
        Raising ``crmkit.automation.ActionFailed`` fails the run (retried unless
        ``permanent``). Two plugins registering the same name is an error naming both.
    :return: None.
    """
