"""The ``crmkit`` command line.

The root group is built per invocation by :func:`build_cli`: every command — the core's own
included (:mod:`crmkit.cli.core_commands`) — is contributed through the
``crmkit_register_commands`` hook, so plugins extend the CLI exactly as the core does.

Exit status: 0 success, 1 rejected input or a failed operation (nothing written), 2 usage error.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from crmkit.errors import ConfigError, ConflictError, CRMError, NotFound, PluginError, ValidationFailed

F = TypeVar("F", bound=Callable[..., Any])


class CliContext:
    """What commands share: the global options and a lazily opened CRM."""

    def __init__(self, database: str | None, config: str | None, plugins: Iterable[object] = ()):
        self.database = database
        self.config_path = config
        self.extra_plugins = list(plugins)
        self._crm: Any = None

    def load_config(self) -> Any:
        from crmkit.config import load_config

        return load_config(self.config_path, database_url=self.database)

    def crm(self, *, migrate: bool = False, check_schema: bool = True) -> Any:
        """Open (once) the CRM the options point at."""
        if self._crm is None:
            import crmkit

            self._crm = crmkit.open(self.load_config(), plugins=self.extra_plugins, migrate=migrate, check_schema=check_schema)
        return self._crm

    def close(self) -> None:
        if self._crm is not None:
            self._crm.close()
            self._crm = None


def database_options(fn: F) -> F:
    """``--database`` and ``--config`` on a leaf command too, so both
    ``crmkit --database URL contacts list`` and ``crmkit contacts list --database URL`` work."""

    @click.option("--database", "database_opt", envvar=None, default=None, metavar="URL", help="Database URL (overrides the config).")
    @click.option("--config", "config_opt", default=None, metavar="FILE", help="Path to crmkit.toml.")
    @functools.wraps(fn)
    def wrapper(*args: Any, database_opt: str | None = None, config_opt: str | None = None, **kwargs: Any) -> Any:
        obj = click.get_current_context().find_object(CliContext)
        if obj is not None:
            if database_opt:
                obj.database = database_opt
            if config_opt:
                obj.config_path = config_opt
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def pass_crm(fn: F) -> F:
    """Decorator for commands that need the CRM: passes it as the first argument and turns
    crmkit errors into clear messages and exit codes."""

    @database_options
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        obj = click.get_current_context().find_object(CliContext)
        assert obj is not None, "crmkit commands run under the crmkit root group"
        return fn(obj.crm(), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def fail(message: str, code: int = 1) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


class CrmkitGroup(click.Group):
    """The root group: maps crmkit errors to messages and exit codes in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ValidationFailed as exc:
            for issue in exc.issues:
                click.echo(f"Error: {issue.field}: {issue.message} [{issue.code}]", err=True)
            ctx.exit(1)
        except (NotFound, ConflictError) as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        except (ConfigError, PluginError, CRMError) as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)
        finally:
            obj = ctx.find_object(CliContext)
            if obj is not None:
                obj.close()


def build_cli(plugins: Iterable[object] = ()) -> click.Group:
    """Build the root command with every plugin's commands.

    :param plugins: extra plugin objects (as for :func:`crmkit.open`); their commands are added
        and the CRM opened by commands includes them.
    """
    from crmkit import __version__
    from crmkit.config import load_config
    from crmkit.plugins import Registry, make_plugin_manager

    extra = list(plugins)

    @click.group(cls=CrmkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--database", default=None, envvar="CRMKIT_DATABASE_URL", metavar="URL", help="Database URL, e.g. sqlite:///crm.db or postgresql://host/db.")
    @click.option("--config", default=None, envvar="CRMKIT_CONFIG", metavar="FILE", help="Path to crmkit.toml (default: ./crmkit.toml).")
    @click.version_option(__version__, prog_name="crmkit")
    @click.pass_context
    def root(ctx: click.Context, database: str | None, config: str | None) -> None:
        """crmkit: a plugin-based, headless CRM."""
        ctx.obj = CliContext(database, config, extra)

    # Which plugins contribute commands depends on the configuration's allow/deny lists; a
    # broken config must still leave `crmkit --help` and `crmkit init` usable.
    try:
        config = load_config()
        enabled, disabled = config.enabled_plugins, config.disabled_plugins
    except ConfigError:
        enabled, disabled = None, []
    manager = make_plugin_manager(enabled=enabled, disabled=disabled, extra_plugins=extra)
    commands: Registry[click.Command] = manager.collect("crmkit_register_commands", Registry("command", key=lambda c: c.name))
    for _name, command in commands.items():
        root.add_command(command)
    return root


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli = build_cli()
    except PluginError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    cli.main(args=argv, prog_name="crmkit")
