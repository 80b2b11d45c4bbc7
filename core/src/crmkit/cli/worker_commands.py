"""``crmkit worker``: a long-running process draining the event outbox and the message send
jobs (a built-in plugin, contributed through ``crmkit_register_commands``)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import click

from crmkit.cli import CliContext, database_options
from crmkit.cli.output import emit, json_option, say
from crmkit.plugins import hookimpl


@contextlib.contextmanager
def _graceful_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM/SIGINT ask the worker to stop after the job in hand; a second one stops at once."""
    asked = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal asked
        if asked:
            raise KeyboardInterrupt
        asked = True
        click.echo(f"{signal.Signals(signum).name}: stopping after the current job (again to stop now)", err=True)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def worker_command() -> click.Command:
    @click.command("worker")
    @click.option("--once", is_flag=True, help="Drain everything that is due, then exit.")
    @click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True, metavar="S",
                  help="Seconds to wait when nothing is due before looking again.")
    @click.option("--max-jobs", type=click.IntRange(min=1), default=None, metavar="N",
                  help="Exit after about N jobs (events + messages), e.g. to recycle the process.")
    @click.option("--batch", type=click.IntRange(1, 500), default=50, show_default=True,
                  help="Events and messages claimed per pass.")
    @click.option("--lease", type=click.FloatRange(min=0.1), default=None, metavar="S",
                  help="Seconds a claim protects its jobs from other workers (default 300). After a crash the "
                       "jobs it held wait this long; it must outlast sending a whole batch.")
    @click.option("-v", "--verbose", is_flag=True, help="Log each pass and every failure.")
    @json_option
    @database_options
    @click.pass_context
    def worker(ctx: click.Context, once: bool, interval: float, max_jobs: int | None, batch: int, lease: float | None,
               verbose: bool, as_json: bool) -> None:
        """Dispatch events and send messages until SIGTERM/SIGINT (safe to run several at once)."""
        import crmkit
        from crmkit.worker import Worker

        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        obj = ctx.find_object(CliContext)
        assert obj is not None, "crmkit commands run under the crmkit root group"
        # Not obj.crm(): a worker must not dispatch inline, or its own writes' events would be
        # handled inside the send loop instead of being drained like everyone else's.
        with crmkit.open(obj.load_config(), plugins=obj.extra_plugins, dispatch_inline=False) as crm:
            runner = Worker(crm, interval=interval, batch=batch, lease=timedelta(seconds=lease) if lease else None)
            if not as_json:
                say(f"crmkit worker {os.getpid()} on {crm.backend.url.render_as_string(hide_password=True)}"
                    f"{' (until empty)' if once else ''}")
            with _graceful_signals(runner.stop):
                stats = runner.run(once=once, max_jobs=max_jobs)
        emit(as_json, stats.as_dict(), lambda: say(
            f"Worker done: {stats.events} event(s) dispatched; messages sent {stats.sent}, vetoed {stats.vetoed}, "
            f"deferred {stats.deferred}, retrying {stats.retrying}, dead {stats.dead}"
            + (f"; {stats.released} handed back unsent" if stats.released else "")))

    return worker


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(worker_command())
