"""Child processes of the tests: each one stops for sure, whatever signals the test process has.

A signal a process ignores stays ignored across `exec`. A job started in the background by a
non-interactive shell (as CI may start the suite) ignores SIGINT, and Dagster maps SIGTERM onto
SIGINT's handler (`setup_interrupt_handlers`), so after a Dagster run in the test process every
child it spawned ignored SIGTERM and `terminate()` did nothing. Children started here get the
default disposition of every stopping signal back before their program starts, run in a process
group of their own, and are stopped by SIGTERM, then SIGKILL for the whole group and every
descendant, then reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psutil

#: The signals that stop a process by default; an inherited SIG_IGN for any of them is undone.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)

# Run by a fresh interpreter that then becomes the real program (same pid, via exec): unlike a
# `preexec_fn`, this is safe while the test process has threads (the in-process simulator,
# Dagster's executors). `-S -E`: no site import, no PYTHON* variables, so it starts in
# milliseconds.
_RESET_AND_EXEC = (
    "import os, signal, sys\n"
    f"for number in {[int(s) for s in STOP_SIGNALS]}:\n"
    "    signal.signal(number, signal.SIG_DFL)\n"
    "signal.pthread_sigmask(signal.SIG_SETMASK, ())\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)

#: How long a child gets to stop on SIGTERM before it and its group are killed.
TERMINATE_GRACE_SECONDS = 10.0


def spawn(args: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(args, **options)` with default signal dispositions, in a new session."""
    if "start_new_session" in options or "preexec_fn" in options:
        raise TypeError("spawn() sets start_new_session itself and allows no preexec_fn")
    command = [sys.executable, "-S", "-E", "-c", _RESET_AND_EXEC, *args]
    return subprocess.Popen(command, start_new_session=True, **options)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and _alive(process):
                members.append(process)
    return members


def stop(process: subprocess.Popen[Any], grace: float = TERMINATE_GRACE_SECONDS) -> None:
    """End `process` and everything it started; raise if anything survives SIGKILL.

    Descendants are remembered before any signal, so one that left the group (or whose parent
    died first) is still found.
    """
    pgid = process.pid  # spawn() made it a session, and so a group, leader
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and (process.poll() is None or _group_members(pgid)):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    for descendant in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            descendant.kill()
    process.wait(timeout=30)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    deadline = time.monotonic() + 15
    survivors = [p for p in _group_members(pgid) + descendants if _alive(p)]
    while survivors and time.monotonic() < deadline:
        time.sleep(0.1)
        survivors = [p for p in survivors if _alive(p)]
    assert not survivors, f"processes survived SIGKILL: {survivors}"


@contextlib.contextmanager
def running(args: Sequence[str], **options: Any) -> Iterator[subprocess.Popen[Any]]:
    """A spawned child for the duration of a `with` block, stopped however the block ends."""
    process = spawn(args, **options)
    try:
        yield process
    finally:
        stop(process)


def leftover_processes(marker: str) -> list[psutil.Process]:
    """Live processes that are descendants of this one, or whose command line names `marker`
    (e.g. a server started on a temporary directory and detached, as pg_ctl does)."""
    own = {p.pid for p in psutil.Process().children(recursive=True)}
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.pid == os.getpid():
            continue
        cmdline = " ".join(process.info["cmdline"] or ())
        if (process.pid in own or marker in cmdline) and _alive(process):
            found.append(process)
    return found
