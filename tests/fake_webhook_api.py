"""The fake Bot API as a self-hosted Bot API server that delivers updates to a webhook, as Telegram does.

Each pushed update is POSTed to the registered webhook URL with the secret header. Anything but a
200 — another status, a refused or dropped connection, a timeout — counts as not delivered, and the
update is posted again a moment later, until it gets its 200: Telegram's rule, and the reason a bot
that acknowledges before answering can lose an update. Like `telegram-bot-api --local`, it accepts
http webhook URLs on any port.

A test can also hold a method (`hold("sendMessage")`): the next such call waits, answered only when
the test releases it, so an answer can be caught in flight without sleeping.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.fake_bot_api import FakeBotApi, bad_request

WEBHOOK_TIMEOUT_SECONDS = 60  # how long Telegram waits for a webhook to answer


@dataclass
class Delivery:
    """One attempt to deliver an update: its id and the status the webhook answered (0: no answer)."""

    update_id: int
    status: int
    at: float


class Hold:
    """A call the fake keeps waiting: `reached` once it arrives, answered after `release()`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, method: str, where: Callable[[dict[str, Any]], bool]):
        self.method = method.lower()
        self.where = where
        self.reached = threading.Event()
        self._loop = loop
        self._released = asyncio.Event()

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)

    async def wait(self) -> None:
        self.reached.set()
        await self._released.wait()


class DeliveringBotApi(FakeBotApi):
    """A `FakeBotApi` that pushes updates to its webhook and redelivers until each gets a 200."""

    def __init__(self, redeliver_after: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redeliver_after = redeliver_after
        self._deliveries: list[Delivery] = []
        self._holds: list[Hold] = []
        self._session: aiohttp.ClientSession | None = None
        self._delivering: list[Any] = []  # concurrent.futures of the delivery loops

    # --- delivery -------------------------------------------------------------------------------

    def push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update and, with a webhook set, deliver it there."""
        update = super().push(kind, payload)
        if self.webhook is not None:
            assert self._loop is not None
            delivery = asyncio.run_coroutine_threadsafe(self._deliver(update, dict(self.webhook)), self._loop)
            self._delivering.append(delivery)
        return update

    async def _deliver(self, update: dict[str, Any], webhook: dict[str, Any]) -> None:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_SECONDS)
            self._session = aiohttp.ClientSession(timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = str(webhook["secret_token"])
        body = json.dumps(update).encode()
        while not self._closing:
            try:
                async with self._session.post(webhook["url"], data=body, headers=headers) as response:
                    status = response.status
            except (aiohttp.ClientError, OSError, TimeoutError):
                status = 0
            with self._changed:
                self._deliveries.append(Delivery(update["update_id"], status, time.monotonic()))
                self._changed.notify_all()
            if status == 200:
                return
            await asyncio.sleep(self.redeliver_after)  # Telegram's own back-off, shortened

    def deliveries(self, update_id: int | None = None) -> list[Delivery]:
        """Every delivery attempt so far (of one update)."""
        with self._lock:
            return [d for d in self._deliveries if update_id is None or d.update_id == update_id]

    def wait_delivered(self, update_ids: Iterable[int], timeout: float = 60.0) -> None:
        """Wait until each update has been acknowledged with a 200."""
        wanted = set(update_ids)
        deadline = time.monotonic() + timeout
        with self._changed:
            while wanted - {d.update_id for d in self._deliveries if d.status == 200}:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    done = {d.update_id for d in self._deliveries if d.status == 200}
                    raise TimeoutError(f"updates {sorted(wanted - done)} not acknowledged within {timeout} s")
                self._changed.wait(remaining)

    # --- holding calls --------------------------------------------------------------------------

    def hold(self, method: str, where: Callable[[dict[str, Any]], bool] = lambda params: True) -> Hold:
        """Keep the next call of `method` matching `where` waiting until `release()`."""
        assert self._loop is not None
        hold = Hold(self._loop, method, where)
        with self._lock:
            self._holds.append(hold)
        return hold

    async def _held(self, method: str, params: dict[str, Any]) -> None:
        with self._lock:
            hold = next((h for h in self._holds if h.method == method and h.where(params)), None)
            if hold is not None:
                self._holds.remove(hold)
        if hold is not None:
            await hold.wait()

    async def _m_sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        await self._held("sendmessage", params)
        return await super()._m_sendmessage(params)

    # --- a local Bot API server takes http webhooks ---------------------------------------------

    async def _m_setwebhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not re.match(r"https?://[^/\s]+", url):
            raise bad_request("bad webhook: Wrong HTTP URL specified")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret, "allowed_updates": params.get("allowed_updates")}
        return True

    def stop(self) -> None:
        """Stop delivering and serving."""
        self._closing = True
        for delivery in self._delivering:
            delivery.cancel()
        if self._loop is not None and self._session is not None:
            close = asyncio.run_coroutine_threadsafe(self._session.close(), self._loop)
            close.result(10)
        super().stop()
