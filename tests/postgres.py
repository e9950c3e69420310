"""A throwaway PostgreSQL cluster in a temp dir, for tests that need a real database server.

initdb refuses to run as root, so as root it runs as the `postgres` account. `stop` and `start`
let a test take the server away mid-study and bring it back on the same port; `close` stops it
(immediately) and removes its folder, whatever state it is in."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

BINARIES = [shutil.which(b) for b in ("initdb", "pg_ctl", "postgres")]
needs_postgres = pytest.mark.skipif(
    not all(BINARIES), reason="PostgreSQL server binaries (initdb, pg_ctl, postgres) not on PATH"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, max_connections: int = 100):
        pytest.importorskip("psycopg")
        self.root = tempfile.mkdtemp(prefix="tunekit-pg-")
        self.data = os.path.join(self.root, "data")
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                pytest.skip("running as root and no 'postgres' account to run initdb as")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.max_connections = max_connections
        self.url = f"postgresql://tunekit@127.0.0.1:{self.port}/postgres"
        self._initdb()
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _initdb(self) -> None:
        try:
            subprocess.run(
                [*self.as_user, "initdb", "-D", self.data, "-U", "tunekit", "--auth=trust", "-E", "UTF8"],
                check=True,
                capture_output=True,
            )
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections={self.max_connections}"
        )
        log = os.path.join(self.root, "log")
        subprocess.run(
            [*self.as_user, "pg_ctl", "-D", self.data, "-l", log, "-w", "-t", "60", "-o", options, "start"],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        """Take the server away at once, as a crash or a lost host would (no shutdown handshake)."""
        subprocess.run([*self.as_user, "pg_ctl", "-D", self.data, "-m", "immediate", "stop"], capture_output=True)

    def _pids(self) -> list[int]:
        """This cluster's server processes (its postmaster and the postmaster's children), no other's."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): its host's kernel still accepts and acknowledges, nothing answers."""
        self._paused = self._pids()
        for pid in self._paused:
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in getattr(self, "_paused", []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused = []

    def close(self) -> None:
        self.resume()
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def connections(self) -> int:
        """Client connections open now (pg_stat_activity's client backends, this query's own included)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=tunekit dbname=postgres") as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()
        return int(row[0])
