"""``crmkit serve`` (the HTTP API under uvicorn) and ``crmkit api-keys`` (its credentials).

A built-in plugin: both are contributed through ``crmkit_register_commands``. The web stack is
imported only when a command runs, so the rest of the CLI starts without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from crmkit.cli import pass_crm
from crmkit.cli.output import emit, json_option, print_json, print_table, say
from crmkit.plugins import hookimpl

ROLES = ("admin", "manager", "agent", "read_only", "integration")
KEY_COLUMNS = (
    ("id", lambda k: k.id), ("name", lambda k: k.name), ("role", lambda k: k.role.value), ("scopes", lambda k: k.scopes),
    ("user", lambda k: k.user_id), ("created", lambda k: k.created_at), ("expires", lambda k: k.expires_at),
    ("status", lambda k: k.status),
)


def serve_command() -> click.Command:
    @click.command("serve")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for all).")
    @click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
    @click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
                  show_default=True, help="uvicorn's log level (request lines never include headers, so never keys).")
    @pass_crm
    def serve(crm: Any, host: str, port: int, log_level: str) -> None:
        """Serve the HTTP API of the CRM (docs at /docs, OpenAPI at /openapi.json)."""
        import uvicorn

        from crmkit.api import create_app

        app = create_app(crm)
        say(f"crmkit API for {crm.backend.url.render_as_string(hide_password=True)} on http://{host}:{port} "
            "(docs: /docs, schema: /openapi.json)")
        uvicorn.run(app, host=host, port=port, log_level=log_level)

    return serve


def api_keys_group() -> click.Group:
    @click.group("api-keys")
    def api_keys() -> None:
        """Credentials for the HTTP API: create, list, revoke."""

    @api_keys.command("create")
    @click.option("--name", required=True, help="Who or what uses the key.")
    @click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
    @click.option("--scope", "scopes", multiple=True, metavar="FAMILY:ACTION",
                  help="For --role integration: a scope such as contacts:write (repeat for several).")
    @click.option("--expires-in", "expires", default=None, metavar="WHEN",
                  help="Expiry: a duration (30d, 12h, 2w, 90m) or an ISO date / date-time. Default: never.")
    @click.option("--user", "user_id", default=None, metavar="ID", help="The user the key acts for (recorded on its changes).")
    @json_option
    @pass_crm
    def create(crm: Any, name: str, role: str, scopes: tuple[str, ...], expires: str | None, user_id: str | None,
               as_json: bool) -> None:
        """Create an API key. The key is printed once: only its hash is stored."""
        from crmkit.api.keys import ApiKeys
        from crmkit.serialize import to_jsonable

        key, secret = ApiKeys(crm).create(name, role, scopes=scopes, expires=expires, user_id=user_id)
        if as_json:
            print_json({**to_jsonable(key), "status": key.status, "key": secret})
            return
        say(f"API key {key.id} ({key.role.value}) created for {key.name!r}.")
        click.echo(f"Key (shown this once; send it as 'Authorization: Bearer <key>'):\n{secret}")

    @api_keys.command("list")
    @json_option
    @pass_crm
    def list_keys(crm: Any, as_json: bool) -> None:
        """List API keys (never their secrets)."""
        from crmkit.api.keys import ApiKeys
        from crmkit.serialize import to_jsonable

        keys = ApiKeys(crm).list()
        emit(as_json, [{**to_jsonable(k), "status": k.status} for k in keys], lambda: print_table("API keys", keys, KEY_COLUMNS))

    @api_keys.command("revoke")
    @click.argument("key_id", metavar="ID")
    @json_option
    @pass_crm
    def revoke(crm: Any, key_id: str, as_json: bool) -> None:
        """Revoke the API key ID for good; requests with it get 401 from then on."""
        from crmkit.api.keys import ApiKeys
        from crmkit.serialize import to_jsonable

        key = ApiKeys(crm).revoke(key_id)
        emit(as_json, {**to_jsonable(key), "status": key.status}, lambda: say(f"Revoked API key {key.id} ({key.name})"))

    return api_keys


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    from crmkit.api.ratelimit import SECTION, ApiSettings  # no web stack: only the settings' class

    register(SECTION, ApiSettings)


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(serve_command())
    register(api_keys_group())
