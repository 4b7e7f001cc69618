"""Running the HTTP API (`protest-bot serve`) with uvicorn, safe by default.

It binds loopback unless told otherwise, and refuses any other address without an API token. It
starts listening at once and loads the model and index in the background (/healthz says when they
are ready); an index that cannot be loaded stops it with the engine's one-line error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import Iterator

from bot.config import ServeSettings, Settings, StateSettings
from bot.errors import BadInputError, ProtestBotError

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere


def check_bind(serve: ServeSettings) -> None:
    """Refuse to start where the API would be open to others without a token."""
    token = serve.api_token.get_secret_value() if serve.api_token else ""
    if serve.api_token is not None and len(token) < MIN_TOKEN_CHARS:
        raise BadInputError(
            f"PROTEST_BOT_API_TOKEN is too short (at least {MIN_TOKEN_CHARS} characters; "
            "e.g. `openssl rand -hex 32`)"
        )
    if not is_loopback(serve.host) and not token:
        raise BadInputError(
            f"--host {serve.host} is reachable from other machines: set PROTEST_BOT_API_TOKEN "
            "(clients send it as `Authorization: Bearer …`), or bind 127.0.0.1"
        )


def run(settings: Settings, serve: ServeSettings, shared: StateSettings | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM; rate limits in Redis when `shared` names one."""
    import uvicorn

    from bot.api import create_app
    from bot.shared_state import open_state
    from bot.startup import open_engine

    check_bind(serve)
    _configure_logging()
    # Bound before the model loads: a port in use is one error line at once (uvicorn would log it
    # and exit with its own status, 3, which here means a damaged index).
    listening = listen(serve.host, serve.port, "the HTTP API")
    failures: list[ProtestBotError] = []
    server: uvicorn.Server | None = None

    def stop(exc: ProtestBotError) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    redis_url = shared.redis_url.get_secret_value() if shared and shared.redis_url else None
    app = create_app(
        settings,
        serve,
        open_engine=lambda s: open_engine(s, notify=log.info),
        on_load_failure=stop,
        shared=open_state(redis_url, namespace="serve"),
    )
    # log_config=None: uvicorn's loggers go through ours (one format, no colour codes in files).
    config = uvicorn.Config(
        app,
        host=serve.host,
        port=serve.port,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    log.info(
        "serving on http://%s:%d (token %s)", serve.host, serve.port, "required" if serve.api_token else "off"
    )
    try:
        with stop_signals_end_cleanly():
            server.run(sockets=[listening])
    finally:
        listening.close()
    if failures:
        raise failures[0]


def listen(host: str, port: int, purpose: str) -> socket.socket:
    """A listening socket on host:port, or one line saying why there can't be one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        # create_server appends "(while attempting to bind on address …)" to strerror: the bare reason.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ProtestBotError(f"cannot listen for {purpose} on {host}:{port}: {reason}") from None


@contextlib.contextmanager
def stop_signals_end_cleanly() -> Iterator[None]:
    """uvicorn shuts down gracefully on SIGINT or SIGTERM, then raises the signal again for whoever
    handled it before; that is us, and a server stopped by a signal has done its job: exit 0."""
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {stop: signal.signal(stop, lambda number, frame: None) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _configure_logging() -> None:
    """A server logs what it does at INFO: start, requests, reloads."""
    for name in ("bot", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
