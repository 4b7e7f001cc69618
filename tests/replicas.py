"""Several `protest-bot telegram` replicas in webhook mode, as real processes, behind a round-robin
proxy, fed by the fake Bot API's webhook delivery (tests/fake_webhook_api.py) and sharing one Redis.

The proxy does what nginx's `proxy_next_upstream error timeout http_502 http_503 non_idempotent`
does: a request whose replica refuses the connection, drops it, or answers a retryable status is
tried on the next replica; only when all fail does the Bot API see the failure (and redeliver).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.crash_runner import command
from tests.fake_bot_api import TOKEN
from tests.fake_webhook_api import DeliveringBotApi
from tests.redis_server import RedisServer, free_port

RETRYABLE = {502, 503, 504}
SECRET = "replica-webhook_secret-0123456789"
PATH = "/telegram"


class RoundRobinProxy:
    """Spreads POSTs over the replicas in turn; records (update_id, replica, status) of every try."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends  # ports on 127.0.0.1
        self.port = 0
        self.tries: list[tuple[int, int, int]] = []
        self._next = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route_next_to(self, replica: int) -> None:
        """The next request goes to `replica` first."""
        with self._lock:
            self._next = replica

    def served(self, update_id: int) -> list[int]:
        """The replicas that answered the update 200."""
        with self._lock:
            return [replica for uid, replica, status in self.tries if uid == update_id and status == 200]

    def start(self) -> RoundRobinProxy:
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._open())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, name="round-robin-proxy", daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            update_id = int(json.loads(body).get("update_id", -1))
        except (ValueError, AttributeError):
            update_id = -1
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "x-telegram-bot-api-secret-token")
        }
        with self._lock:
            first = self._next
            self._next = (self._next + 1) % len(self.backends)
        status = 502
        for step in range(len(self.backends)):
            replica = (first + step) % len(self.backends)
            status = await self._try(replica, request.path_qs, body, headers)
            with self._lock:
                self.tries.append((update_id, replica, status))
            if status and status not in RETRYABLE:
                return web.Response(status=status)
        return web.Response(status=status or 502)

    async def _try(self, replica: int, path: str, body: bytes, headers: dict[str, str]) -> int:
        assert self._session is not None
        url = f"http://127.0.0.1:{self.backends[replica]}{path}"
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                return response.status
        except (aiohttp.ClientError, OSError, TimeoutError):
            return 0  # refused, dropped or timed out: the next replica

    def stop(self) -> None:
        async def close() -> None:
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


class Replica:
    """One `protest-bot telegram` process in webhook mode (the CLI with the fake model), logging to a file."""

    def __init__(self, name: str, port: int, folder: Path, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.port = name, port
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_listening(self, timeout: float = 120.0) -> None:
        """Wait until the replica says it answers webhook updates (its webhook is registered by then)."""
        deadline = time.monotonic() + timeout
        while "answering webhook updates on" not in self.output():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} was not ready within {timeout} s:\n{self.output()}")
            time.sleep(0.1)  # polling its log, bounded by the deadline

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        self.kill(signal.SIGKILL)
        self.process.wait(30)


class Cluster:
    """The fake Bot API, a proxy, `count` replicas and the Redis they share."""

    def __init__(
        self,
        folder: Path,
        corpus: Path,
        index: Path,
        redis: RedisServer,
        count: int = 2,
        rate_limit: int = 3,
        model: str = "test-hash-embedder",
        admins: str = "",
    ) -> None:
        self.folder, self.redis = folder, redis
        self.api = DeliveringBotApi().start()
        ports = [free_port() for _ in range(count)]
        self.proxy = RoundRobinProxy(ports).start()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "PROTEST_BOT_"))}
        environment = {
            **base,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            # Short, so a dead replica's update is taken over within the tests' patience.
            "TELEGRAM_WEBHOOK_CLAIM_SECONDS": "2",
            "TELEGRAM_RATE_LIMIT_GLOBAL_PER_MINUTE": str(max(10_000, rate_limit)),
            "HF_HUB_OFFLINE": "1",
            "TELEGRAM_ADMIN_IDS": admins,
        }
        options = ["--api-base-url", self.api.base_url, "--webhook-url", self.proxy.url + PATH]
        options += [
            "--webhook-listen",
            "127.0.0.1",
            "--redis-url",
            redis.url,
            "--rate-limit",
            str(rate_limit),
        ]
        self.replicas = []
        for i, port in enumerate(ports):
            argv = command(corpus, index, "telegram", *options, "--webhook-port", str(port), model=model)
            self.replicas.append(Replica(f"replica{i}", port, folder, argv, environment))
        for replica in self.replicas:
            replica.wait_listening()

    def output(self) -> str:
        return "\n".join(replica.output() for replica in self.replicas)

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        self.proxy.stop()
        self.api.stop()


def user(n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """User number `n` and their private chat."""
    person = {"id": 70_000 + n, "is_bot": False, "first_name": f"Reader{n}"}
    return person, {"id": person["id"], "type": "private", "first_name": person["first_name"]}
