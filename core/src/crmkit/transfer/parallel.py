"""Validating import rows in worker processes while the main process matches and writes.

Normalising and validating a contact (e-mail syntax, phone numbers) is most of an import's CPU
time and needs nothing but the CRM's plugins and read access, so worker processes run
:meth:`crmkit.intake.Intake.prepare` on chunks of records while the main process runs the
stages that write (:meth:`~crmkit.intake.Intake.finish`) in file order. Chunks are the intake's
batches, so every batch is composed exactly as in a single process and the outcome is the same.

Workers are forked from the importing process, so they have the very same plugins (also ones
passed to ``crmkit.open`` as objects) and configuration; each drops the inherited connection
pool first (``engine.dispose(close=False)``) and opens its own connections.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Any

from crmkit.errors import ValidationFailed

if TYPE_CHECKING:
    from crmkit.app import CRM
    from crmkit.intake import IntakeRecord

#: The CRM a worker process validates with (set once per worker by :func:`_start_worker`).
_worker_crm: Any = None


def _start_worker(crm: CRM) -> None:
    global _worker_crm
    crm.backend.engine.dispose(close=False)  # the parent's connections stay the parent's
    _worker_crm = crm


def _prepare(chunk: list[IntakeRecord]) -> list[IntakeRecord]:
    _worker_crm.intake.prepare(chunk)
    return chunk


def check_workers(crm: CRM, workers: int) -> None:
    if workers < 1:
        raise ValidationFailed.single("workers", "out_of_range", "must be at least 1")
    if workers > 1:
        if "fork" not in multiprocessing.get_all_start_methods():
            raise ValidationFailed.single("workers", "unsupported", "worker processes need the 'fork' start method (Linux)")
        database = crm.backend.url.database
        if crm.backend.dialect == "sqlite" and database in (None, "", ":memory:"):
            raise ValidationFailed.single("workers", "unsupported", "an in-memory SQLite database cannot be shared with worker processes")


def prepared_in_workers(crm: CRM, records: Iterable[IntakeRecord], *, batch_size: int, workers: int) -> Iterator[IntakeRecord]:
    """Yield ``records`` in their order, each already through ``prepare`` in a worker.

    At most ``2 × workers`` chunks are in flight, so memory stays bounded however long the
    input is.
    """
    check_workers(crm, workers)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(crm,)) as pool:
        pending: deque[Future[list[IntakeRecord]]] = deque()
        source = iter(records)
        while chunk := list(itertools.islice(source, batch_size)):
            pending.append(pool.submit(_prepare, chunk))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
