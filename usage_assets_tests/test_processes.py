"""The suite's own process hygiene: a child stops on SIGTERM whatever this process ignores, and
nothing a test starts outlives it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import processes

SLEEPER = "import time; print('up', flush=True); time.sleep(600)"


@pytest.fixture
def sigterm_ignored() -> Iterator[None]:
    """This process ignores SIGTERM, as it did after Dagster ran in it under a shell that had
    SIGINT ignored (CI's background job)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_child_stops_on_sigterm_although_this_process_ignores_it(sigterm_ignored: None) -> None:
    child = processes.spawn([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        status = Path(f"/proc/{child.pid}/status").read_text()
        ignored = int(status.split("SigIgn:")[1].split()[0], 16)
        assert not ignored & (1 << (signal.SIGTERM - 1)), "the child inherited SIG_IGN"
    finally:
        # A grace long enough that SIGKILL could only come from a child ignoring SIGTERM.
        processes.stop(child, grace=60)
    assert child.returncode == -signal.SIGTERM


def test_stop_kills_what_ignores_sigterm_and_its_descendants(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"grandchild = subprocess.Popen([sys.executable, '-c', {SLEEPER!r}],"
        " start_new_session=True)\n"  # leaves the group: found as a descendant
        f"open({str(pid_file)!r}, 'w').write(str(grandchild.pid))\n"
        "print('pid written', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = processes.spawn([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        # The grandchild shares the pipe and says 'up' whenever it gets there: skip it.
        assert child.stdout is not None
        lines = iter(child.stdout.readline, "")
        assert "pid written\n" in lines
        grandchild = int(pid_file.read_text())
    except BaseException:
        processes.stop(child, grace=0.5)
        raise
    started = time.monotonic()
    processes.stop(child, grace=0.5)
    assert child.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 45
    assert not processes.leftover_processes(marker="no such marker")
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in _state(grandchild)


def test_leftovers_are_found_by_ancestry_and_by_marker(tmp_path: Path) -> None:
    marker = f"{tmp_path}/"
    with processes.running(
        [sys.executable, "-c", SLEEPER, f"{marker}x"], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        found = {p.pid for p in processes.leftover_processes(marker)}
        assert child.pid in found
    assert child.pid not in {p.pid for p in processes.leftover_processes(marker)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "gone"
