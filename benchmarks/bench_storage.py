"""Storage benchmarks: what the intake pipeline costs per contact over a bare bulk insert, and
what :func:`crmkit.reports.funnel` costs over a hand-written SQL query for the same numbers.

(a) **Contact intake.** N generated contacts go in through ``crm.intake.submit`` one by one
    (one transaction, outbox event and dispatch each, as an API call would), and through
    ``crm.intake.submit_many`` (batches of 1,000), each on a fresh database. The baseline, on
    another fresh database, validates the same records with the same field validation
    (``crm.contacts.parse_with``) and writes the rows in one SQLAlchemy Core ``executemany``:
    the least any correct path must do. All three must store the same contacts.
(b) **Funnel report.** A pipeline history of 200,000 deals and about 600,000 stage changes
    (50,000 / 150,000 with ``--quick``) is generated and written with Core ``executemany``,
    then ``reports.funnel`` and a hand-written SQL query are timed, interleaved, best of a few
    runs. Their numbers must be equal before a ratio is reported.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import crmkit
import sqlalchemy as sa
from crmkit import reports
from crmkit.domain import Contact
from crmkit.domain.values import new_id
from crmkit.storage.sql.mapping import to_row

from benchmarks.harness import best_of, result, scratch_database, timed

if TYPE_CHECKING:
    from crmkit.app import CRM

INTAKE_CONTACTS = {True: 500, False: 2_000}
FUNNEL_DEALS = {True: 50_000, False: 200_000}
FUNNEL_REPEATS = {True: 3, False: 5}
CHUNK = 10_000  # deals generated and inserted per transaction while building the history

FIRST = ("Ada", "Ben", "Chen", "Dana", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kofi", "Lena")
LAST = ("Adams", "Becker", "Costa", "Dubois", "Garcia", "Ito", "Jansen", "Lopez", "Novak", "Okafor", "Rossi", "Zhang")
AREAS = ("212", "312", "415", "503", "617", "702", "737", "206", "303", "404")
STAGES = [("Lead", 0.1, "open"), ("Qualified", 0.25, "open"), ("Proposal", 0.5, "open"),
          ("Negotiation", 0.75, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")]


def contact_records(count: int) -> list[dict[str, Any]]:
    """``count`` distinct, valid contacts (unique e-mail and phone), the same on every call."""
    return [
        {"first_name": FIRST[i % len(FIRST)], "last_name": LAST[i // len(FIRST) % len(LAST)],
         "email": f"person{i}@example.com", "phone": f"+1 {AREAS[i // 10_000 % len(AREAS)]} 555 {i % 10_000:04d}",
         "job_title": "Buyer", "address": {"city": "Springfield", "country": "US"}, "tags": ["bench"],
         "source": {"channel": "webform", "utm_source": "newsletter"}}
        for i in range(count)
    ]


def stored_contacts(crm: CRM) -> list[tuple[Any, ...]]:
    with crm.read() as uow:
        t = uow.table("contacts")
        return list(uow.connection.execute(  # type: ignore[union-attr]
            sa.select(t.c.email, t.c.phone, t.c.first_name, t.c.last_name, t.c.address_city, t.c.source_channel).order_by(t.c.email)
        ).all())


def submit_one_by_one(crm: CRM, records: list[dict[str, Any]]) -> None:
    for record in records:
        crm.intake.submit(record, source="bench")


def submit_in_batches(crm: CRM, records: list[dict[str, Any]]) -> None:
    for record in crm.intake.submit_many(crm.intake.record(r, source="bench") for r in records):
        assert record.outcome == "created", record.issues


def validate_and_executemany(crm: CRM, records: list[dict[str, Any]]) -> None:
    """The baseline: the core's field validation, then one Core INSERT for all rows."""
    with crm.read() as uow:
        context = crm.contacts.validation_context(uow)
        clean = [crm.contacts.parse_with(context, record) for record in records]
    rows = [to_row(Contact(**{k: v for k, v in values.items() if v is not None})) for values in clean]
    with crm.backend.engine.begin() as connection:
        connection.execute(sa.insert(crm.backend.metadata.tables["contacts"]), rows)


def bench_intake(quick: bool, database: str | None) -> list[dict[str, Any]]:
    records = contact_records(INTAKE_CONTACTS[quick])
    paths = {"one_by_one": submit_one_by_one, "batches": submit_in_batches, "baseline": validate_and_executemany}
    seconds: dict[str, float] = {}
    stored: dict[str, list[tuple[Any, ...]]] = {}
    # Each run on a fresh database. The quick paths run twice, before and after the slow one,
    # and keep their best time, so a burst of server or disk activity cannot make one look better.
    for label in ("baseline", "batches", "one_by_one", "baseline", "batches"):
        with scratch_database(database) as url, crmkit.open(url, migrate=True) as crm:
            took, _ = timed(lambda: paths[label](crm, records))  # noqa: B023 - called at once
            seconds[label] = min(took, seconds.get(label, took))
            stored[label] = stored_contacts(crm)
    if not stored["one_by_one"] == stored["batches"] == stored["baseline"]:
        raise AssertionError("the intake paths and the baseline stored different contacts")
    per_row = {label: value / len(records) * 1e6 for label, value in seconds.items()}
    return [
        result(f"intake.submit one by one, {len(records):,} contacts", per_row["one_by_one"], per_row["baseline"], "µs/contact",
               "each: validate, match, own transaction + outbox event, inline dispatch; baseline: same validation + one Core executemany"),
        result(f"intake.submit_many (batches of 1,000), {len(records):,} contacts", per_row["batches"], per_row["baseline"], "µs/contact",
               "same baseline"),
    ]


def generate_history(crm: CRM, deals: int, seed: int = 1) -> int:
    """Write ``deals`` deals of a "Bench" pipeline and their stage changes (about three per
    deal) straight to the tables with Core ``executemany``; return the number of changes."""
    pipeline = crm.pipelines.create("Bench", STAGES)
    ids = [s.id for s in pipeline.stages]
    won, lost, last_open = ids.index(pipeline.stage_named("Won").id), ids.index(pipeline.stage_named("Lost").id), 3
    tables = crm.backend.metadata.tables
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    changes = 0
    for first in range(0, deals, CHUNK):
        deal_rows: list[dict[str, Any]] = []
        change_rows: list[dict[str, Any]] = []
        for _ in range(first, min(first + CHUNK, deals)):
            deal_id, at = new_id(), start + timedelta(minutes=rng.randrange(500_000))
            created = at
            # Mostly created in Lead, sometimes further in; then steps forward, now and then
            # back, until won, lost, or still open.
            path = [0 if rng.random() < 0.9 else rng.randrange(1, last_open + 1)]
            while len(path) < 7 and path[-1] not in (won, lost) and rng.random() < 0.85:
                roll, here = rng.random(), path[-1]
                path.append(lost if roll < 0.2 else max(here - 1, 0) if roll < 0.28 and here else won if here == last_open else here + 1)
            previous = None
            for stage in path:
                change_rows.append({"id": new_id(), "deal_id": deal_id, "from_stage_id": previous, "to_stage_id": ids[stage],
                                    "changed_at": at, "changed_by": None})
                previous, at = ids[stage], at + timedelta(days=rng.randrange(1, 20))
            outcome = "won" if path[-1] == won else "lost" if path[-1] == lost else "open"
            deal_rows.append({
                "id": deal_id, "title": f"Bench deal {len(deal_rows) + first}", "pipeline_id": pipeline.id, "stage_id": ids[path[-1]],
                "contact_id": None, "organization_id": None, "amount": Decimal(rng.randrange(1, 500) * 100), "currency": "USD",
                "expected_close": None, "owner_id": None, "status": outcome, "lost_reason": "price" if outcome == "lost" else None,
                "closed_at": at if outcome != "open" else None, "custom": {}, "created_at": created, "updated_at": at, "version": 1,
            })
        with crm.backend.engine.begin() as connection:
            connection.execute(sa.insert(tables["deals"]), deal_rows)
            connection.execute(sa.insert(tables["stage_changes"]), change_rows)
        changes += len(change_rows)
    return changes


#: The same funnel written by hand: each open stage joined to every deal's furthest position
#: (won = beyond every open stage, lost = before all), counted per stage in SQL; and the
#: distinct deals that entered each won/lost stage.
HAND_WRITTEN_REACHED = sa.text("""
    SELECT s.id, COUNT(d.deal_id)
    FROM stages s
    LEFT JOIN (
        SELECT sc.deal_id,
               MAX(CASE WHEN st.outcome = 'won' THEN 1000000 WHEN st.outcome = 'lost' THEN -1 ELSE st.position END) AS depth
        FROM stage_changes sc JOIN stages st ON st.id = sc.to_stage_id
        WHERE st.pipeline_id = :pipeline
        GROUP BY sc.deal_id
    ) d ON d.depth >= s.position
    WHERE s.pipeline_id = :pipeline AND s.outcome = 'open'
    GROUP BY s.id
""")
HAND_WRITTEN_OUTCOMES = sa.text("""
    SELECT sc.to_stage_id, COUNT(DISTINCT sc.deal_id)
    FROM stage_changes sc JOIN stages st ON st.id = sc.to_stage_id
    WHERE st.pipeline_id = :pipeline AND st.outcome <> 'open'
    GROUP BY sc.to_stage_id
""")


def hand_written_funnel(crm: CRM, pipeline_id: str) -> dict[str, int]:
    with crm.backend.engine.connect() as connection:
        reached = connection.execute(HAND_WRITTEN_REACHED, {"pipeline": pipeline_id}).all()
        outcomes = connection.execute(HAND_WRITTEN_OUTCOMES, {"pipeline": pipeline_id}).all()
    return {stage_id: int(count) for stage_id, count in [*reached, *outcomes]}


def report_counts(report: reports.FunnelReport) -> dict[str, int]:
    counts = {s.stage.id: s.reached for s in report.stages}
    counts |= {o.stage.id: o.entered for o in report.outcomes if o.entered}  # the SQL has no rows for zeros
    return counts


def bench_funnel(quick: bool, database: str | None) -> list[dict[str, Any]]:
    deals = FUNNEL_DEALS[quick]
    with scratch_database(database) as url, crmkit.open(url, migrate=True) as crm:
        generation, changes = timed(lambda: generate_history(crm, deals))
        pipeline_id = crm.pipelines.get("Bench").id
        (ours, report), (baseline, expected) = best_of(
            FUNNEL_REPEATS[quick], lambda: reports.funnel(crm, "Bench"), lambda: hand_written_funnel(crm, pipeline_id),
        )
    if report_counts(report) != expected:
        raise AssertionError(f"reports.funnel {report_counts(report)} differs from the hand-written SQL {expected}")
    return [result(
        f"reports.funnel, {deals:,} deals / {changes:,} stage changes", ours * 1e3, baseline * 1e3, "ms",
        f"best of {FUNNEL_REPEATS[quick]}; baseline: hand-written SQL (one joined GROUP BY); history written in {generation:.0f} s",
    )]


def run(quick: bool, *, database: str | None = None) -> list[dict[str, Any]]:
    return [*bench_intake(quick, database), *bench_funnel(quick, database)]
