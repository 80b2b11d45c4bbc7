"""Fixtures for the e-mail plugin's tests: a real SMTP sink and CRMs configured to send to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from crmkit_email.testing import SmtpSink

SECRET = "test-unsubscribe-secret-0123456789"


def write_config(path: Path, database_url: str, email: dict[str, Any], channels: dict[str, Any] | None = None) -> Path:
    document: dict[str, Any] = {"crmkit": {"database": database_url}, "plugins": {"email": email}}
    if channels:
        document["plugins"]["channels"] = channels
    path.write_text(tomli_w.dumps(document))
    return path


def email_settings(sink: SmtpSink, **overrides: Any) -> dict[str, Any]:
    return {
        "host": sink.host, "port": sink.port, "security": "none", "from_address": "news@shop.example", "from_name": "Shop News",
        "public_url": "https://crm.shop.example", "unsubscribe_secret": SECRET, "unsubscribe_address": "unsubscribe@shop.example",
        "timeout": 10.0, **overrides,
    }


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def email_crm(crm_factory: Callable[..., Any], tmp_path: Path, sink: SmtpSink) -> Callable[..., Any]:
    """``email_crm(database_url=None, channels=None, dispatch_inline=True, **email_settings)``: a migrated CRM whose
    e-mail channel sends to ``sink``."""
    def make(database_url: str | None = None, channels: dict[str, Any] | None = None, dispatch_inline: bool = True, **overrides: Any) -> Any:
        url = database_url or f"sqlite:///{tmp_path / 'email.db'}"
        config = write_config(tmp_path / f"crmkit-{len(list(tmp_path.glob('crmkit-*.toml')))}.toml", url, email_settings(sink, **overrides), channels)
        return crm_factory(str(config), dispatch_inline=dispatch_inline)

    return make


def subscriber(crm: Any, email: str = "ada@example.org", purpose: str = "marketing", **fields: Any) -> Any:
    contact = crm.contacts.create({"first_name": "Ada", "last_name": "Lovelace", "email": email, **fields})
    crm.consents.record({"contact_id": contact.id, "channel": "email", "purpose": purpose, "status": "granted"})
    return contact


@pytest.fixture
def subscribe() -> Callable[..., Any]:
    """``subscribe(crm, email=..., purpose=...)``: a contact with granted consent."""
    return subscriber
