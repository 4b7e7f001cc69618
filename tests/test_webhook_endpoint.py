"""The webhook endpoint in-process (starlette's test client, the real PTB Application, no network):
the secret, bodies that are not updates, and what a claim decides — before any replica runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient
from telegram import Update
from telegram.ext import ApplicationBuilder, TypeHandler
from telegram.request import BaseRequest

from bot.shared_state import MemoryState
from bot.telegram.webhook import SECRET_HEADER, WebhookEndpoint
from tests.fake_bot_api import ALICE, BOT, PRIVATE, TOKEN

SECRET = "endpoint-secret_0123456789"


def update(update_id: int) -> dict[str, Any]:
    message = {"message_id": 1, "date": 0, "chat": PRIVATE, "from": ALICE, "text": "Who signed?"}
    return {"update_id": update_id, "message": message}


class GetMeOnly(BaseRequest):
    """The network faked at PTB's request boundary: getMe answers (initialize needs it); nothing else."""

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        assert url.endswith("/getMe"), url
        return 200, json.dumps({"ok": True, "result": BOT}).encode()


@pytest.fixture
def endpoint() -> WebhookEndpoint:
    app = ApplicationBuilder().token(TOKEN).request(GetMeOnly()).get_updates_request(GetMeOnly()).build()
    handled: list[int] = []

    async def record(update: Update, context: object) -> None:
        handled.append(update.update_id)

    app.add_handler(TypeHandler(Update, record))
    hook = WebhookEndpoint(app, MemoryState(), SECRET, claim_seconds=30)
    hook.handled = handled  # type: ignore[attr-defined]
    return hook


@pytest.fixture
def client(endpoint: WebhookEndpoint) -> Iterator[TestClient]:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await endpoint.app.initialize()
        yield
        await endpoint.app.shutdown()

    routes = [Route("/hook", endpoint.handle, methods=["POST"])]
    with TestClient(Starlette(routes=routes, lifespan=lifespan)) as test_client:
        yield test_client


def post(client: TestClient, body: Any, secret: str | None = SECRET) -> int:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/hook", content=data, headers=headers).status_code


def test_without_the_secret_nothing_is_handled(client: TestClient, endpoint: WebhookEndpoint) -> None:
    assert post(client, update(1), secret=None) == 403
    assert post(client, update(1), secret="not-the-secret") == 403
    assert endpoint.handled == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [b"not json", b"null", b"[]", {}, {"message": {}}], ids=str)
def test_a_body_that_is_not_an_update_is_400(client: TestClient, body: Any) -> None:
    assert post(client, body) == 400


def test_fresh_then_done_busy_and_draining(client: TestClient, endpoint: WebhookEndpoint) -> None:
    assert post(client, update(7)) == 200
    assert post(client, update(7)) == 200, "a redelivery of a done update is acknowledged"
    assert endpoint.handled == [7], "and not handled again"  # type: ignore[attr-defined]
    asyncio.run(endpoint.state.claim(8, 30))  # another replica holds it
    assert post(client, update(8)) == 503
    endpoint.draining = True
    assert post(client, update(9)) == 503
    assert endpoint.handled == [7]  # type: ignore[attr-defined]
