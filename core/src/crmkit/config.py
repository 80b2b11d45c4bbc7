"""Configuration: ``crmkit.toml`` plus environment overrides.

Precedence, highest first: explicit arguments (``--database``), environment
(``CRMKIT_DATABASE_URL``, ``CRMKIT_CONFIG``, ``CRMKIT_DISABLE_PLUGINS``), the file, defaults.
``${VAR}`` anywhere in a string value is replaced from the environment so secrets stay out of
the file; a missing variable is an error naming it (never an empty password).
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from crmkit.errors import ConfigError

CONFIG_FILENAME = "crmkit.toml"
CORE_KEYS = ("database", "default_currency", "default_region")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@attrs.define(kw_only=True)
class Config:
    database_url: str = "sqlite:///crm.db"
    default_region: str | None = None
    default_currency: str = "USD"
    enabled_plugins: list[str] | None = None
    disabled_plugins: list[str] = attrs.field(factory=list)
    plugin_sections: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    path: Path | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()


def _expand(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return environ[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", environ) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}", environ) for k, v in value.items()}
    return value


def _table(raw: Mapping[str, Any], section: str, where: str) -> dict[str, Any]:
    value = raw.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{section}] must be a table, got {type(value).__name__} {value!r}")
    return dict(value)


def _names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of plugin names, got {value!r}")
    return list(value)


def _region(value: str, where: str) -> str:
    import phonenumbers

    region = value.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{where}: {value!r} is not a region code for phone numbers (ISO 3166-1 alpha-2, e.g. US, IR, DE)")
    return region


def _currency(value: str, where: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ConfigError(f"{where}: {value!r} is not an ISO 4217 currency code (e.g. USD, EUR, IRR)")
    return code


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    database_url: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load configuration from ``path`` (or ``CRMKIT_CONFIG``, or ``./crmkit.toml`` if present)."""
    env = os.environ if environ is None else environ
    chosen = path or env.get("CRMKIT_CONFIG")
    config_path: Path | None = Path(chosen) if chosen else None
    if config_path is None and Path(CONFIG_FILENAME).is_file():
        config_path = Path(CONFIG_FILENAME)
    raw: dict[str, Any] = {}
    if config_path is not None:
        if not config_path.is_file():
            raise ConfigError(f"configuration file {config_path} does not exist")
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
        config_path = config_path.resolve()
    name = str(config_path or "defaults")
    unknown = set(raw) - {"crmkit", "plugins"}
    if unknown:
        raise ConfigError(f"{name}: unknown section(s) {', '.join(sorted(unknown))}; use [crmkit] and [plugins.<name>]")
    core = _table(raw, "crmkit", name)
    plugins = _table(raw, "plugins", name)
    bad = set(core) - set(CORE_KEYS)
    if bad:
        raise ConfigError(f"{name} [crmkit]: unknown key(s) {', '.join(sorted(bad))} (known: {', '.join(CORE_KEYS)})")
    core = {key: _expand(value, f"{name} [crmkit].{key}", env) for key, value in core.items()}
    for key, value in core.items():
        if not isinstance(value, str):
            raise ConfigError(f"{name} [crmkit].{key}: expected text, got {type(value).__name__} {value!r}")
    config = Config(path=config_path)
    if "database" in core:
        config.database_url = _resolve_sqlite(core["database"], config.base_dir)
    if "default_region" in core:
        config.default_region = _region(core["default_region"], f"{name} [crmkit].default_region")
    if "default_currency" in core:
        config.default_currency = _currency(core["default_currency"], f"{name} [crmkit].default_currency")
    if "enabled" in plugins:
        config.enabled_plugins = _names(plugins.pop("enabled"), f"{name} [plugins].enabled")
    if "disabled" in plugins:
        config.disabled_plugins = _names(plugins.pop("disabled"), f"{name} [plugins].disabled")
    for section, values in plugins.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{name} [plugins]: {section!r} must be a table [plugins.{section}]")
        config.plugin_sections[section] = {key: _expand(value, f"{name} [plugins.{section}].{key}", env) for key, value in values.items()}
    override = database_url or env.get("CRMKIT_DATABASE_URL")
    if override:
        config.database_url = _resolve_sqlite(override, Path.cwd())
    return config


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make a relative SQLite path relative to the config file, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str((base / url[len(prefix):]).resolve())
    return url


class _WrongType(TypeError):
    """A setting of the wrong TOML type; its message says what was expected and what came."""


def _exactly(kind: type, *accepted: type) -> Any:
    def structure(value: Any, _: Any) -> Any:
        # bool is an int to Python, and cattrs would happily turn "false" into True.
        if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
            raise _WrongType(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return kind(value)

    return structure


@functools.cache
def _settings_converter() -> cattrs.Converter:
    """A cattrs converter that checks TOML values instead of coercing them (cattrs would make
    ``port = 2.7`` 2 and ``hosts = "ab"`` ``["a", "b"]``)."""
    from cattrs.cols import is_sequence, list_structure_factory

    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _exactly(str, str))
    converter.register_structure_hook(int, _exactly(int, int))
    converter.register_structure_hook(float, _exactly(float, int, float))
    converter.register_structure_hook(bool, _exactly(bool, bool))

    def sequences(type_: Any) -> Any:
        items = list_structure_factory(type_, converter)  # elements checked by the hooks above
        container = tuple if typing.get_origin(type_) is tuple or type_ is tuple else None

        def structure(value: Any, target: Any) -> Any:
            if not isinstance(value, list | tuple):  # a string is iterable, but not a list
                raise _WrongType(f"expected a list, got {type(value).__name__} {value!r}")
            result = items(value, target)
            return container(result) if container else result

        return structure

    converter.register_structure_hook_factory(is_sequence, sequences)
    return converter


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, _WrongType):
        return str(exc)
    message = cattrs.v.format_exception(exc, type_)
    return f"invalid value ({exc})" if message.startswith("unknown error") else message


def build_settings(section: str, cls: type, values: Mapping[str, Any], source: str = "crmkit.toml") -> Any:
    """Validate one ``[plugins.<section>]`` table against a plugin's attrs settings class:
    unknown keys, missing keys and values of the wrong type are errors naming the key."""
    try:
        return _settings_converter().structure(dict(values), cls)
    except Exception as exc:
        if isinstance(exc, cattrs.BaseValidationError):
            messages = cattrs.transform_error(exc, path=f"[plugins.{section}]", format_exception=_format)
        else:
            messages = [f"[plugins.{section}]: {exc}"]
        raise ConfigError(f"{source}: " + "; ".join(messages)) from None


def render_default_config(database_url: str) -> str:
    return (
        "# crmkit configuration. ${VAR} is read from the environment (keep secrets there).\n"
        "[crmkit]\n"
        f'database = "{database_url}"\n'
        '# default_region = "US"     # phone numbers without +country are parsed for this region\n'
        'default_currency = "USD"\n\n'
        "[plugins]\n"
        "# enabled = [\"sql_storage\", ...]   # load only these\n"
        "disabled = []\n"
    )
