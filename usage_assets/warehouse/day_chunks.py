"""A range of days computed by a few connections at once, each chunk of days in a transaction.

PostgreSQL runs a statement on one core (an INSERT ... SELECT never gets a parallel plan), so a
month of cost SQL, one statement per day, used one of the server's cores while the others
idled. `in_day_chunks` splits the range into contiguous chunks and gives each a connection and
a transaction of its own, in threads (the work is the server's; the threads only wait on it).
Every day is still written in one transaction: a chunk that fails rolls back its own days,
which keep their previous rows, and the first error is raised once every chunk has ended; the
other chunks' days, each complete, stay committed. No chunk ever waits on another inside the
app, so two runs over overlapping days can only wait on each other's locks in PostgreSQL,
whose deadlock detector sees every such wait.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine

from usage_assets import settings

T = TypeVar("T")


def day_chunks(first: dt.date, end: dt.date, workers: int) -> list[tuple[dt.date, dt.date]]:
    """[first, end) as at most `workers` contiguous, non-empty ranges of nearly equal length
    (one empty range when [first, end) is empty)."""
    days = max(0, (end - first).days)
    count = max(1, min(workers, days))
    starts = [first + dt.timedelta(days=days * i // count) for i in range(count)]
    return list(zip(starts, [*starts[1:], max(first, end)], strict=True))


def in_day_chunks(
    engine: Engine,
    first: dt.date,
    end: dt.date,
    work: Callable[[Connection, dt.date, dt.date], T],
    workers: int | None = None,
) -> list[T]:
    """`work(conn, chunk_first, chunk_end)` for each chunk of [first, end), each in its own
    transaction on its own connection, at the same time; the results in day order. `workers`
    defaults to USAGE_COST_WORKERS (`settings.cost_workers`: the server's cores, 2 for the
    embedded one on a 2-CPU machine), read when the work runs."""

    def run(chunk: tuple[dt.date, dt.date]) -> T:
        with engine.begin() as conn:
            return work(conn, *chunk)

    chunks = day_chunks(first, end, settings.cost_workers() if workers is None else workers)
    if len(chunks) == 1:
        return [run(chunks[0])]
    with ThreadPoolExecutor(len(chunks), thread_name_prefix="day-chunk") as pool:
        futures = [pool.submit(run, chunk) for chunk in chunks]
    errors = [error for future in futures if (error := future.exception()) is not None]
    if errors:
        raise errors[0]
    return [future.result() for future in futures]
