"""``crmkit worker``: a long-running process draining the event outbox and the message send
jobs (a built-in plugin, contributed through ``crmkit_register_commands``; it also declares the
``[plugins.worker]`` settings). ``--mode redis`` runs the scale-out roles of
:mod:`crmkit.taskqueue` instead of the in-process loop."""

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
from crmkit.taskqueue.settings import MODES, WorkerSettings

REDIS_ONLY = ("relay", "workers", "redis_url", "queue_name", "task_size")


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
    @click.option("--mode", type=click.Choice(MODES), default=None,
                  help="inline: this process drains the database itself. redis: relays and workers on any number of "
                       "machines share the work through Redis (pip install 'crmkit[redis]'). Default: [plugins.worker] mode, "
                       "else inline.")
    @click.option("--relay", is_flag=True,
                  help="redis mode: also claim due events and messages in the database and enqueue them (several relays "
                       "may run; at least one must).")
    @click.option("--workers", type=click.IntRange(min=0), default=None, metavar="N",
                  help="redis mode: threads executing tasks from Redis (default 1; 0 with --relay: relay only). For more "
                       "CPU run more processes.")
    @click.option("--redis-url", default=None, metavar="URL", help="redis mode: the Redis server (default: [plugins.worker] redis_url).")
    @click.option("--queue-name", default=None, metavar="NAME",
                  help="redis mode: names the Redis keys, so several CRMs can share a server (default: [plugins.worker] queue_name).")
    @click.option("--task-size", type=click.IntRange(1, 500), default=None, metavar="N",
                  help="redis mode: rows per task the relay enqueues (default 10).")
    @click.option("--once", is_flag=True, help="Drain everything that is due, then exit.")
    @click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True, metavar="S",
                  help="Seconds to wait when nothing is due before looking again.")
    @click.option("--max-jobs", type=click.IntRange(min=1), default=None, metavar="N",
                  help="inline mode: exit after about N jobs (events + messages), e.g. to recycle the process.")
    @click.option("--batch", type=click.IntRange(1, 500), default=50, show_default=True,
                  help="Events and messages claimed per pass.")
    @click.option("--lease", type=click.FloatRange(min=0.1), default=None, metavar="S",
                  help="Seconds a claim protects its jobs from other workers (default 300). After a crash the "
                       "jobs it held wait this long; it must outlast sending a whole batch (redis mode: a task).")
    @click.option("-v", "--verbose", is_flag=True, help="Log each pass and every failure.")
    @json_option
    @database_options
    @click.pass_context
    def worker(ctx: click.Context, mode: str | None, relay: bool, workers: int | None, redis_url: str | None,
               queue_name: str | None, task_size: int | None, once: bool, interval: float, max_jobs: int | None, batch: int,
               lease: float | None, verbose: bool, as_json: bool) -> None:
        """Dispatch events and send messages until SIGTERM/SIGINT (safe to run several at once).

        \b
        Inline mode (the default): every worker claims due work in the database itself.
        Redis mode, for workers on many machines:
          crmkit worker --mode redis --relay --workers 0   # one or more relays
          crmkit worker --mode redis --workers 8           # on every worker machine
        The database stays the record of what is due, retried or dead; Redis only carries
        row ids, so a flushed Redis or a killed worker loses nothing (the rows' leases run out
        and a relay enqueues them again).
        """
        import crmkit
        from crmkit.worker import Worker

        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        obj = ctx.find_object(CliContext)
        assert obj is not None, "crmkit commands run under the crmkit root group"
        config = obj.load_config()
        # Not obj.crm(): a worker must not dispatch inline, or its own writes' events would be
        # handled inside the send loop instead of being drained like everyone else's.
        with crmkit.open(config, plugins=obj.extra_plugins, dispatch_inline=False) as crm:
            settings: WorkerSettings = crm.settings_for("worker")
            chosen = mode or settings.mode
            given = dict(relay=relay, workers=workers, redis_url=redis_url, queue_name=queue_name, task_size=task_size)
            if chosen == "redis":
                if max_jobs is not None:
                    raise click.UsageError("--max-jobs applies to inline mode only", ctx)
                _run_redis(crm, lambda: crmkit.open(config, plugins=obj.extra_plugins, dispatch_inline=False), settings,
                           relay=relay, workers=1 if workers is None else workers, redis_url=redis_url, queue_name=queue_name,
                           task_size=task_size or 10, once=once, interval=interval, batch=batch, lease=lease, as_json=as_json)
                return
            misplaced = [f"--{name.replace('_', '-')}" for name in REDIS_ONLY if given[name] not in (None, False)]
            if misplaced:
                raise click.UsageError(f"{', '.join(misplaced)} apply to --mode redis only", ctx)
            runner = Worker(crm, interval=interval, batch=batch, lease=timedelta(seconds=lease) if lease else None)
            if not as_json:
                say(f"crmkit worker {os.getpid()} on {crm.backend.url.render_as_string(hide_password=True)}"
                    f"{' (until empty)' if once else ''}")
            with _graceful_signals(runner.stop):
                stats = runner.run(once=once, max_jobs=max_jobs)
        emit(as_json, stats.as_dict(), lambda: say(_summary(stats.as_dict())))

    return worker


def _run_redis(crm: Any, open_crm: Callable[[], Any], settings: WorkerSettings, *, relay: bool, workers: int,
               redis_url: str | None, queue_name: str | None, task_size: int, once: bool, interval: float, batch: int,
               lease: float | None, as_json: bool) -> None:
    """``crmkit worker --mode redis``: a relay and/or huey worker threads until stopped."""
    from crmkit.taskqueue.runner import RedisWorker
    from crmkit.taskqueue.settings import check_queue_name

    if workers == 0 and not relay:
        raise click.UsageError("--workers 0 leaves nothing to do: add --relay (or give this process worker threads)")
    name = check_queue_name(queue_name) if queue_name else check_queue_name(settings.queue_name, "[plugins.worker] queue_name")
    runner = RedisWorker(crm, open_crm, redis_url=redis_url or settings.redis_url, queue_name=name, relay=relay, workers=workers,
                         interval=interval, batch=batch, task_size=task_size, lease=timedelta(seconds=lease) if lease else None)
    if not as_json:
        roles = " + ".join((["relay"] if relay else []) + ([f"{workers} worker thread(s)"] if workers else []))
        say(f"crmkit worker {os.getpid()} (redis: {roles}, queue {name!r}) on "
            f"{crm.backend.url.render_as_string(hide_password=True)}{' (until empty)' if once else ''}")
    with _graceful_signals(runner.stop):
        runner.run(once=once)
    stats = runner.stats()
    relayed = stats.get("relay")

    def text() -> None:
        say(_summary(stats))
        if relayed:
            say(f"Relay: {relayed['events']} event(s) and {relayed['messages']} message(s) enqueued in {relayed['passes']} pass(es)")

    emit(as_json, stats, text)


def _summary(stats: dict[str, Any]) -> str:
    """What a worker did, in one line (both modes)."""
    return (f"Worker done: {stats['events']} event(s) dispatched; messages sent {stats['sent']}, vetoed {stats['vetoed']}, "
            f"deferred {stats['deferred']}, retrying {stats['retrying']}, dead {stats['dead']}"
            + (f"; {stats['released']} handed back unsent" if stats["released"] else "")
            + (f"; {stats['skipped']} task row(s) already taken" if stats.get("skipped") else ""))


@hookimpl
def crmkit_register_settings(register: Callable[[str, type], None]) -> None:
    register("worker", WorkerSettings)


@hookimpl
def crmkit_register_commands(register: Callable[[Any], None]) -> None:
    register(worker_command())
