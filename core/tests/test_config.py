"""Configuration: crmkit.toml, ${VAR} expansion, environment overrides, and plugin settings
validated against the plugin's attrs class, every error naming file, section and key."""

from __future__ import annotations

from pathlib import Path

import attrs
import crmkit
import pytest
from crmkit.config import build_settings, load_config
from crmkit.errors import ConfigError
from crmkit.plugins import hookimpl


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No stray ./crmkit.toml or CRMKIT_* variable from the environment running the tests."""
    for name in ("CRMKIT_CONFIG", "CRMKIT_DATABASE_URL", "CRMKIT_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path):
    config = load_config(environ={})
    assert (config.path, config.database_url, config.default_currency, config.default_region) == (None, "sqlite:///crm.db", "USD", None)


def test_a_full_file_with_environment_references(tmp_path):
    path = write(tmp_path / "etc" / "crmkit.toml", """
[crmkit]
database = "postgresql://crm:${DB_PASSWORD}@${DB_HOST}/crm"
default_region = "ir"
default_currency = "irr"

[plugins]
disabled = ["crmkit-mailer"]

[plugins.mail]
api_key = "${MAIL_KEY}"
hosts = ["smtp-${DB_HOST}"]
""")
    config = load_config(path, environ={"DB_PASSWORD": "s3cr3t$", "DB_HOST": "db.internal", "MAIL_KEY": "k-123"})
    assert config.path == path.resolve()
    assert config.database_url == "postgresql://crm:s3cr3t$@db.internal/crm"
    assert (config.default_region, config.default_currency) == ("IR", "IRR")
    assert config.disabled_plugins == ["crmkit-mailer"] and config.enabled_plugins is None
    assert config.plugin_sections == {"mail": {"api_key": "k-123", "hosts": ["smtp-db.internal"]}}


@pytest.mark.parametrize(("text", "message"), [
    ('[crmkit]\ndatabase = "postgresql://crm:${DB_PASSWORD}@db/crm"\n', r"crmkit.toml \[crmkit\].database: environment variable DB_PASSWORD is not set"),
    ('[plugins.mail]\napi_key = "${MAIL_KEY}"\n', r"crmkit.toml \[plugins.mail\].api_key: environment variable MAIL_KEY is not set"),
    ('[crmkit]\ndatabse = "sqlite:///x.db"\n', r"crmkit.toml \[crmkit\]: unknown key\(s\) databse \(known: database, default_currency, default_region\)"),
    ('[database]\nurl = "x"\n', r"crmkit.toml: unknown section\(s\) database; use \[crmkit\] and \[plugins.<name>\]"),
    ('[crmkit]\ndefault_region = "Persia"\n', r"\[crmkit\].default_region: 'Persia' is not a region code"),
    ('[crmkit]\ndefault_currency = "dollars"\n', r"\[crmkit\].default_currency: 'dollars' is not an ISO 4217 currency code"),
    ('[crmkit]\ndatabase = 5\n', r"\[crmkit\].database: expected text, got int 5"),
    ('[plugins]\nenabled = "sql_storage"\n', r"\[plugins\].enabled: expected a list of plugin names"),
    ('[plugins]\nmail = "on"\n', r"\[plugins\]: 'mail' must be a table \[plugins.mail\]"),
    ('crmkit = 1\n', r"\[crmkit\] must be a table"),
    ('[crmkit\n', r"crmkit.toml: not valid TOML"),
])
def test_bad_files_are_rejected_naming_file_section_and_key(tmp_path, text, message):
    path = write(tmp_path / "crmkit.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, environ={})
    assert str(path.resolve()) in str(info.value)


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.toml does not exist"):
        load_config(tmp_path / "nowhere.toml", environ={})


def test_relative_sqlite_paths_follow_the_config_file_and_the_environment_wins(tmp_path):
    path = write(tmp_path / "etc" / "crmkit.toml", '[crmkit]\ndatabase = "sqlite:///data/crm.db"\n')
    assert load_config(path, environ={}).database_url == f"sqlite:///{tmp_path / 'etc' / 'data' / 'crm.db'}"
    assert load_config(path, environ={}, database_url="sqlite:///:memory:").database_url == "sqlite:///:memory:"

    # The environment overrides the file; a relative path there is relative to where you are.
    env = {"CRMKIT_DATABASE_URL": "sqlite:///here.db"}
    assert load_config(path, environ=env).database_url == f"sqlite:///{tmp_path / 'here.db'}"
    assert load_config(path, environ=env, database_url="sqlite:////abs/x.db").database_url == "sqlite:////abs/x.db"

    # CRMKIT_CONFIG names the file; ./crmkit.toml is the fallback.
    assert load_config(environ={"CRMKIT_CONFIG": str(path)}).path == path.resolve()
    write(tmp_path / "crmkit.toml", '[crmkit]\ndefault_currency = "EUR"\n')
    assert load_config(environ={}).default_currency == "EUR"


@attrs.define
class MailSettings:
    api_key: str
    port: int = 587
    tls: bool = True
    rate_per_second: float = 5.0
    hosts: list[str] = attrs.Factory(list)


class MailPlugin:
    crmkit_plugin_name = "mail"

    @hookimpl
    def crmkit_register_settings(self, register):
        register("mail", MailSettings)


@pytest.mark.parametrize(("values", "message"), [
    ({"api_key": "k", "port": "587"}, r"expected int, got str '587' @ \[plugins.mail\].port"),
    ({"api_key": "k", "port": 58.7}, r"expected int, got float 58.7 @ \[plugins.mail\].port"),
    ({"api_key": "k", "tls": "false"}, r"expected bool, got str 'false' @ \[plugins.mail\].tls"),
    ({"api_key": "k", "port": True}, r"expected int, got bool True @ \[plugins.mail\].port"),
    ({"api_key": 12345}, r"expected str, got int 12345 @ \[plugins.mail\].api_key"),
    ({"api_key": "k", "hosts": "smtp.example.com"}, r"expected a list, got str 'smtp.example.com' @ \[plugins.mail\].hosts"),
    ({"api_key": "k", "hosts": ["a", 2]}, r"expected str, got int 2 @ \[plugins.mail\].hosts\[1\]"),
    ({"api_key": "k", "sender": "me"}, r"extra fields found \(sender\) @ \[plugins.mail\]"),
    ({}, r"required field missing @ \[plugins.mail\].api_key"),
])
def test_plugin_settings_of_the_wrong_shape_are_refused(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_settings("mail", MailSettings, values, "/etc/crmkit.toml")
    assert str(info.value).startswith("/etc/crmkit.toml: ")


def test_plugin_settings_are_checked_when_the_crm_opens(tmp_path, crm_factory, monkeypatch):
    database = tmp_path / "crm.db"
    good = write(tmp_path / "good" / "crmkit.toml", f'[crmkit]\ndatabase = "sqlite:///{database}"\n\n'
                 '[plugins.mail]\napi_key = "${MAIL_KEY}"\nport = 25\nrate_per_second = 2\n')
    monkeypatch.setenv("MAIL_KEY", "k-1")
    crm = crm_factory(str(good), plugins=[MailPlugin()])
    assert crm.settings_for("mail") == MailSettings(api_key="k-1", port=25, rate_per_second=2.0)
    with pytest.raises(ConfigError, match="no plugin declared settings section 'fax'"):
        crm.settings_for("fax")

    bad = write(tmp_path / "bad" / "crmkit.toml", f'[crmkit]\ndatabase = "sqlite:///{database}"\n\n[plugins.mail]\napi_key = "k"\ntls = "yes"\n')
    with pytest.raises(ConfigError, match=r"bad/crmkit.toml: expected bool, got str 'yes' @ \[plugins.mail\].tls"):
        crmkit.open(bad, plugins=[MailPlugin()])

    orphan = write(tmp_path / "orphan" / "crmkit.toml", f'[crmkit]\ndatabase = "sqlite:///{database}"\n\n[plugins.fax]\nkey = "k"\n')
    with pytest.raises(ConfigError, match=r"orphan/crmkit.toml: no plugin declares \[plugins.fax\]"):
        crmkit.open(orphan, plugins=[MailPlugin()])
