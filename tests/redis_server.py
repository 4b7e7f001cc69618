"""A real redis-server for tests: its own process on a free loopback port, in a temp folder, with
nothing saved to disk. Tests that need one skip, saying why, where redis-server is not installed
(`.ci/run` installs Debian's package when it runs as root)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_serve import free_port

REDIS_SERVER = shutil.which("redis-server")
NEEDS_REDIS = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (apt-get install redis-server; .ci/run does)"
)


class RedisServer:
    """redis-server on 127.0.0.1:`port`; `stop()` and `start()` again on the same port, as an outage."""

    def __init__(self, folder: Path, port: int | None = None, password: str = "") -> None:
        self.folder = folder
        self.port = port or free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        # Nothing on disk: a restart is an empty Redis, the worst case for the bot.
        command += ["--save", "", "--appendonly", "no"]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)  # polling a condition (the port answering PING), bounded by the deadline
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                received = b""
                while b"PONG" not in received and b"-" not in received:
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    received += chunk
                return b"+PONG" in received
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
