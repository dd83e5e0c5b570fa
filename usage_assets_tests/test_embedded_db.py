"""The embedded PostgreSQL: TCP on loopback, outlives its starter, safe to start concurrently."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from usage_assets import embedded_db
from usage_assets.errors import ConfigurationError

from . import processes
from .conftest import free_port

START_IN_CHILD = (
    "import sys; from pathlib import Path; from usage_assets import embedded_db; "
    "s = embedded_db.EmbeddedServer(Path(sys.argv[1]), int(sys.argv[2])); "
    "print(embedded_db.ensure_running(s).dsn())"
)


def test_concurrent_first_starts_share_one_server(tmp_path: Path) -> None:
    port = free_port()
    children = [
        processes.spawn(
            [sys.executable, "-c", START_IN_CHILD, str(tmp_path), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    server = embedded_db.EmbeddedServer(tmp_path, port)
    try:
        outputs = [child.communicate(timeout=120) for child in children]
        assert [child.returncode for child in children] == [0, 0, 0], outputs
        assert {out.strip() for out, _ in outputs} == {server.dsn()}
        # Every starter has exited; the server keeps running for the next process.
        assert embedded_db.is_running(server)
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("usage",)
            listen = conn.execute("SHOW listen_addresses").fetchone()
        assert listen == ("127.0.0.1",)
        # A restart keeps the data.
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
        assert embedded_db.stop(server)
        assert not embedded_db.is_running(server)
        embedded_db.ensure_running(server)
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (0,)
    finally:
        for child in children:
            processes.stop(child)
        embedded_db.stop(server)
    assert embedded_db.stop(server) is False


def test_port_taken_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ConfigurationError, match="USAGE_EMBEDDED_PG_PORT"):
            embedded_db.ensure_running(embedded_db.EmbeddedServer(tmp_path, port))
