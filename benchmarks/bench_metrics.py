"""Metrics at scale: the funnel, both forecasts and CAC computed through the crmkit metric API
over a million deals, against hand-written SQL computing the same numbers in the same run.

The history is generated here (never committed) and written straight to a crmkit schema made
by ``crmkit.open(url, migrate=True)``: Core ``executemany`` on SQLite/MariaDB, ``COPY`` on
PostgreSQL (values bound through the columns' own types, so both store what the services
would). At scale 1: 1,000,000 deals with exactly 5,000,000 stage changes (3–7 per deal), 250,000
contacts with a first-touch source, 60 campaigns over five channels. ``--scale`` shrinks all of
it for development (``--quick`` is scale 0.05).

Each metric and its hand-written query run interleaved, best of a few; their numbers must be
equal (a benchmark computing something else would be worthless), else the run fails.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import crmkit
import sqlalchemy as sa
from crmkit.metrics import MetricResult, metrics
from crmkit.metrics.sql import MONEY_QUANTUM, money
from crmkit.storage.sql.types import UTCDateTime

from benchmarks.harness import best_of, result, scratch_database, timed

if TYPE_CHECKING:
    from crmkit.app import CRM

DEALS = 1_000_000
CONTACTS_PER_DEAL = 0.25
CAMPAIGNS = 60
QUICK_SCALE = 0.05
REPEATS = 3
CHUNK = 20_000  # deals generated and written per transaction

PIPELINE = "Bench"
STAGES = [("Lead", 0.1, "open"), ("Qualified", 0.25, "open"), ("Proposal", 0.5, "open"),
          ("Negotiation", 0.75, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")]
LAST_OPEN = 3
CHANNELS = ("ads", "email", "events", "referral", "webform")
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_MINUTES = 700 * 24 * 60  # deals are created from 2024-01-01 over about 23 months
PERIOD = "2025"
PERIOD_START, PERIOD_END = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
CURRENCY = "USD"


# --- generation -------------------------------------------------------------------------------


def _ids(prefix: str) -> Iterator[str]:
    """Deterministic 32-character ids (the width of crmkit's UUID hex ids), cheaper than uuid4."""
    number = 0
    while True:
        number += 1
        yield f"{prefix}{number:0{32 - len(prefix)}x}"


class Writer:
    """Bulk rows into one table: ``COPY`` on PostgreSQL, Core ``executemany`` elsewhere.

    For ``COPY`` each value goes through its column type's bind processor first (UTC datetimes
    made naive, money scaled to its stored integer; JSON is serialised), so the rows stored are
    the ones ``executemany`` — and the services — would store.
    """

    def __init__(self, crm: CRM, table: str, columns: Sequence[str]):
        self.table = crm.backend.metadata.tables[table]
        self.columns = list(columns)
        dialect = crm.backend.engine.dialect
        self.copy = dialect.name == "postgresql"
        # psycopg adapts JSON itself when binding parameters, so JSON columns are serialised here.
        self.processors = [json.dumps if isinstance(self.table.c[c].type, sa.JSON) else self.table.c[c].type.bind_processor(dialect)
                           for c in self.columns]

    def write(self, connection: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if not self.copy:
            connection.execute(sa.insert(self.table), [dict(zip(self.columns, row, strict=True)) for row in rows])
            return
        processors = list(enumerate(self.processors))
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {self.table.name} ({', '.join(self.columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([value if process is None or value is None else process(value)
                                for (_, process), value in zip(processors, row, strict=True)])


def generate(crm: CRM, deals: int, seed: int = 5) -> dict[str, int]:
    """Write the benchmark's data set; return how many rows of each kind were written."""
    rng = random.Random(seed)
    pipeline = crm.pipelines.create(PIPELINE, STAGES)
    stage_ids = [pipeline.stage_named(name).id for name, _, _ in STAGES]
    won, lost = stage_ids.index(pipeline.stage_named("Won").id), stage_ids.index(pipeline.stage_named("Lost").id)
    campaigns: dict[str, list[str]] = {channel: [] for channel in CHANNELS}
    for number in range(CAMPAIGNS):
        channel = CHANNELS[number % len(CHANNELS)]
        starts = date(2024, 1, 1) + timedelta(days=rng.randrange(730)) if number % 10 else None  # some undated
        campaign = crm.campaigns.create({"name": f"Campaign {number:02d}", "channel": channel, "currency": CURRENCY,
                                         "spend": str(rng.randrange(1_000, 50_000)), "starts_on": starts})
        campaigns[channel].append(campaign.id)

    tables = {name: Writer(crm, name, columns) for name, columns in {
        "contacts": ("id", "first_name", "lifecycle_stage", "source_channel", "source_campaign_id", "score", "tags", "custom",
                     "created_at", "updated_at", "version"),
        "deals": ("id", "title", "pipeline_id", "stage_id", "contact_id", "amount", "currency", "expected_close", "status",
                  "closed_at", "custom", "created_at", "updated_at", "version"),
        "stage_changes": ("id", "deal_id", "from_stage_id", "to_stage_id", "changed_at"),
    }.items()}
    contact_count = max(1, int(deals * CONTACTS_PER_DEAL))
    contact_ids = [f"c{n:031x}" for n in range(contact_count)]
    counts = {"deals": 0, "stage_changes": 0, "contacts": contact_count, "campaigns": CAMPAIGNS}
    with crm.backend.engine.begin() as connection:
        rows = []
        for contact_id in contact_ids:
            channel = rng.choice(CHANNELS) if rng.random() < 0.9 else None
            campaign = rng.choice(campaigns[channel]) if channel and rng.random() < 0.7 else None
            rows.append((contact_id, "Bench", "lead", channel, campaign, 0.0, [], {}, START, START, 1))
        tables["contacts"].write(connection, rows)

    change_ids, deal_ids = _ids("s"), _ids("d")
    for first in range(0, deals, CHUNK):
        deal_rows: list[tuple[Any, ...]] = []
        change_rows: list[tuple[Any, ...]] = []
        for number in range(first, min(first + CHUNK, deals)):
            deal_id = next(deal_ids)
            created = at = START + timedelta(minutes=rng.randrange(SPAN_MINUTES))
            # 3–7 changes, 5 on average: created (mostly in Lead), moves forward and now and then
            # back, and a last change that wins, loses, or leaves the deal open.
            path = [0 if rng.random() < 0.9 else rng.randrange(1, LAST_OPEN + 1)]
            for _ in range(1 + number % 5):
                here = path[-1]
                path.append(max(here - 1, 0) if rng.random() < 0.25 else min(here + 1, LAST_OPEN))
            roll = rng.random()
            path.append(won if roll < 0.35 else lost if roll < 0.65 else rng.randrange(LAST_OPEN + 1))
            previous = None
            for step, stage in enumerate(path):
                if step:
                    at += timedelta(minutes=rng.randrange(60, 20 * 24 * 60))
                change_rows.append((next(change_ids), deal_id, previous, stage_ids[stage], at))
                previous = stage_ids[stage]
            status = "won" if path[-1] == won else "lost" if path[-1] == lost else "open"
            expected = (at + timedelta(days=rng.randrange(10, 300))).date() if status == "open" else None
            deal_rows.append((deal_id, f"Deal {number}", pipeline.id, stage_ids[path[-1]], rng.choice(contact_ids),
                              Decimal(rng.randrange(1, 500) * 100), "EUR" if rng.random() < 0.1 else CURRENCY, expected, status,
                              at if status != "open" else None, {}, created, at, 1))
        with crm.backend.engine.begin() as connection:
            tables["deals"].write(connection, deal_rows)
            tables["stage_changes"].write(connection, change_rows)
        counts["deals"] += len(deal_rows)
        counts["stage_changes"] += len(change_rows)
    if crm.backend.engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk load; without statistics both sides get guesses.
        with crm.backend.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
    return counts


# --- the same numbers, written by hand ----------------------------------------------------------

#: One pass over the history: each deal's furthest point (won beyond every open stage, lost
#: before all) and whether it ever entered the won / the lost stage; one row per depth.
HAND_FUNNEL = """
    WITH per_deal AS (
        SELECT sc.deal_id,
               MAX(CASE WHEN st.outcome = 'won' THEN 1000000 WHEN st.outcome = 'lost' THEN -1 ELSE st.position END) AS depth,
               MAX(CASE WHEN st.outcome = 'won' THEN 1 ELSE 0 END) AS won,
               MAX(CASE WHEN st.outcome = 'lost' THEN 1 ELSE 0 END) AS lost
        FROM stage_changes sc JOIN stages st ON st.id = sc.to_stage_id
        WHERE st.pipeline_id = :pipeline
        GROUP BY sc.deal_id
    )
    SELECT depth, COUNT(*), SUM(won), SUM(lost) FROM per_deal GROUP BY depth
"""
HAND_STAGES = "SELECT id, position, outcome FROM stages WHERE pipeline_id = :pipeline"
HAND_WEIGHTED = """
    SELECT s.id, s.probability, COUNT(*), SUM(d.amount)
    FROM deals d JOIN stages s ON s.id = d.stage_id
    WHERE d.pipeline_id = :pipeline AND d.status = 'open' AND d.currency = :currency
    GROUP BY s.id, s.probability
"""
#: Conversion per stage from the distinct (deal, stage) visits of closed deals; the open deals
#: expected to close in the period summed per current stage beside it.
HAND_HISTORICAL = """
    WITH visits AS (SELECT DISTINCT deal_id, to_stage_id FROM stage_changes),
    conversion AS (
        SELECT v.to_stage_id AS stage_id, SUM(CASE WHEN d.status = 'won' THEN 1 ELSE 0 END) AS won, COUNT(*) AS closed
        FROM visits v JOIN deals d ON d.id = v.deal_id
        WHERE d.status IN ('won', 'lost')
        GROUP BY v.to_stage_id
    )
    SELECT d.stage_id, SUM(d.amount), COUNT(*), MAX(c.won), MAX(c.closed)
    FROM deals d LEFT JOIN conversion c ON c.stage_id = d.stage_id
    WHERE d.status = 'open' AND d.currency = :currency AND d.expected_close >= :first_day AND d.expected_close < :after_day
    GROUP BY d.stage_id
"""
HAND_NEW_CUSTOMERS = """
    SELECT c.source_channel, COUNT(*)
    FROM (SELECT contact_id, MIN(closed_at) AS first_win FROM deals
          WHERE status = 'won' AND contact_id IS NOT NULL GROUP BY contact_id) f
    JOIN contacts c ON c.id = f.contact_id
    WHERE f.first_win >= :start AND f.first_win < :end
    GROUP BY c.source_channel
"""
HAND_SPEND = """
    SELECT channel, SUM(spend) FROM campaigns
    WHERE currency = :currency AND ((starts_on >= :first_day AND starts_on < :after_day)
                                    OR (starts_on IS NULL AND created_at >= :start AND created_at < :end))
    GROUP BY channel
"""


def _query(text: str) -> sa.TextClause:
    """``text`` with its period parameters typed like the columns they are compared with."""
    return sa.text(text).bindparams(
        *(sa.bindparam(name, type_=UTCDateTime()) for name in ("start", "end") if f":{name}" in text),
        *(sa.bindparam(name, type_=sa.Date()) for name in ("first_day", "after_day") if f":{name}" in text),
    )


PARAMETERS = {"currency": CURRENCY, "start": PERIOD_START, "end": PERIOD_END,
              "first_day": PERIOD_START.date(), "after_day": PERIOD_END.date()}
Numbers = dict[str, Any]


def _run(crm: CRM, *texts: str, **extra: Any) -> list[list[Any]]:
    with crm.backend.engine.connect() as connection:
        return [connection.execute(_query(text), {**PARAMETERS, **extra}).all() for text in texts]


def _divide(amount: Decimal, count: int) -> Decimal | None:
    return (amount / count).quantize(MONEY_QUANTUM) if count else None


def hand_funnel(crm: CRM, pipeline_id: str) -> Numbers:
    """Deals that reached each open stage (a running sum of the depth histogram from the
    stage's position on) and deals that entered the won and the lost stage."""
    stages, depths = _run(crm, HAND_STAGES, HAND_FUNNEL, pipeline=pipeline_id)
    entered = {"won": sum(int(won) for _, _, won, _ in depths), "lost": sum(int(lost) for _, _, _, lost in depths)}
    return {stage_id: sum(int(n) for depth, n, _, _ in depths if depth >= position) if outcome == "open" else entered[outcome]
            for stage_id, position, outcome in stages}


def metric_funnel(found: MetricResult) -> Numbers:
    return {row.key: row.sample_size for row in found.breakdown}


def hand_weighted(crm: CRM, pipeline_id: str) -> Numbers:
    [groups] = _run(crm, HAND_WEIGHTED, pipeline=pipeline_id)
    stages = {stage_id: ((money(raw) * Decimal(str(probability))).quantize(MONEY_QUANTUM), int(count))
              for stage_id, probability, count, raw in groups}
    return {"total": sum((value for value, _ in stages.values()), Decimal(0)), "stages": stages}


def metric_weighted(found: MetricResult) -> Numbers:
    return {"total": found.value, "stages": {row.key: (row.value, row.sample_size) for row in found.breakdown if row.sample_size}}


def hand_historical(crm: CRM) -> Numbers:
    [groups] = _run(crm, HAND_HISTORICAL)
    stages = {stage_id: ((money(raw) * (Decimal(won) / Decimal(closed))).quantize(MONEY_QUANTUM) if closed else None, int(count))
              for stage_id, raw, count, won, closed in groups}
    return {"total": sum((value or 0 for value, _ in stages.values()), Decimal(0)), "stages": stages}


def metric_historical(found: MetricResult) -> Numbers:
    return {"total": found.value, "stages": {row.key: (row.value, row.sample_size) for row in found.breakdown}}


def hand_cac(crm: CRM) -> Numbers:
    customers, spend = _run(crm, HAND_NEW_CUSTOMERS, HAND_SPEND)
    count = {channel: int(n) for channel, n in customers}
    spent = {channel: money(raw) for channel, raw in spend}
    channels = {key: (_divide(spent.get(key, Decimal(0)), count.get(key, 0)), count.get(key, 0)) for key in {*count, *spent}}
    return {"total": _divide(sum(spent.values(), Decimal(0)), sum(count.values())), "channels": channels}


def metric_cac(found: MetricResult) -> Numbers:
    return {"total": found.value, "channels": {row.key: (row.value, row.sample_size) for row in found.breakdown}}


# --- the run ------------------------------------------------------------------------------------


def _compare(name: str, crm: CRM, metric: Callable[[], MetricResult], convert: Callable[[MetricResult], Numbers],
             hand: Callable[[], Numbers], label: str, notes: str) -> dict[str, Any]:
    (ours, found), (baseline, expected) = best_of(REPEATS, metric, hand)
    if convert(found) != expected:
        raise AssertionError(f"{name}: the metric gave {convert(found)}, the hand-written SQL {expected}")
    return result(label, ours * 1e3, baseline * 1e3, "ms", f"best of {REPEATS}; {notes}")


def run(quick: bool, *, database: str | None = None, scale: float | None = None) -> list[dict[str, Any]]:
    """Generate the data set at ``scale`` (1 = a million deals; ``--quick`` 0.05), then time
    each metric against its hand-written SQL."""
    scale = scale if scale is not None else QUICK_SCALE if quick else 1.0
    deals = max(10, int(DEALS * scale))
    with scratch_database(database) as url, crmkit.open(url, migrate=True) as crm:
        generation, counts = timed(lambda: generate(crm, deals))
        pipeline_id = crm.pipelines.get(PIPELINE).id
        found = metrics(crm)
        size = f"{counts['deals']:,} deals / {counts['stage_changes']:,} stage changes"
        built = f"data ({size}, {counts['contacts']:,} contacts, {counts['campaigns']} campaigns) written in {generation:.0f} s"
        return [
            _compare("sales.funnel", crm, lambda: found.compute("sales.funnel"), metric_funnel,
                     lambda: hand_funnel(crm, pipeline_id), f"sales.funnel, {size}",
                     f"hand: one pass, per-deal depth and won/lost flags GROUP BY deal, then GROUP BY depth; {built}"),
            _compare("forecast.weighted_pipeline", crm, lambda: found.compute("forecast.weighted_pipeline"), metric_weighted,
                     lambda: hand_weighted(crm, pipeline_id), f"forecast.weighted_pipeline, {counts['deals']:,} deals",
                     "hand: one GROUP BY stage over open deals joined to stages"),
            _compare("forecast.historical", crm, lambda: found.compute("forecast.historical", period=PERIOD), metric_historical,
                     lambda: hand_historical(crm), f"forecast.historical --period {PERIOD}, {size}",
                     "hand: conversion from DISTINCT (deal, stage) visits of closed deals, joined to open deals per stage"),
            _compare("acquisition.cac", crm, lambda: found.compute("acquisition.cac", period=PERIOD, by="channel"), metric_cac,
                     lambda: hand_cac(crm), f"acquisition.cac --period {PERIOD} --by channel, {counts['deals']:,} deals",
                     "hand: first win per contact GROUP BY, joined to contacts per channel, + spend per channel"),
        ]
