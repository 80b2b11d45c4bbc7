"""Configuration: ``crmkit.toml`` plus environment overrides.

Precedence, highest first: explicit arguments (``--database``), environment
(``CRMKIT_DATABASE_URL``, ``CRMKIT_CONFIG``, ``CRMKIT_DISABLE_PLUGINS``), the file, defaults.
``${VAR}`` anywhere in a string value is replaced from the environment so secrets stay out of
the file; a missing variable is an error naming it (never an empty password).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from crmkit.errors import ConfigError

CONFIG_FILENAME = "crmkit.toml"
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
    core = _expand(raw.get("crmkit", {}), f"{name} [crmkit]", env)
    plugins = _expand(raw.get("plugins", {}), f"{name} [plugins]", env)
    unknown = set(raw) - {"crmkit", "plugins"}
    if unknown:
        raise ConfigError(f"{name}: unknown section(s) {', '.join(sorted(unknown))}; use [crmkit] and [plugins.<name>]")
    allowed_core = {"database", "default_region", "default_currency"}
    bad = set(core) - allowed_core
    if bad:
        raise ConfigError(f"{name} [crmkit]: unknown key(s) {', '.join(sorted(bad))} (known: {', '.join(sorted(allowed_core))})")
    config = Config(path=config_path)
    if "database" in core:
        config.database_url = _resolve_sqlite(str(core["database"]), config.base_dir)
    config.default_region = core.get("default_region")
    config.default_currency = core.get("default_currency", "USD")
    if "enabled" in plugins:
        config.enabled_plugins = list(plugins.pop("enabled"))
    config.disabled_plugins = list(plugins.pop("disabled", []))
    for section, values in plugins.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{name} [plugins]: {section!r} must be a table [plugins.{section}]")
        config.plugin_sections[section] = values
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


_converter = cattrs.Converter(forbid_extra_keys=True)


def build_settings(section: str, cls: type, values: Mapping[str, Any], source: str = "crmkit.toml") -> Any:
    """Validate one ``[plugins.<section>]`` table against a plugin's attrs settings class."""
    try:
        return _converter.structure(dict(values), cls)
    except Exception as exc:
        messages = cattrs.transform_error(exc, path=f"[plugins.{section}]") if isinstance(exc, cattrs.BaseValidationError) else [str(exc)]
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
