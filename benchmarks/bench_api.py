"""HTTP API benchmarks: contact create and list through ``crmkit serve`` against a bare Litestar
app over the same database, with 1,000,000 contacts stored (20,000 with ``--quick``).

Both apps run in their own uvicorn process (one worker each), one after the other, and are
driven by the same client code in this process: ``CONCURRENCY`` threads with one keep-alive
``httpx`` connection each. The baseline (``benchmarks/bare_api.py``) serves the same page of
contacts with one hand-written keyset query and inserts a posted contact with one hand-written
INSERT — no authentication, validation, matching, events, audit or idempotency — so
``ratio`` (crmkit's time per request over the bare app's, i.e. bare rps / crmkit rps) is what
crmkit's API adds over the bare web stack and database.

Figures:
- requests per second for ``POST /contacts`` (new contacts through the intake pipeline) and for
  ``GET /contacts`` (pages of 50 rows, walking ``next_cursor`` deep into the collection);
- list latency p50/p95 for a mix a front end sends: first pages, deep pages (cursor walks),
  lookups by an indexed filter (``email=``), and an agent's list, which carries the record-level
  condition (its own and its team's contacts).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import crmkit
import httpx
import sqlalchemy as sa
from crmkit.domain import Contact
from crmkit.storage.sql.mapping import to_row

from benchmarks.harness import backend_label, result, scratch_database, timed

CONTACTS = {True: 20_000, False: 1_000_000}
REQUESTS = {True: 400, False: 2_000}
LATENCY_SAMPLES = {True: 200, False: 600}
CONCURRENCY = 8
CHUNK = 20_000
TEAMS, USERS_PER_TEAM = 10, 10
ROOT = Path(__file__).resolve().parent.parent


def seed(crm: Any, count: int) -> tuple[list[str], str]:
    """``count`` contacts owned round-robin by 100 agents in 10 teams, written with Core
    ``executemany`` (seeding is not what is measured). Returns the owners' ids and the id of
    an agent whose key lists its team's contacts."""
    owners = []
    for team_number in range(TEAMS):
        team = crm.teams.create({"name": f"Team {team_number}"})
        for member in range(USERS_PER_TEAM):
            user = crm.users.create({"email": f"agent{team_number}.{member}@example.com", "name": f"Agent {member}",
                                     "role": "agent", "team_id": team.id})
            owners.append(user.id)
    table = crm.backend.metadata.tables["contacts"]
    with crm.backend.engine.begin() as connection:
        for start in range(0, count, CHUNK):
            rows = [to_row(Contact(first_name=f"First{i % 997}", last_name=f"Last{i % 1009}", email=f"person{i}@example.com",
                                   phone=f"+1415555{i % 10_000:04d}", owner_id=owners[i % len(owners)]))
                    for i in range(start, min(count, start + CHUNK))]
            connection.execute(sa.insert(table), rows)
    return owners, owners[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def served(command: list[str], env: dict[str, str], ready_path: str) -> Iterator[str]:
    """Run a uvicorn server process; yield its base URL once ``ready_path`` answers."""
    port = free_port()
    process = subprocess.Popen([*command, "--port", str(port)], env={**os.environ, **env}, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + ready_path, timeout=2).status_code < 500:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer {ready_path} in 120 s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def rps(base: str, headers: dict[str, str], requests: list[Callable[[httpx.Client], httpx.Response]]) -> float:
    """Requests per second for ``requests`` sent by ``CONCURRENCY`` threads over keep-alive
    connections; every response must be a success."""
    slices = [requests[i::CONCURRENCY] for i in range(CONCURRENCY)]

    def work(batch: list[Callable[[httpx.Client], httpx.Response]]) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            for send in batch:
                response = send(client)
                if response.status_code >= 300:
                    raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:300]}")

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        took, _ = timed(lambda: list(pool.map(work, slices)))
    return len(requests) / took


def latencies(base: str, headers: dict[str, str], requests: list[Callable[[httpx.Client], httpx.Response]]) -> list[float]:
    """Seconds per request, one request at a time."""
    seconds = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for send in requests:
            began = time.perf_counter()
            response = send(client)
            seconds.append(time.perf_counter() - began)
            if response.status_code >= 300:
                raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return seconds


def cursors(base: str, headers: dict[str, str], pages: int, params: dict[str, str] | None = None) -> list[str | None]:
    """The cursors of the first ``pages`` pages of crmkit's contact list."""
    found: list[str | None] = [None]
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        while len(found) < pages:
            page = client.get("/contacts", params={**(params or {}), **({"cursor": found[-1]} if found[-1] else {})}).json()
            if not page["next_cursor"]:
                break
            found.append(page["next_cursor"])
    return found


def bare_cursors(base: str, pages: int) -> list[dict[str, str]]:
    found: list[dict[str, str]] = [{}]
    with httpx.Client(base_url=base, timeout=60) as client:
        while len(found) < pages:
            data = client.get("/contacts", params=found[-1]).json()["data"]
            found.append({"after_at": data[-1]["created_at"], "after_id": data[-1]["id"]})
    return found


def p(values: list[float], quantile: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(quantile * 100) - 1]


def page(cursor: str | None, params: dict[str, str] | None = None,
         headers: dict[str, str] | None = None) -> Callable[[httpx.Client], httpx.Response]:
    """A request for one page of crmkit's contact list."""
    query = {**(params or {}), **({"cursor": cursor} if cursor else {})}
    return lambda client: client.get("/contacts", params=query, headers=headers)


def new_contact(serial: int) -> dict[str, Any]:
    return {"first_name": "New", "last_name": f"Person{serial}", "email": f"new{serial}-{os.getpid()}@example.org"}


def run(quick: bool, *, database: str | None = None) -> list[dict[str, Any]]:
    count, n = CONTACTS[quick], REQUESTS[quick]
    label = backend_label(database)
    rows = []
    with scratch_database(database) as url, tempfile.TemporaryDirectory(prefix="crmkit-bench-api-") as scratch:
        with crmkit.open(url, migrate=True) as crm:
            seeded, _ = timed(lambda: seed(crm, count))
            from crmkit.api.keys import ApiKeys

            owners = [user.id for user in crm.users.list(limit=None)]
            _, admin_token = ApiKeys(crm).create("bench admin", "admin")
            _, agent_token = ApiKeys(crm).create("bench agent", "agent", user_id=owners[0])
        env = {"CRMKIT_BENCH_URL": url}
        uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
        config = Path(scratch) / "crmkit.toml"
        # The API's per-key rate limit (1,200/minute by default) would measure the limiter, not the API.
        config.write_text('[plugins.api]\nrate_limit = "off"\npublic_rate_limit = "off"\n')
        crmkit_server = [sys.executable, "-m", "crmkit", "--database", url, "--config", str(config), "serve",
                         "--log-level", "warning"]
        admin = {"Authorization": f"Bearer {admin_token}"}
        agent = {"Authorization": f"Bearer {agent_token}"}
        sample = random.Random(7)
        figures: dict[str, float] = {}

        with served([*uvicorn, "--factory", "benchmarks.bare_api:create"], env, "/hello") as base:
            walk = bare_cursors(base, 60)
            figures["bare_list"] = rps(base, {}, [lambda c, q=q: c.get("/contacts", params=q) for q in (walk * n)[:n]])
            figures["bare_create"] = rps(base, {}, [lambda c, i=i: c.post("/contacts", json=new_contact(i)) for i in range(n)])
            figures["bare_hello"] = rps(base, {}, [lambda c: c.get("/hello")] * n)
            bare_seconds = latencies(base, {}, [lambda c, q=q: c.get("/contacts", params=q)
                                                for q in (walk * LATENCY_SAMPLES[quick])[:LATENCY_SAMPLES[quick]]])

        with served(crmkit_server, {}, "/openapi.json") as base:
            walk_cursors = cursors(base, admin, 60)
            figures["list"] = rps(base, admin, [page(k) for k in (walk_cursors * n)[:n]])
            figures["create"] = rps(base, admin, [lambda c, i=i: c.post("/contacts", json=new_contact(n + i)) for i in range(n)])
            agent_cursors = cursors(base, agent, 20)
            mix: list[Callable[[httpx.Client], httpx.Response]] = []
            for index in range(LATENCY_SAMPLES[quick]):
                kind = index % 4
                if kind == 0:
                    mix.append(page(sample.choice(walk_cursors)))
                elif kind == 1:
                    mix.append(page(None, {"email": f"person{sample.randrange(count)}@example.com"}))
                elif kind == 2:
                    mix.append(page(None))
                else:
                    mix.append(page(sample.choice(agent_cursors), headers=agent))
            seconds = latencies(base, admin, mix)

    scale = f"{count:,} contacts on {label}, {CONCURRENCY} client threads, one uvicorn worker each"
    rows.append(result(f"{label}: GET /contacts throughput (pages of 50, cursor walk)", 1e3 / figures["list"],
                       1e3 / figures["bare_list"], "ms/request", f"crmkit {figures['list']:,.0f} rps, bare Litestar + hand SQL "
                       f"{figures['bare_list']:,.0f} rps, bare hello {figures['bare_hello']:,.0f} rps; {scale}"))
    rows.append(result(f"{label}: POST /contacts throughput", 1e3 / figures["create"], 1e3 / figures["bare_create"],
                       "ms/request",
                       f"crmkit {figures['create']:,.0f} rps (intake: validate, match, insert, outbox, audit), bare INSERT "
                       f"{figures['bare_create']:,.0f} rps; {scale}"))
    rows.append(result(f"{label}: GET /contacts p95 latency (mix)", p(seconds, 0.95) * 1e3, p(bare_seconds, 0.95) * 1e3, "ms",
                       f"crmkit p50 {p(seconds, 0.5) * 1e3:.1f} ms, p95 {p(seconds, 0.95) * 1e3:.1f} ms over {len(seconds)} requests "
                       f"(first pages, deep cursor pages, email lookups, an agent's team-scoped pages); bare p95 "
                       f"{p(bare_seconds, 0.95) * 1e3:.1f} ms; seeding took {seeded:.0f} s"))
    return rows
