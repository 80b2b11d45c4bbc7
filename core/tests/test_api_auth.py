"""API keys and what they allow: created by ``crmkit api-keys`` (shown once, stored as a
hash), revocable and expiring; missing/invalid/expired/revoked keys are 401; roles and
integration scopes are 403 beyond their reach; keys are never listed nor logged; and
``crmkit serve`` serves the API over HTTP."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from crmkit.api import create_app
from crmkit.api.keys import ApiKeys, parse_expiry
from crmkit.api.testing import api_client
from crmkit.errors import ValidationFailed
from litestar.testing import TestClient


def api_keys_rows(crm) -> list[dict]:
    with crm.read() as uow:
        return [dict(row._mapping) for row in uow.connection.execute(sa.select(uow.table("api_keys")))]


def test_cli_creates_a_key_shown_once_and_stored_only_as_a_hash(cli, crm):
    created = cli.json("api-keys", "create", "--name", "Zapier", "--role", "admin")
    assert set(created) >= {"id", "key"} and created["key"].startswith(f"crmkit_{created['id']}_")
    secret = created["key"].split("_", 2)[2]

    rows = api_keys_rows(crm)
    assert len(rows) == 1
    assert created["key"] not in repr(rows) and secret not in repr(rows)
    assert rows[0]["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()

    with TestClient(create_app(crm)) as client:
        assert client.get("/contacts", headers={"Authorization": f"Bearer {created['key']}"}).status_code == 200

    listed = cli.json("api-keys", "list")
    assert [k["id"] for k in listed] == [created["id"]] and listed[0]["status"] == "active"
    assert "key" not in listed[0] and "secret_hash" not in listed[0] and secret not in cli("api-keys", "list").output
    human = cli("api-keys", "create", "--name", "Ops", "--role", "read_only")
    assert human.exit_code == 0 and "shown this once" in human.output


def test_cli_revokes_keys_and_sets_expiry(cli, crm):
    key = cli.json("api-keys", "create", "--name", "Old", "--role", "agent", "--expires-in", "30d")
    expires = datetime.fromisoformat(key["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    dated = cli.json("api-keys", "create", "--name", "Dated", "--role", "manager", "--expires-in", "2999-01-31")
    assert dated["expires_at"] == "2999-01-31T00:00:00+00:00"

    revoked = cli.json("api-keys", "revoke", key["id"])
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    with TestClient(create_app(crm)) as client:
        response = client.get("/contacts", headers={"Authorization": f"Bearer {key['key']}"})
    assert response.status_code == 401 and response.json()["error"]["message"] == "the API key has been revoked"

    for args, field in ((["--expires-in", "2001-01-01"], "expires"), (["--expires-in", "soon"], "expires"),
                        (["--role", "integration"], "scopes"), (["--role", "admin", "--scope", "contacts:write"], "scopes"),
                        (["--role", "integration", "--scope", "contacts:delete"], "scopes[0]"), (["--user", "nobody"], "user_id")):
        options = dict(zip(args[::2], args[1::2], strict=True))
        options.setdefault("--role", "agent")
        result = cli("api-keys", "create", "--name", "Bad", *[x for pair in options.items() for x in pair])
        assert result.exit_code == 1 and f"Error: {field}:" in result.stderr, (args, result.output)
    assert cli("api-keys", "create", "--name", "Bad", "--role", "king").exit_code == 2
    assert cli("api-keys", "revoke", "missing").exit_code == 1
    assert len(api_keys_rows(crm)) == 2


def test_expiry_forms():
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_expiry("12h", now=now) == now + timedelta(hours=12)
    assert parse_expiry(" 2w ", now=now) == now + timedelta(weeks=2)
    assert parse_expiry("2025-03-02T08:00:00+01:00", now=now) == datetime(2025, 3, 2, 7, 0, tzinfo=UTC)
    assert parse_expiry(None) is None and parse_expiry("") is None
    with pytest.raises(ValidationFailed, match="not in the future"):
        parse_expiry("2025-03-01", now=now)


def test_missing_invalid_expired_and_revoked_keys_are_401(crm):
    keys = ApiKeys(crm)
    good, token = keys.create("good", "admin")
    expiring, expiring_token = keys.create("expiring", "admin", expires="1h")
    revoked, revoked_token = keys.create("revoked", "admin")
    keys.revoke(revoked.id)
    with crm.uow() as uow:  # an hour passes
        table = uow.table("api_keys")
        uow.connection.execute(sa.update(table).where(table.c.id == expiring.id).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))

    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    unknown = f"crmkit_{'0' * 32}_{token.split('_', 2)[2]}"
    cases = {
        None: "send an API key", "Basic dXNlcjpwYXNz": "send an API key", "Bearer ": "send an API key",
        "Bearer not-a-key": "not valid", f"Bearer {forged}": "not valid", f"Bearer {unknown}": "not valid",
        f"Bearer {expiring_token}": "has expired", f"Bearer {revoked_token}": "has been revoked",
    }
    with TestClient(create_app(crm)) as client:
        for header, message in cases.items():
            response = client.get("/contacts", headers={"Authorization": header} if header else {})
            assert response.status_code == 401, header
            assert response.headers["www-authenticate"].startswith("Bearer")
            error = response.json()["error"]
            assert error["code"] == "unauthorized" and message in error["message"]
            assert token not in response.text
        assert client.get("/contacts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/contacts", headers={"Authorization": f"bearer {token}"}).status_code == 200
        # The documentation is public.
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


def test_roles_and_scopes(crm):
    contact = crm.contacts.create({"email": "ada@example.com"})
    app = create_app(crm)

    def status(client, method: str, url: str, **kwargs) -> int:
        return client.request(method, url, **kwargs).status_code

    with api_client(crm, "read_only", app=app) as reader:
        assert status(reader, "GET", "/contacts") == 200 and status(reader, "GET", f"/contacts/{contact.id}") == 200
        assert status(reader, "POST", "/contacts", json={"email": "b@example.com"}) == 403
        assert status(reader, "PATCH", f"/contacts/{contact.id}", json={"first_name": "X"}) == 403
        assert status(reader, "DELETE", f"/contacts/{contact.id}") == 403
        assert status(reader, "GET", "/api-keys") == 403
        forbidden = reader.post("/contacts", json={"email": "b@example.com"}).json()["error"]
        assert forbidden == {"code": "forbidden", "message": "this API key (role read_only) does not have the scope contacts:write", "issues": []}

    with api_client(crm, "integration", scopes=["contacts:write"], app=app) as form:
        assert status(form, "POST", "/contacts", json={"email": "lead@example.com"}) == 201
        assert status(form, "GET", "/contacts") == 403 and status(form, "GET", f"/contacts/{contact.id}") == 403
        assert status(form, "POST", "/deals", json={"title": "x", "pipeline": "p"}) == 403

    with api_client(crm, "agent", app=app) as agent:
        assert status(agent, "PATCH", f"/contacts/{contact.id}", json={"first_name": "Ada"}) == 200
        assert status(agent, "POST", "/campaigns", json={"name": "Spring"}) == 403
        assert status(agent, "GET", "/campaigns") == 200

    with api_client(crm, "manager", app=app) as manager:
        assert status(manager, "POST", "/campaigns", json={"name": "Spring"}) == 201
        assert status(manager, "POST", "/users", json={"email": "eve@example.com"}) == 403
        assert status(manager, "POST", "/api-keys", json={"name": "x", "role": "admin"}) == 403

    with api_client(crm, "admin", app=app) as admin:
        created = admin.post("/api-keys", json={"name": "Form", "role": "integration", "scopes": ["contacts:write"], "expires": "7d"})
        assert created.status_code == 201 and created.json()["key"].startswith("crmkit_")
        key_id = created.json()["id"]
        listed = admin.get("/api-keys").json()["data"]
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        assert created.json()["key"] not in admin.get(f"/api-keys/{key_id}").text
        assert admin.post(f"/api-keys/{key_id}/revoke").json()["status"] == "revoked"
        assert admin.post("/api-keys", json={"name": "x", "role": "integration"}).json()["error"]["issues"][0]["field"] == "scopes"
        assert status(admin, "POST", "/users", json={"email": "eve@example.com"}) == 201


def test_keys_are_never_logged(crm, caplog):
    caplog.set_level(logging.DEBUG)
    with api_client(crm) as client:
        client.get("/contacts")
        client.post("/contacts", json={"email": "bad"})
        client.get("/contacts", headers={"Authorization": f"Bearer {client.token}x"})
        client.get("/contacts/nobody")
        token = client.token
    assert caplog.records and token not in caplog.text and token.split("_", 2)[2] not in caplog.text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_crmkit_serve_serves_the_api_over_http(cli, crm):
    key = cli.json("api-keys", "create", "--name", "curl", "--role", "admin")["key"]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "crmkit", "--database", crm.config.database_url, "serve", "--port", str(port), "--log-level", "info"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "CRMKIT_CONFIG": ""},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "crmkit serve did not start"
            time.sleep(0.1)
        created = httpx.post(f"{base}/contacts", json={"email": "ada@example.com"}, headers={"Authorization": f"Bearer {key}"})
        assert created.status_code == 201
        assert crm.contacts.get(created.json()["id"]).email == "ada@example.com"
        assert httpx.get(f"{base}/contacts").status_code == 401
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "POST /contacts" in output and key not in output and key.split("_", 2)[2] not in output
