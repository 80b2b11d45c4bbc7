"""The core's CLI commands, contributed through ``crmkit_register_commands`` like a plugin's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    pass
