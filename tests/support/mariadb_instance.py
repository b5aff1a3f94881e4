"""A private MariaDB server for tests that restart or kill it: its own data directory and port.

``mariadb-install-db`` makes the data directory (well under a second) and ``mariadbd`` serves it
on a free loopback port as root (the tests run as root; ``--user=root`` says so). ``restart``
stops it cleanly and starts it on the same data and port; ``kill`` is SIGKILL.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql

STARTUP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MariaDBInstance:
    """``url`` (``mysql+aiomysql://root@127.0.0.1:<port>/archon``) once started."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="mariadb-test-"))
        self.port = _free_port()
        self.url = f"mysql+aiomysql://root@127.0.0.1:{self.port}/archon?charset=utf8mb4"
        self._process: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        binary = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if binary is None:
            raise RuntimeError("mariadb-install-db is missing (apt-get install mariadb-server)")
        subprocess.run(  # noqa: S603 - our own arguments
            [binary, "--no-defaults", f"--datadir={self.directory / 'data'}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, capture_output=True,
        )  # fmt: skip

    def start(self) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        log = open(self.directory / "server.log", "ab")  # noqa: SIM115 - kept by the process
        self._process = subprocess.Popen(  # noqa: S603 - our own arguments
            [server, "--no-defaults", f"--datadir={self.directory / 'data'}",
             f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.directory / 'mysqld.sock'}", "--user=root", "--skip-log-bin",
             "--innodb-buffer-pool-size=64M", "--max-connections=300"],
            stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root").close()
                return
            except pymysql.err.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"MariaDB did not start: {(self.directory / 'server.log').read_text()}"
                    ) from None
                time.sleep(0.2)

    def create_database(self) -> None:
        connection = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "CREATE DATABASE IF NOT EXISTS archon CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
        finally:
            connection.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            self._process.wait(timeout=60)
        self._process = None

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextmanager
def mariadb_instance() -> Iterator[MariaDBInstance]:
    """A started private server with an empty ``archon`` database; removed afterwards."""
    instance = MariaDBInstance()
    try:
        instance.install()
        instance.start()
        instance.create_database()
        yield instance
    finally:
        instance.close()
