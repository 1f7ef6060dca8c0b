"""A private, throw-away ``redis-server`` for tests that need to stop and restart Redis.

It listens on a free port on 127.0.0.1 (never 6379), persists nothing, and keeps its files
in a temporary directory that is removed on ``stop()``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.server import free_port

__all__ = ["RedisServer", "redis_server", "redis_server_available"]

_SHARED_PORT = 6379


def redis_server_available(executable: str = "redis-server") -> bool:
    """True if the ``redis-server`` binary is on PATH."""
    return shutil.which(executable) is not None


def _answers_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` child process on a fixed free port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str = "redis-server",
        start_timeout: float = 10.0,
    ) -> None:
        if port == _SHARED_PORT:
            raise ValueError("port 6379 belongs to the shared Redis; pick another")
        path = shutil.which(executable)
        if path is None:
            raise FileNotFoundError(f"{executable!r} is not on PATH")
        self._executable = path
        self.port: int = port if port is not None else free_port()
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="test-redis-"))
        log_path = self._dir / "redis.log"
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    self._executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._dir),
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self._start_timeout
        while not _answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                self._kill()
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{output}")
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until the port is closed."""
        self._kill(timeout)
        deadline = time.monotonic() + timeout
        while _answers_ping(self.port, timeout=0.1) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self) -> None:
        """Stop if running, then start again on the same port."""
        self._kill()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self._kill()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _kill(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


@contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisServer]:
    """Start a private ``redis-server``; always stopped (and its files removed) on exit."""
    server = RedisServer(port)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
