"""The predictive score's features: what is known about a contact *as of* a moment, read from
the CRM's own tables with a few grouped queries (counts, latest dates) rather than row by row.

Features (keep this list and :data:`NUMERIC`/:data:`CATEGORICAL` in step):

* ``activities.<kind>`` — activities of each kind the rule-based score counts
  (``[plugins.scoring.activity_points]``) before the moment;
* ``activities.total`` — activities of any kind before the moment;
* ``days_since_activity`` — days from the latest activity to the moment (:data:`NO_ACTIVITY_DAYS`
  when there is none);
* ``deals`` — deals of the contact created up to the moment;
* ``has_organization`` — 1 when the contact belongs to an organization;
* ``corporate_email`` — 1 for an e-mail address outside the :data:`FREE_MAIL` domains;
* ``source_channel`` (categorical) — how the contact arrived (``none`` when unknown).

The moment matters for training: a labelled contact is described as of its *first closed deal*,
so nothing that happened because of the outcome (the thank-you calls after a win) teaches the
model that it predicts winning. For the same reason the lifecycle stage is not a feature: winning
moves a contact to ``customer``, so the stage records the label rather than predicting it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

#: Days since the latest activity for a contact without any (about a year: "long ago").
NO_ACTIVITY_DAYS = 365.0
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "msn.com", "aol.com",
    "icloud.com", "me.com", "gmx.de", "gmx.net", "web.de", "proton.me", "protonmail.com", "mail.ru", "yandex.ru",
})
CATEGORICAL = ("source_channel",)


def numeric_features(kinds: Sequence[str]) -> list[str]:
    """The numeric feature names for the scored activity ``kinds``, in a stable order."""
    return [*(f"activities.{kind}" for kind in sorted(kinds)), "activities.total", "days_since_activity", "deals",
            "has_organization", "corporate_email"]


def corporate(email: str | None) -> float:
    if not email or "@" not in email:
        return 0.0
    return 0.0 if email.rsplit("@", 1)[1].lower() in FREE_MAIL else 1.0


def labelled_moments(deals: sa.Table) -> sa.Subquery:
    """One row per contact with a closed deal: ``contact_id``, ``as_of`` (its first close) and
    ``won`` (1 if any of its deals was won — a contact with a won deal is a positive)."""
    return (
        sa.select(deals.c.contact_id, sa.func.min(deals.c.closed_at).label("as_of"),
                  sa.func.max(sa.case((deals.c.status == "won", 1), else_=0)).label("won"))
        .where(deals.c.contact_id.is_not(None), deals.c.status.in_(("won", "lost")), deals.c.closed_at.is_not(None))
        .group_by(deals.c.contact_id)
        .subquery("labelled")
    )


class FeatureReader:
    """Reads feature rows for either every labelled contact (training) or one contact now
    (scoring), with the same queries — so a model sees in use exactly what it was trained on."""

    def __init__(self, tables: dict[str, sa.Table], kinds: Sequence[str]):
        self.contacts, self.activities, self.deals = tables["contacts"], tables["activities"], tables["deals"]
        self.kinds = sorted(kinds)

    def training_rows(self, connection: sa.Connection) -> tuple[list[dict[str, Any]], list[int]]:
        """Features of every contact with a closed deal, as of its first close, and the labels."""
        moments = labelled_moments(self.deals)
        found = {r.contact_id: (r.as_of, int(r.won)) for r in connection.execute(sa.select(moments))}
        rows = self._read(connection, {cid: at for cid, (at, _) in found.items()}, moments)
        # In the contacts' order of creation: the same history always trains the same model
        # and holds out the same contacts (ids are random, so they would reshuffle the split).
        return list(rows.values()), [found[cid][1] for cid in rows]

    def contact_row(self, connection: sa.Connection, contact_id: str, at: datetime) -> dict[str, Any] | None:
        """``contact_id``'s features as of ``at``; None if there is no such contact."""
        return self._read(connection, {contact_id: at}, None).get(contact_id)

    def _read(self, connection: sa.Connection, moments: dict[str, datetime], scope: sa.Subquery | None) -> dict[str, dict[str, Any]]:
        if not moments:
            return {}
        a, d, c = self.activities, self.deals, self.contacts

        def scoped(stmt: sa.Select[Any], table: sa.Table, column: sa.ColumnElement[Any], strict: bool) -> sa.Select[Any]:
            if scope is None:  # one contact, one moment: plain bound parameters
                (contact_id, at), = moments.items()
                return stmt.where(table.c.contact_id == contact_id, column < at if strict else column <= at)
            return stmt.join(scope, scope.c.contact_id == table.c.contact_id).where(
                column < scope.c.as_of if strict else column <= scope.c.as_of)

        counts: dict[str, dict[str, int]] = {}
        if self.kinds:
            stmt = scoped(sa.select(a.c.contact_id, a.c.kind, sa.func.count().label("n")).select_from(a)
                          .where(a.c.kind.in_(self.kinds)), a, a.c.occurred_at, True).group_by(a.c.contact_id, a.c.kind)
            for r in connection.execute(stmt):
                counts.setdefault(r.contact_id, {})[r.kind] = int(r.n)
        totals = {r.contact_id: (int(r.n), r.latest) for r in connection.execute(
            scoped(sa.select(a.c.contact_id, sa.func.count().label("n"), sa.func.max(a.c.occurred_at).label("latest"))
                   .select_from(a), a, a.c.occurred_at, True).group_by(a.c.contact_id))}
        deal_counts = {r.contact_id: int(r.n) for r in connection.execute(
            scoped(sa.select(d.c.contact_id, sa.func.count().label("n")).select_from(d), d, d.c.created_at, False)
            .group_by(d.c.contact_id))}
        profile = sa.select(c.c.id, c.c.email, c.c.organization_id, c.c.source_channel)
        profile = profile.where(c.c.id == next(iter(moments))) if scope is None else profile.join(scope, scope.c.contact_id == c.c.id)
        profile = profile.order_by(c.c.created_at, c.c.id)

        rows: dict[str, dict[str, Any]] = {}
        for r in connection.execute(profile):
            total, latest = totals.get(r.id, (0, None))
            per_kind = counts.get(r.id, {})
            row: dict[str, Any] = {f"activities.{kind}": float(per_kind.get(kind, 0)) for kind in self.kinds}
            row["activities.total"] = float(total)
            row["days_since_activity"] = NO_ACTIVITY_DAYS if latest is None else max(
                (moments[r.id] - latest).total_seconds() / 86400, 0.0)
            row["deals"] = float(deal_counts.get(r.id, 0))
            row["has_organization"] = 0.0 if r.organization_id is None else 1.0
            row["corporate_email"] = corporate(r.email)
            row["source_channel"] = r.source_channel or "none"
            rows[r.id] = row
        return rows
