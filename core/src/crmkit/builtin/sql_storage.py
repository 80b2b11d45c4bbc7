"""Registers the SQL backend for SQLite, PostgreSQL and MariaDB/MySQL URLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crmkit.plugins import hookimpl
from crmkit.storage.sql.backend import SQLBackend


@hookimpl
def crmkit_register_storage_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    for scheme in ("sqlite", "postgresql", "mysql", "mariadb"):
        register(scheme, SQLBackend)
