"""What benchmark modules share: result rows, timing, and scratch databases."""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from crmkit.storage.sql.backend import normalize_url

T = TypeVar("T")
DEFAULT_DATABASE = "sqlite"


def result(name: str, figure: float, baseline: float, unit: str, notes: str = "") -> dict[str, Any]:
    """One row: ``figure`` for the path measured, ``baseline`` for the reference path, both in
    ``unit``; ``ratio`` = figure / baseline (above 1: the measured path costs that many times more)."""
    return {"name": name, "figure": figure, "baseline": baseline, "ratio": figure / baseline if baseline else None,
            "unit": unit, "notes": notes}


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``fn`` took, and its result."""
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def best_of(repeats: int, *fns: Callable[[], T]) -> list[tuple[float, T]]:
    """Run each of ``fns`` ``repeats`` times, interleaved (so drift in machine load hits all of
    them alike), and return for each its fastest time and its last result."""
    best = [float("inf")] * len(fns)
    last: list[Any] = [None] * len(fns)
    for _ in range(repeats):
        for index, fn in enumerate(fns):
            seconds, last[index] = timed(fn)
            best[index] = min(best[index], seconds)
    return list(zip(best, last, strict=True))


@contextlib.contextmanager
def scratch_database(url: str | None) -> Iterator[str]:
    """A fresh, empty database for one measurement, removed afterwards.

    ``None`` or ``sqlite`` means a file in a temporary directory. A PostgreSQL or MariaDB URL
    names the *server*: a database ``crmkit_bench_<random>`` is created there (the URL's own
    database is only used to connect) and dropped at the end, so a benchmark never writes into
    existing data.
    """
    if url in (None, DEFAULT_DATABASE):
        with tempfile.TemporaryDirectory(prefix="crmkit-bench-") as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    assert url is not None
    server = normalize_url(url)
    if server.get_backend_name() == "sqlite":
        raise SystemExit(f"--database {url}: give a server URL (PostgreSQL/MariaDB) or 'sqlite' for a scratch file")
    name = f"crmkit_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    charset = " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" if server.get_backend_name() in ("mysql", "mariadb") else ""
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}{charset}")
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            force = " WITH (FORCE)" if server.get_backend_name() == "postgresql" else ""
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
    finally:
        admin.dispose()


def backend_label(url: str | None) -> str:
    return DEFAULT_DATABASE if url in (None, DEFAULT_DATABASE) else normalize_url(str(url)).get_backend_name()
