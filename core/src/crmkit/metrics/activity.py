"""Activity metrics: activities logged per user, and overdue tasks.

Data they need: activities with ``created_by`` (the acting user, set from the unit of work's
actor) and ``occurred_at``; tasks with ``due_at``, ``done_at`` and ``assignee_id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from crmkit.domain.values import utcnow
from crmkit.metrics.protocol import MetricDefinition, MetricParams, MetricResult
from crmkit.metrics.sql import assemble, ratio, rows, within

if TYPE_CHECKING:
    from crmkit.app import CRM


def activities_per_user(crm: CRM, params: MetricParams) -> MetricResult:
    """Activities that occurred in the period (``occurred_at``) and were logged by a user,
    divided by the number of users who logged any; with ``by=owner``, each user's count."""
    with crm.read() as uow:
        a = uow.table("activities")
        conditions = [a.c.created_by.is_not(None), *within(a.c.occurred_at, params.period)]
        if "channel" in params.filters:
            conditions.append(a.c.channel == params.filters["channel"])
        if "owner" in params.filters:
            conditions.append(a.c.created_by == params.filters["owner"])
        if params.group_by == "owner":
            found = rows(uow, sa.select(a.c.created_by.label("group_key"), sa.func.count().label("activities"),
                                        sa.literal(1).label("users")).where(*conditions).group_by(a.c.created_by))
            # Per user the value is the user's count (one user); the total divides by the users summed.
        else:
            found = rows(uow, sa.select(sa.func.count().label("activities"), sa.func.count(sa.distinct(a.c.created_by)).label("users"))
                         .where(*conditions))
        return assemble(uow, "activity.per_user", "count", params, found,
                        lambda c: (ratio(c["activities"], c["users"]), int(c["activities"]), {"users": int(c["users"])}))


def overdue_tasks(crm: CRM, params: MetricParams) -> MetricResult:
    """Tasks that were overdue at the end of the period (now, without a period): due before
    then and not done by then. ``sample_size`` is the number of tasks with a due date then
    open, so the share overdue is ``value ÷ sample_size``."""
    as_of = params.period.end if params.period is not None else utcnow()
    with crm.read() as uow:
        t = uow.table("tasks")
        open_then = [t.c.due_at.is_not(None), t.c.created_at < as_of, sa.or_(t.c.done_at.is_(None), t.c.done_at >= as_of)]
        if "owner" in params.filters:
            open_then.append(t.c.assignee_id == params.filters["owner"])
        overdue = sa.func.coalesce(sa.func.sum(sa.case((t.c.due_at < as_of, 1), else_=0)), 0).label("overdue")
        head = [t.c.assignee_id.label("group_key")] if params.group_by == "owner" else []
        statement = sa.select(*head, overdue, sa.func.count().label("open")).where(*open_then)
        found = rows(uow, statement.group_by(t.c.assignee_id) if head else statement)
        return assemble(uow, "activity.overdue_tasks", "count", params, found,
                        lambda c: (int(c["overdue"]), int(c["open"]), {"share": ratio(c["overdue"], c["open"])}))


def definitions() -> list[MetricDefinition]:
    return [
        MetricDefinition("activity.per_user", "Activities in the period per user who logged any (by owner: each user's count).",
                         "count", activities_per_user, group_by=("owner",), filters=("owner", "channel")),
        MetricDefinition("activity.overdue_tasks", "Open tasks past their due date at the end of the period (or now).",
                         "count", overdue_tasks, group_by=("owner",), filters=("owner",)),
    ]
