"""Debian's pgbouncer in transaction pool mode, in front of a PostgreSQL server, for the session."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.support.backends import unavailable

# pgbouncer refuses to run as root. pgserver's own user owns the server's socket directory
# (inside pgdata, mode 0700), so it is the one non-root user that can reach that server.
POOLER_USER = "pgserver"
START_TIMEOUT = 10.0

CONFIG = """\
[databases]
* = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pool_mode = transaction
auth_type = trust
auth_file = {directory}/userlist.txt
admin_users = {user}
max_client_conn = 200
default_pool_size = 20
logfile = {directory}/pgbouncer.log
ignore_startup_parameters = extra_float_digits
"""


def _binary() -> str:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        unavailable("pgbouncer", "pgbouncer is not installed (`apt-get install -y pgbouncer`)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_line(server_url: str) -> tuple[str, str]:
    """pgbouncer's connection string for the server, and the user it logs in as."""
    url = make_url(server_url)
    host = url.query.get("host") or url.host or "127.0.0.1"
    user = url.username or "postgres"
    parts = [f"host={host}", f"port={url.port or 5432}", f"user={user}"]
    if url.password:
        parts.append(f"password='{url.password}'")
    return " ".join(parts), user


def _run_as() -> pwd.struct_passwd | None:
    """The account pgbouncer runs as: pgserver's user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POOLER_USER)
    except KeyError:  # the server is external (TEST_PGVECTOR_URL), so pgserver never made it
        subprocess.run(["useradd", "--system", POOLER_USER], check=True, capture_output=True)
        return pwd.getpwnam(POOLER_USER)


def _write_config(directory: Path, server_url: str, port: int) -> Path:
    server, user = _server_line(server_url)
    config = directory / "pgbouncer.ini"
    config.write_text(CONFIG.format(server=server, port=port, directory=directory, user=user))
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    return config


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text()[-2000:] if log.exists() else ""
            unavailable("pgbouncer", f"exited with status {process.returncode}: {tail}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    unavailable("pgbouncer", f"not listening on 127.0.0.1:{port} after {START_TIMEOUT:.0f}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # SIGTERM: immediate shutdown, client connections are closed
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def pgbouncer(server_url: str) -> Iterator[str]:
    """Run pgbouncer in front of ``server_url``; yield its URL (any database name is routed).

    Runs in the foreground as a child process (not ``-d``), so that it can be stopped and reaped
    by its pid. Trust authentication: it listens on loopback only.
    """
    binary = _binary()
    account = _run_as()
    directory = Path(tempfile.mkdtemp(prefix="archon-pgbouncer-"))
    try:
        if account is not None:
            os.chown(directory, account.pw_uid, account.pw_gid)
        port = _free_port()
        config = _write_config(directory, server_url, port)
        user = _server_line(server_url)[1]
        process = subprocess.Popen(
            [binary, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # everything also goes to the log file
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        try:
            _wait_until_listening(process, port, directory / "pgbouncer.log")
            yield f"postgresql://{user}@127.0.0.1:{port}/"
        finally:
            _stop(process)
    finally:
        shutil.rmtree(directory)
