"""The webhook server: an update is acknowledged only after its answer is sent.

python-telegram-bot's own webhook server answers Telegram 200 as soon as an update is queued, so a
replica that dies mid-answer loses it: Telegram never redelivers what was acknowledged. Here each
POST is answered when the update has been handled, and the shared state records who has it:

- a fresh update is claimed (with a short TTL, renewed while the answer is made), handled, marked
  done, then acknowledged with 200;
- one already done (a redelivery) is acknowledged and skipped;
- one claimed by a live replica gets 503, so Telegram (or the proxy) delivers it again later;
- one whose claimant died is taken over once the claim expires.

A duplicate is then possible only when a replica dies between sending the answer and recording it
as done. On SIGTERM the replica answers 503 to new updates, finishes those in flight, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Update
from telegram.ext import Application

from bot.shared_state import Claim, SharedState, renew_while

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram redelivers after any non-2xx; a proxy retries 503 on the next replica (nginx
# `proxy_next_upstream http_503`, Caddy `lb_retry_match`).
RETRY_LATER = 503
# How long a stopping replica waits for the answers in flight. Compose's stop_grace_period is
# longer, so the answers finish before Docker would SIGKILL.
DRAIN_SECONDS = 25.0


class WebhookEndpoint:
    """The ASGI endpoint Telegram posts updates to."""

    def __init__(self, app: Application, state: SharedState, secret: str, claim_seconds: float) -> None:
        self.app = app
        self.state = state
        self.secret = secret.encode()
        self.claim_seconds = claim_seconds
        self.draining = False
        self.in_flight = 0

    async def handle(self, request: Request) -> Response:
        """Check the secret, claim the update, handle it, and only then say 200."""
        supplied = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(supplied, self.secret):
            return Response(status_code=403)
        if self.draining:
            return _retry_later()
        try:
            update = Update.de_json(await request.json(), self.app.bot)
            if update is None:  # the body `null`
                raise ValueError("no update")
        except Exception as exc:  # not JSON, or not an update: Telegram never sends that
            log.warning("refused a webhook body that is not an update: %s", type(exc).__name__)
            return Response(status_code=400)
        claim = await self.state.claim(update.update_id, self.claim_seconds)
        if claim is Claim.DONE:
            return Response(status_code=200)
        if claim is Claim.BUSY:
            return _retry_later()
        return await self._handle(update)

    async def _handle(self, update: Update) -> Response:
        self.in_flight += 1
        renewing = asyncio.create_task(renew_while(self.state, update.update_id, self.claim_seconds))
        try:
            # Handler failures go to the error handler inside; what escapes is PTB's own failure.
            await self.app.process_update(update)
        except Exception:
            log.exception("update %s could not be handled; Telegram will deliver it again", update.update_id)
            await self.state.release(update.update_id)
            return Response(status_code=500)
        finally:
            self.in_flight -= 1
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
        await self.state.finish(update.update_id)
        return Response(status_code=200)


def _retry_later() -> Response:
    return Response(status_code=RETRY_LATER, headers={"Retry-After": "1"})


class DrainingServer(uvicorn.Server):
    """uvicorn, telling the endpoint to refuse new updates the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, endpoint: WebhookEndpoint) -> None:
        super().__init__(config)
        self.endpoint = endpoint

    def handle_exit(self, sig: int, frame: Any) -> None:
        """Stop taking updates, let those in flight finish (uvicorn waits for them)."""
        if not self.endpoint.draining:
            self.endpoint.draining = True
            log.info(
                "stopping: new updates go to other replicas; finishing %d in flight", self.endpoint.in_flight
            )
        super().handle_exit(sig, frame)


async def serve_webhook(
    app: Application,
    state: SharedState,
    options: dict[str, Any],
    allowed_updates: list[str],
    claim_seconds: float,
) -> None:
    """Register the webhook, serve it until SIGTERM or Ctrl-C, then drain and shut down."""
    from bot.serve import listen, stop_signals_end_cleanly

    endpoint = WebhookEndpoint(app, state, options["secret_token"], claim_seconds)
    routes = [Route("/" + options["url_path"], endpoint.handle, methods=["POST"])]
    config = uvicorn.Config(
        Starlette(routes=routes),
        host=options["listen"],
        port=options["port"],
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="off",
        timeout_graceful_shutdown=DRAIN_SECONDS,
    )
    server = DrainingServer(config, endpoint)
    # Bound here, before the model loads: a port in use is one error line at once (uvicorn would
    # log it and exit with its own status, 3, which here means a damaged index).
    listening = listen(options["listen"], options["port"], "the webhook")
    await app.initialize()
    try:
        if app.post_init:
            await app.post_init(app)
        # Every replica registers the same URL and secret; it is never deleted on the way out, so a
        # rolling restart keeps Telegram posting to the replicas still up.
        await app.bot.set_webhook(
            options["webhook_url"], secret_token=options["secret_token"], allowed_updates=allowed_updates
        )
        await app.start()
        log.info("answering webhook updates on %s:%s", options["listen"], options["port"])
        with stop_signals_end_cleanly():
            await server.serve(sockets=[listening])
        await app.stop()
    finally:
        listening.close()
        with contextlib.suppress(Exception):
            await app.shutdown()
        await state.close()
    log.info("stopped")
