"""Optimistic concurrency on SQLite, PostgreSQL and MariaDB: of two writers that read the same
version exactly one wins; SQLite queues concurrent writers instead of failing with
"database is locked"."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from crmkit.errors import ConflictError

STAGES = [("Lead", 0.1, "open"), ("Proposal", 0.5, "open"), ("Won", 1.0, "won"), ("Lost", 0.0, "lost")]


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together; return each one's result or exception."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as exc:  # the outcome under test
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def split(outcomes: list[Any]) -> tuple[list[Any], list[Exception]]:
    failures = [o for o in outcomes if isinstance(o, Exception)]
    return [o for o in outcomes if not isinstance(o, Exception)], failures


def test_two_writers_of_one_version_exactly_one_wins(database_url, crm_factory):
    # Two CRMs on one database: two processes as far as the database can tell.
    first, second = crm_factory(database_url), crm_factory(database_url)
    first.pipelines.create("Sales", STAGES)
    deal = first.deals.create({"title": "Race", "pipeline": "Sales", "amount": "100"})

    for round_ in range(4):
        version = second.deals.get(deal.id).version
        outcomes = race(
            partial(first.deals.update, deal.id, {"title": f"first {round_}"}, expected_version=version),
            partial(second.deals.update, deal.id, {"title": f"second {round_}"}, expected_version=version),
        )
        won, lost = split(outcomes)
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert isinstance(lost[0], ConflictError) and lost[0].expected_version == version
        stored = first.deals.get(deal.id)
        assert (stored.title, stored.version) == (won[0].title, version + 1)

    # Only the winners' events exist: one deal.updated per round.
    assert first.events.counts()["total"] == 2 + 4  # pipeline.created, deal.created, 4 updates


def test_concurrent_moves_of_one_deal_exactly_one_wins(database_url, crm_factory):
    first, second = crm_factory(database_url), crm_factory(database_url)
    first.pipelines.create("Sales", STAGES)
    deal = first.deals.create({"title": "Race", "pipeline": "Sales"})

    outcomes = race(
        lambda: first.deals.move(deal.id, "Proposal", expected_version=deal.version),
        lambda: second.deals.move(deal.id, "Won", expected_version=deal.version),
    )
    won, lost = split(outcomes)
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], ConflictError)
    moved, change = won[0]
    stored = first.deals.get(deal.id)
    assert (stored.stage_id, stored.version) == (change.to_stage_id, 2)
    history = first.deals.history(deal.id)
    assert [h.to_stage_id for h in history] == [deal.stage_id, change.to_stage_id]  # no trace of the loser

    # Without an expected version the loser still cannot overwrite the winner's move.
    outcomes = race(lambda: first.deals.move(deal.id, "Lost"), lambda: second.deals.move(deal.id, "Lead"))
    won, lost = split(outcomes)
    assert len(won) + len(lost) == 2 and len(won) >= 1
    final = first.deals.get(deal.id)
    assert final.version == 2 + len(won)
    assert len(first.deals.history(deal.id)) == 2 + len(won)
    assert final.stage_id == first.deals.history(deal.id)[-1].to_stage_id


def test_sqlite_queues_concurrent_writers(crm_factory, tmp_path):
    """4 threads × 50 write units of work (creates, and read-then-write updates) on two CRMs
    sharing one SQLite file: ``BEGIN IMMEDIATE`` plus the busy timeout make them wait their
    turn; a deferred transaction would fail its read-to-write upgrade with "database is locked"."""
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    crms = [crm_factory(url), crm_factory(url)]

    def writer(worker: int) -> int:
        crm = crms[worker % 2]
        contact = crm.contacts.create({"first_name": f"w{worker}"})
        for n in range(49):
            if n % 2:
                contact = crm.contacts.update(contact.id, {"last_name": f"n{n}"})
            else:
                crm.activities.log({"kind": "note", "contact_id": contact.id, "subject": f"{worker}/{n}"})
        return contact.version

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(writer, range(4)))

    assert versions == [25] * 4
    assert crms[0].contacts.count() == 4
    assert crms[1].activities.count() == 4 * 25
    counts = crms[0].events.counts()
    assert counts == {"total": 200, "pending": 0, "dispatched": 200}
