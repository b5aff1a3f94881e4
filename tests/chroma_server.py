"""A private ``chroma run`` server on loopback for the tests that need Chroma over HTTP.

The ``chroma`` command comes with the ``chromadb`` package (next to the test interpreter). The
server keeps its data in a temporary directory and is stopped (and can be restarted on the same
data and port) by the tests that check what happens when the store goes away.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chroma_command() -> str | None:
    """The ``chroma`` CLI of this environment, if installed."""
    beside = Path(sys.executable).parent / "chroma"
    return str(beside) if beside.exists() else shutil.which("chroma")


class ChromaServer:
    """``chroma run --path <tmp> --host 127.0.0.1 --port <free>``; ``url`` once started."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="chroma-test-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = Path(self.path) / "server.log"

    def start(self) -> None:
        command = chroma_command()
        if command is None:
            raise RuntimeError("the `chroma` command is not installed (pip install chromadb)")
        args = [
            command,
            "run",
            "--path",
            self.path,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - our own arguments
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"chroma run exited: {self._log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"chroma run did not start in {STARTUP_TIMEOUT}s")

    def stop(self) -> None:
        """Stop the server (its data stays for a restart)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.path, ignore_errors=True)
