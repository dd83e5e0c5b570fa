"""A range of days on several connections at once (`in_day_chunks`): the split, the
concurrency, and what a failing chunk leaves behind, against a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import Connection, Engine, text

from usage_assets.warehouse.database import engine_for
from usage_assets.warehouse.day_chunks import day_chunks, in_day_chunks

FIRST = dt.date(2025, 10, 1)


def days(n: int) -> dt.date:
    return FIRST + dt.timedelta(days=n)


@pytest.mark.parametrize(
    ("length", "workers", "expected"),
    [
        (30, 2, [(0, 15), (15, 30)]),
        (31, 2, [(0, 15), (15, 31)]),
        (7, 3, [(0, 2), (2, 4), (4, 7)]),
        (1, 2, [(0, 1)]),
        (2, 1, [(0, 2)]),
        (0, 2, [(0, 0)]),
    ],
)
def test_days_split_into_contiguous_chunks(
    length: int, workers: int, expected: list[tuple[int, int]]
) -> None:
    chunks = day_chunks(FIRST, days(length), workers)
    assert chunks == [(days(a), days(b)) for a, b in expected]


@pytest.fixture
def scratch(engine: Engine) -> Iterator[Engine]:
    """The test database with one more table (outside the app's schema), of days: which
    backend and transaction wrote each. Dropped afterwards."""
    with engine.begin() as conn:
        conn.execute(
            text("CREATE TABLE public.written (day date PRIMARY KEY, pid int, xid bigint)")
        )
    yield engine
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE public.written"))


def write_days(conn: Connection, first: dt.date, end: dt.date) -> int:
    bounds = {"first": first, "end": end}
    conn.execute(text("DELETE FROM public.written WHERE day >= :first AND day < :end"), bounds)
    conn.execute(
        text(
            "INSERT INTO public.written SELECT d::date, pg_backend_pid(), txid_current() "
            "FROM generate_series(CAST(:first AS date), CAST(:end AS date) - 1, '1 day') d"
        ),
        bounds,
    )
    return (end - first).days


def stored(engine: Engine) -> dict[dt.date, tuple[int, int]]:
    with engine.connect() as conn:
        return {
            day: (pid, xid) for day, pid, xid in conn.execute(text("SELECT * FROM public.written"))
        }


def test_chunks_run_at_once_each_in_its_own_transaction(scratch: Engine) -> None:
    both_started = threading.Barrier(2, timeout=60)  # one chunk after the other never meets

    def work(conn: Connection, first: dt.date, end: dt.date) -> int:
        written = write_days(conn, first, end)
        both_started.wait()
        return written

    assert in_day_chunks(scratch, FIRST, days(10), work, workers=2) == [5, 5]
    rows = stored(scratch)
    assert sorted(rows) == [days(n) for n in range(10)]
    first_half = {rows[days(n)] for n in range(5)}
    second_half = {rows[days(n)] for n in range(5, 10)}
    assert len(first_half) == len(second_half) == 1  # a chunk: one backend, one transaction
    assert first_half != second_half
    assert first_half.pop()[0] != second_half.pop()[0]  # two connections


def test_a_failing_chunk_keeps_its_days_and_the_error_is_raised(scratch: Engine) -> None:
    with scratch.begin() as conn:
        write_days(conn, FIRST, days(10))
    before = stored(scratch)

    def work(conn: Connection, first: dt.date, end: dt.date) -> int:
        written = write_days(conn, first, end)
        if first <= days(7) < end:
            raise RuntimeError(f"chunk from {first} failed")
        return written

    with pytest.raises(RuntimeError, match=f"chunk from {days(5)} failed"):
        in_day_chunks(scratch, FIRST, days(10), work, workers=2)
    after = stored(scratch)
    assert sorted(after) == sorted(before)
    assert all(after[days(n)] == before[days(n)] for n in range(5, 10))  # rolled back
    assert all(after[days(n)] != before[days(n)] for n in range(5))  # recomputed, committed


def test_the_workers_are_usage_cost_workers_read_when_the_work_runs(
    scratch: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGE_COST_WORKERS", "3")
    all_started = threading.Barrier(3, timeout=60)  # fewer connections at once never meet

    def work(conn: Connection, first: dt.date, end: dt.date) -> int:
        written = write_days(conn, first, end)
        all_started.wait()
        return written

    assert in_day_chunks(scratch, FIRST, days(9), work) == [3, 3, 3]
    rows = stored(scratch)
    assert len({pid for pid, _ in rows.values()}) == 3


def test_an_engine_has_room_for_the_workers_beside_its_callers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USAGE_COST_WORKERS", "5")
    fresh = engine_for.__wrapped__(engine.url.render_as_string(hide_password=False))
    try:
        with ExitStack() as held:
            connections = [held.enter_context(fresh.connect()) for _ in range(2 + 5)]
            pids = {
                conn.execute(text("SELECT pg_backend_pid()")).scalar_one() for conn in connections
            }
            assert len(pids) == 7  # two a caller may hold, five workers: none waits for the pool
    finally:
        fresh.dispose()
