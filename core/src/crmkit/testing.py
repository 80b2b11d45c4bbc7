"""crmkit's pytest plugin (registered under ``pytest11``): fixtures for crmkit users and
plugin authors.

Fixtures
--------
``crm``
    A migrated CRM on a fresh SQLite file in ``tmp_path``.
``crm_factory``
    ``crm_factory(url=None, plugins=(), **open_kwargs)`` opens more CRMs (closed at teardown);
    plugins passed here are registered for that CRM only.
``database_url``
    Parametrised over ``sqlite``, ``postgresql`` and ``mariadb``: a URL to a fresh, empty
    database (a new database per test on the servers, dropped afterwards). Servers are found
    through ``CRMKIT_TEST_POSTGRESQL_URL`` / ``CRMKIT_TEST_MARIADB_URL`` (defaults: the local
    servers). An unreachable server skips the test with the reason — except with ``CI=true``,
    where it fails: CI must prove every backend.
``any_crm``
    A migrated CRM on each of those databases.
``events``
    A list that receives every event dispatched by CRMs opened through ``crm``/``crm_factory``.
``cli``
    ``cli(*args, input=None)`` runs the ``crmkit`` command line against the ``crm`` fixture's
    database and returns click's ``Result``; ``cli.json(*args)`` parses its JSON output.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crmkit.plugins import hookimpl

SERVER_DEFAULTS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
BACKENDS = ("sqlite", "postgresql", "mariadb")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def server_url(kind: str) -> str:
    return os.environ.get(f"CRMKIT_TEST_{kind.upper()}_URL", SERVER_DEFAULTS[kind])


class EventRecorder:
    """A plugin that records every event it is handed, in order."""

    crmkit_plugin_name = "crmkit-test-event-recorder"

    def __init__(self) -> None:
        self.events: list[Any] = []

    @hookimpl
    def crmkit_handle_event(self, event: Any) -> None:
        self.events.append(event)

    def types(self) -> list[str]:
        return [e.type for e in self.events]


def create_server_database(kind: str) -> tuple[str, Callable[[], None]]:
    """Create a fresh database on the ``kind`` server; return its URL and a dropper."""
    import sqlalchemy as sa

    base = sa.engine.make_url(server_url(kind))
    name = f"crmkit_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}" + (" CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" if kind == "mariadb" else ""))
    except Exception as exc:
        admin.dispose()
        message = f"{kind} server at {base.render_as_string(hide_password=True)} is not usable: {type(exc).__name__}: {exc}"
        if in_ci():
            pytest.fail(f"CI=true requires every database backend; {message}")
        pytest.skip(message)

    def drop() -> None:
        with admin.connect() as conn:
            if kind == "postgresql":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'crm.db'}"
        return
    url, drop = create_server_database(kind)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def events() -> EventRecorder:
    return EventRecorder()


@pytest.fixture
def crm_factory(tmp_path: Any, events: EventRecorder) -> Iterator[Callable[..., Any]]:
    import crmkit

    opened: list[Any] = []

    def factory(url: str | None = None, plugins: tuple[object, ...] | list[object] = (), **kwargs: Any) -> Any:
        kwargs.setdefault("migrate", True)
        target = url or f"sqlite:///{tmp_path / f'crm-{len(opened)}.db'}"
        crm = crmkit.open(target, plugins=[events, *plugins], **kwargs)
        opened.append(crm)
        return crm

    yield factory
    for crm in opened:
        crm.close()


@pytest.fixture
def crm(crm_factory: Callable[..., Any]) -> Any:
    return crm_factory()


@pytest.fixture
def any_crm(crm_factory: Callable[..., Any], database_url: str) -> Any:
    return crm_factory(database_url)


class CliRunner:
    def __init__(self, database_url: str):
        from click.testing import CliRunner as ClickRunner

        self.database_url = database_url
        self.runner = ClickRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        from crmkit.cli import build_cli

        return self.runner.invoke(build_cli(), ["--database", self.database_url, *args], input=input, env=env, catch_exceptions=False)

    def json(self, *args: str, input: str | None = None) -> Any:
        result = self(*args, "--json", input=input)
        assert result.exit_code == 0, f"crmkit {' '.join(args)} failed ({result.exit_code}): {result.output}"
        return json.loads(result.stdout)


@pytest.fixture
def cli(crm: Any) -> CliRunner:
    return CliRunner(crm.config.database_url)
