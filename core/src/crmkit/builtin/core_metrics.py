"""The core's metrics (sales, forecast, acquisition, retention, activity), registered through
``crmkit_register_metrics`` like any plugin's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crmkit.plugins import hookimpl


@hookimpl
def crmkit_register_metrics(register: Callable[[Any], None]) -> None:
    from crmkit.metrics import acquisition, activity, forecast, retention, sales

    for module in (sales, forecast, acquisition, retention, activity):
        for metric in module.definitions():
            register(metric)
