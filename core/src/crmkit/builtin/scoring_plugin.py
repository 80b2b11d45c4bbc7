"""The built-in lead scoring plugin: ``[plugins.scoring]``, ``contact.score_changed``,
``crm.scores`` and ``crm.predictions`` (the predictive score's tables, own Alembic branch
``crmkit_scoring``), the event subscriber that keeps both scores current, and ``crmkit scores``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from crmkit.app import CRM
from crmkit.domain import Contact, Event
from crmkit.errors import ConfigError
from crmkit.plugins import hookimpl
from crmkit.scoring.predictions import Predictions, predictions
from crmkit.scoring.service import EVENT_TYPES, Scores, scores
from crmkit.scoring.settings import SECTION, ScoringSettings
from crmkit.scoring.tables import BRANCH, MIGRATIONS, define_tables
from crmkit.serialize import to_jsonable
from crmkit.storage.uow import UnitOfWork


@hookimpl
def crmkit_register_tables(metadata: sa.MetaData, register: Callable[[sa.Table], None]) -> None:
    for table in define_tables(metadata):
        register(table)


@hookimpl
def crmkit_register_migrations(register: Callable[[str, str], None]) -> None:
    register(BRANCH, str(MIGRATIONS))


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    register(SECTION, ScoringSettings)


@hookimpl
def crmkit_register_event_types(register: Callable[[str, str], None]) -> None:
    for name, description in EVENT_TYPES.items():
        register(name, description)


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    from crmkit.cli.scoring_commands import scores_group

    register(scores_group())


@hookimpl
def crmkit_startup(crm: CRM) -> None:
    # Rules are checked when the CRM opens (a misspelt field fails the open, naming it), not
    # when the first event is scored.
    problems = crm.settings_for(SECTION).problems()
    if problems:
        raise ConfigError(f"{crm.config.path or 'configuration'}: [plugins.{SECTION}] " + "; ".join(problems))
    crm.scores = Scores(crm)  # type: ignore[attr-defined]
    crm.predictions = Predictions(crm)  # type: ignore[attr-defined]


@hookimpl
def crmkit_handle_event(event: Event, crm: CRM) -> None:
    scores(crm).handle(event)
    predictions(crm).handle(event)


@hookimpl
def crmkit_export_personal_data(contact: Contact, crm: CRM) -> dict[str, Any] | None:
    stored = predictions(crm).stored(contact.id)
    if stored is None:
        return None
    return {"predicted_score": to_jsonable({k: stored[k] for k in ("probability", "drivers", "scored_at", "model_id")})}


@hookimpl
def crmkit_erase_personal_data(contact: Contact, crm: CRM, uow: UnitOfWork) -> None:
    # The drivers describe the person (activity counts, kind of e-mail address): erased with them.
    predictions(crm).forget([contact.id], uow)
