"""The Telegram front end's wiring: the python-telegram-bot Application with the handlers, log
redaction and flood limits, run by long polling or as a webhook server. Only bot/telegram/ imports
`telegram`; the CLI imports this module lazily."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from telegram import LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, Defaults

from bot.config import Settings, StateSettings, TelegramSettings
from bot.engine import Engine
from bot.errors import BadInputError, ProtestBotError
from bot.shared_state import MemoryState, SharedState, open_state
from bot.telegram.handlers import BotState, Handlers
from bot.telegram.limits import NETWORK_BACKOFF_SECONDS, NETWORK_RETRIES, RetryingRateLimiter
from bot.telegram.redact import protect_secret, redact, shorten_polling_errors

log = logging.getLogger(__name__)

# Telegram's rule for setWebhook's secret_token.
WEBHOOK_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Only what the handlers use: Telegram then does not send edits, member changes and the like at all.
ALLOWED_UPDATES = ("message", "inline_query", "callback_query")
# Telegram's own Bot API, which calls https webhooks only; a self-hosted one calls http too.
TELEGRAM_API_HOST = "api.telegram.org"


class TelegramStartError(ProtestBotError):
    """The bot could not start: the Bot API rejected the token or could not be reached."""


def webhook_options(tg: TelegramSettings) -> dict[str, Any]:
    """Arguments for PTB's webhook server: where to listen, the public URL, and the secret Telegram echoes."""
    url = (tg.webhook_url or "").strip()
    parts = urlsplit(url)
    official = urlsplit(tg.checked_api_base_url()).hostname == TELEGRAM_API_HOST
    if official and (parts.scheme != "https" or not parts.netloc):
        raise BadInputError(
            "the webhook URL must be a public https URL (Telegram only calls https webhooks; "
            "a self-hosted Bot API server, TELEGRAM_API_BASE_URL, also calls http ones)"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInputError("the webhook URL must be an http(s) URL the Bot API server can reach")
    # Without a configured secret, a random one still proves that updates come from Telegram.
    secret = tg.webhook_secret.get_secret_value() if tg.webhook_secret else secrets.token_urlsafe(32)
    if not WEBHOOK_SECRET_SHAPE.fullmatch(secret):
        raise BadInputError("TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    protect_secret(secret)
    return {
        "listen": tg.webhook_listen,
        "port": tg.webhook_port,
        "url_path": parts.path.lstrip("/"),
        "webhook_url": url,
        "secret_token": secret,
    }


def build_application(
    settings: Settings,
    tg: TelegramSettings,
    engine: Engine | None = None,
    network_retries: int = NETWORK_RETRIES,
    backoff: float = NETWORK_BACKOFF_SECONDS,
    state: SharedState | None = None,
) -> Application:
    """The PTB Application with every handler; without `engine`, one is opened once the token is accepted.
    `state` is what replicas share (in memory unless given)."""
    token = tg.checked_token()
    protect_secret(token)
    shorten_polling_errors()
    handlers = Handlers(BotState(settings, tg, engine, state or MemoryState()))
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(tg.checked_api_base_url())
        .concurrent_updates(True)
        .rate_limiter(RetryingRateLimiter(network_retries=network_retries, backoff=backoff))
        .defaults(
            Defaults(
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                allow_sending_without_reply=True,
            )
        )
        .post_init(handlers.post_init)
        .post_shutdown(lambda _app: handlers.shared.state.close())
        .build()
    )
    handlers.install(app)
    return app


def run(settings: Settings, tg: TelegramSettings, shared: StateSettings | None = None) -> None:
    """Run the bot until Ctrl-C or SIGTERM: long polling, or a webhook server when a webhook URL is set;
    state in Redis when `shared` names one."""
    _configure_logging()
    # run_polling closes its event loop when it returns: a fresh one lets run() be called again in
    # the same process (the CLI tests do).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    redis_url = shared.redis_url.get_secret_value() if shared and shared.redis_url else None
    if redis_url and tg.webhook_url and tg.webhook_secret is None:
        raise BadInputError(
            "TELEGRAM_WEBHOOK_SECRET must be set when replicas share state (PROTEST_BOT_REDIS_URL): "
            "each would otherwise register a random secret of its own and refuse the others' updates"
        )
    # The bot's id (the token's public part before the colon) keeps two bots on one Redis apart.
    state = open_state(redis_url, namespace=tg.checked_token().split(":", 1)[0])
    app = build_application(settings, tg, state=state)
    where = redact(tg.checked_api_base_url())
    if redis_url:
        from bot.redis_state import redacted_url

        log.info("state shared in Redis at %s", redacted_url(redis_url))
    try:
        if tg.webhook_url:
            from bot.telegram.webhook import serve_webhook

            options = webhook_options(tg)
            log.info("starting: webhook %s on %s:%s", tg.webhook_url, tg.webhook_listen, tg.webhook_port)
            webhook = serve_webhook(app, state, options, list(ALLOWED_UPDATES), tg.webhook_claim_seconds)
            loop.run_until_complete(webhook)
            loop.close()
        else:
            log.info("starting: long polling %s", where)
            app.run_polling(allowed_updates=list(ALLOWED_UPDATES))
    except InvalidToken:
        raise TelegramStartError(
            f"the Bot API at {where} rejected TELEGRAM_BOT_TOKEN: check it with @BotFather"
        ) from None
    except NetworkError as exc:
        raise TelegramStartError(f"cannot reach the Bot API at {where}: {redact(str(exc))}") from None
    except TelegramError as exc:
        raise TelegramStartError(
            f"the Bot API at {where} refused to start the bot: {redact(str(exc))}"
        ) from None
    except ProtestBotError:
        raise
    except Exception as exc:
        if redact(str(exc)) == str(exc):
            raise
        raise TelegramStartError(f"unexpected {type(exc).__name__}: {redact(str(exc))}") from None


def _configure_logging() -> None:
    """A long-running bot logs what it does (and feedback) at INFO; httpx stays quiet: URLs hold the token."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        logging.getLogger("bot").setLevel(logging.INFO)
    httpx = logging.getLogger("httpx")
    httpx.setLevel(max(httpx.getEffectiveLevel(), logging.WARNING))
