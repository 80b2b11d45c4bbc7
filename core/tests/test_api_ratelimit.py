"""Rate limits: per API key on authenticated endpoints and per client address on public ones,
429 in the API's error shape with ``Retry-After``, limits that refill, configured in
``[plugins.api]`` and documented in OpenAPI."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import crmkit
import httpx
import pytest
import uvicorn
from crmkit.api import create_app
from crmkit.api.auth import PUBLIC
from crmkit.api.errors import ERROR_SCHEMA
from crmkit.api.ratelimit import ApiSettings, Rate, RateLimits, TokenBuckets
from crmkit.api.testing import api_client
from crmkit.errors import ConfigError
from jsonschema_rs import validator_for
from litestar import get
from litestar.testing import TestClient


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class PublicRoute:
    """A plugin with a public endpoint (like an unsubscribe link or a provider callback)."""

    crmkit_plugin_name = "public-ping"

    @crmkit.hookimpl
    def crmkit_register_routes(self, register: Any) -> None:
        @get("/ping", opt={PUBLIC: True}, sync_to_thread=False)
        def ping() -> dict[str, str]:
            return {"pong": "yes"}

        register(ping)


def assert_limited(response: Any, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == str(retry_after)
    body = response.json()
    validator_for(ERROR_SCHEMA).validate(body)
    assert body["error"]["code"] == "rate_limited" and "retry in" in body["error"]["message"]


def test_a_key_over_its_limit_gets_429_other_keys_do_not_and_the_limit_refills(crm):
    clock = Clock()
    app = create_app(crm, rate_limits=RateLimits.of("3/minute", "off", clock))
    with api_client(crm, app=app) as first, api_client(crm, "read_only", app=app) as second:
        assert [first.get("/contacts").status_code for _ in range(3)] == [200, 200, 200]
        assert_limited(first.get("/contacts"), 20)  # one request comes back every 20 s
        # Every endpoint spends the same allowance, and a refused request spends nothing.
        assert first.post("/contacts", json={"email": "ada@example.com"}).status_code == 429
        assert crm.contacts.list() == []
        # Another key is unaffected.
        assert [second.get("/contacts").status_code for _ in range(3)] == [200, 200, 200]

        clock.now += 19.0
        assert_limited(first.get("/contacts"), 1)
        clock.now += 1.0
        assert first.get("/contacts").status_code == 200
        assert first.get("/contacts").status_code == 429
        clock.now += 3600  # a long pause refills the whole allowance, no more
        assert [first.get("/contacts").status_code for _ in range(4)] == [200, 200, 200, 429]


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(app)``: the app under uvicorn on 127.0.0.1 (a real server, so client addresses are
    real: 127.0.0.1 and 127.0.0.2 are two clients); returns its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(app: Any) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_public_endpoints_are_limited_per_client_address(crm_factory, serve):
    crm = crm_factory(plugins=[PublicRoute()])
    clock = Clock()
    url = serve(create_app(crm, rate_limits=RateLimits.of("off", "2/second", clock)))
    with client_from("127.0.0.1") as here, client_from("127.0.0.2") as there:
        assert [here.get(f"{url}/ping").status_code for _ in range(2)] == [200, 200]
        assert_limited(here.get(f"{url}/ping"), 1)
        assert here.get(f"{url}/openapi.json").status_code == 429  # the documentation is public too
        # Another address has its own allowance.
        assert [there.get(f"{url}/ping").status_code for _ in range(3)] == [200, 200, 429]
        clock.now += 0.5  # half a second gives one request back
        assert [here.get(f"{url}/ping").status_code for _ in range(2)] == [200, 429]


def test_unauthenticated_requests_to_private_endpoints_are_401_before_any_counting(crm):
    app = create_app(crm, rate_limits=RateLimits.of("1/minute", "1/minute", Clock()))
    with TestClient(app) as anonymous:
        assert [anonymous.get("/contacts").status_code for _ in range(3)] == [401, 401, 401]
    with api_client(crm, app=app) as client:
        assert [client.get("/contacts").status_code for _ in range(2)] == [200, 429]


def test_limits_come_from_crmkit_toml_and_a_bad_rate_fails_the_open(crm_factory, tmp_path):
    config = tmp_path / "crmkit.toml"
    config.write_text(f'[crmkit]\ndatabase = "sqlite:///{tmp_path / "a.db"}"\n[plugins.api]\nrate_limit = "2/hour"\npublic_rate_limit = "off"\n')
    crm = crm_factory(str(config))
    assert crm.settings_for("api") == ApiSettings(rate_limit="2/hour", public_rate_limit="off")
    with api_client(crm) as client:
        assert [client.get("/contacts").status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/contacts").headers["Retry-After"] == "1800"

    config.write_text(f'[crmkit]\ndatabase = "sqlite:///{tmp_path / "b.db"}"\n[plugins.api]\nrate_limit = "lots"\n')
    # (crmkit.config shows a settings validator's failure as "invalid value" without its message.)
    with pytest.raises(ConfigError, match=r"invalid value @ \[plugins\.api\]"):
        crm_factory(str(config))


def test_the_defaults_are_generous_and_the_parser_reads_every_unit():
    defaults = ApiSettings()
    assert Rate.parse(defaults.rate_limit) == Rate(1200, 60.0) and Rate.parse(defaults.public_rate_limit) == Rate(300, 60.0)
    assert [Rate.parse(text) for text in ("5/second", "5 / Minutes", "5/hour", "5/day")] == [
        Rate(5, 1.0), Rate(5, 60.0), Rate(5, 3600.0), Rate(5, 86400.0)]
    assert Rate.parse("off") is None and str(Rate(600, 60.0)) == "600/minute"
    for bad in ("600", "0/minute", "-1/minute", "600/fortnight", ""):
        with pytest.raises(ValueError, match="is not a rate"):
            Rate.parse(bad)


def test_idle_buckets_are_forgotten_once_there_are_many(monkeypatch):
    from crmkit.api import ratelimit

    monkeypatch.setattr(ratelimit, "MAX_IDLE_BUCKETS", 10)
    clock = Clock()
    buckets = TokenBuckets(Rate(1, 1.0), clock)
    for n in range(10):
        assert buckets.take(f"ip-{n}") == 0.0
    clock.now += 2.0
    assert buckets.take("busy") == 0.0
    assert buckets.take("busy") > 0.0
    assert buckets.take("late") == 0.0  # the 12th bucket: the ten idle ones go, the busy one stays
    assert set(buckets._buckets) == {"busy", "late"}


def test_429_is_documented_on_every_operation(crm):
    with api_client(crm) as client:
        document = client.get("/openapi.json").json()
    response = document["components"]["responses"]["TooManyRequests"]
    assert "Retry-After" in response["headers"] and response["content"]["application/json"]["schema"] == ERROR_SCHEMA
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"]["429"] == {"$ref": "#/components/responses/TooManyRequests"}, (method, path)
