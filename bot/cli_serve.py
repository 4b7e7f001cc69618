"""The long-running front ends: `telegram` (the bot) and `serve` (the HTTP API and web page)."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli_common import RedisUrlOption, handles_errors


@handles_errors
def telegram(
    ctx: typer.Context,
    api_base_url: Annotated[
        str | None,
        typer.Option(
            help="Bot API server; the token is appended. For self-hosted servers and tests.",
            metavar="URL",
            envvar="TELEGRAM_API_BASE_URL",
            show_default="https://api.telegram.org/bot",
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="Public https URL: a webhook instead of polling.",
            envvar="TELEGRAM_WEBHOOK_URL",
            metavar="URL",
        ),
    ] = None,
    webhook_listen: Annotated[
        str | None,
        typer.Option(
            help="Webhook server address.",
            envvar="TELEGRAM_WEBHOOK_LISTEN",
            show_default="0.0.0.0",
            metavar="ADDRESS",
        ),
    ] = None,
    webhook_port: Annotated[
        int | None,
        typer.Option(
            help="Webhook server port.", envvar="TELEGRAM_WEBHOOK_PORT", show_default="8443", metavar="PORT"
        ),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(
            help="Questions per user per minute.",
            envvar="TELEGRAM_RATE_LIMIT_PER_MINUTE",
            show_default="20",
            metavar="N",
        ),
    ] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Run the Telegram bot (token from TELEGRAM_BOT_TOKEN, secrets from the environment or .env)."""
    from bot.config import StateSettings, load_settings, load_telegram_settings
    from bot.telegram.app import run

    options = {"api_base_url": api_base_url, "webhook_url": webhook_url, "webhook_listen": webhook_listen}
    tg = load_telegram_settings(**options, webhook_port=webhook_port, rate_limit_per_minute=rate_limit)
    run(ctx.obj, tg, load_settings(StateSettings, redis_url=redis_url))


@handles_errors
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to bind; anything but loopback needs PROTEST_BOT_API_TOKEN.",
            envvar="PROTEST_BOT_HOST",
            show_default="127.0.0.1",
            metavar="HOST",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to bind.",
            envvar="PROTEST_BOT_PORT",
            show_default="8000",
            min=0,
            max=65535,
            metavar="PORT",
        ),
    ] = None,
    redis_url: RedisUrlOption = None,
) -> None:
    """Serve the HTTP API and web page: /ask, /sources, /status, /healthz, /docs, and / in a browser."""
    from bot.config import ServeSettings, StateSettings, load_settings
    from bot.serve import run

    run(
        ctx.obj,
        load_settings(ServeSettings, host=host, port=port),
        load_settings(StateSettings, redis_url=redis_url),
    )
