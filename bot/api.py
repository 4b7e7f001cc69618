"""The HTTP API and web page (`protest-bot serve`): FastAPI routes over the one engine.

Routes only check input, call the engine in a worker thread (at most `api_concurrency` at once, so
two cores are not oversubscribed), and return what `render` makes of the answer: `/ask` gives
exactly the JSON of `protest-bot ask --json`. Bad input is a 4xx with a one-line `detail`, never a
traceback. Nothing here writes the corpus or the index: a newer index written by `add` or
`index update` is picked up by the reloader. This and `serve` are the only modules importing FastAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.config import ServeSettings, Settings
from bot.engine import Engine, validate_question
from bot.errors import BadInputError, ProtestBotError
from bot.index_reload import IndexReloader, keep_current
from bot.models import Answer
from bot.render import answer_dict, source_dict
from bot.shared_state import Limiter, MemoryState, SharedState
from bot.status import index_status

log = logging.getLogger(__name__)

WEB = Path(__file__).with_name("web")
# An answer with 20 citations, sent back as `previous`, is about 60 KB; nothing else comes close.
MAX_BODY_BYTES = 128 * 1024
MAX_PREVIOUS_CHARS = 20_000
# The page runs only its own script and style and can be framed by no one: whatever text the
# engine returns, a browser will not run it.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Previous(BaseModel):
    """An earlier answer, for a follow-up: the object /ask returned (only its question is needed)."""

    model_config = ConfigDict(extra="allow", strict=True)

    question: str = Field(max_length=MAX_PREVIOUS_CHARS)
    # The text that answer searched, when the client kept it (a follow-up of a follow-up).
    query: str | None = Field(default=None, max_length=MAX_PREVIOUS_CHARS)


class AskRequest(BaseModel):
    """A question; `k` citations at most; `previous` answer when the question follows one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(examples=["How many employees signed the letter?"])
    k: int | None = Field(default=None, ge=1, le=20)  # None: the setting PROTEST_BOT_TOP_K (3)
    previous: Previous | None = None


@dataclass
class ApiState:
    """What the routes share: the engine (None while it loads, swapped whole on reload), limits."""

    settings: Settings
    serve: ServeSettings
    engine: Engine | None = None
    # The limits live here: in memory, or in Redis shared with other replicas (PROTEST_BOT_REDIS_URL).
    shared: SharedState = field(default_factory=MemoryState)
    engine_calls: asyncio.Semaphore = field(init=False)
    limiter: Limiter = field(init=False)

    def __post_init__(self) -> None:
        self.engine_calls = asyncio.Semaphore(self.serve.api_concurrency)
        per_client = self.serve.api_rate_limit_per_minute
        self.limiter = self.shared.limiter("api", per_client, per_client * 20)


def create_app(
    settings: Settings,
    serve: ServeSettings,
    engine: Engine | None = None,
    open_engine: Callable[[Settings], Engine] | None = None,
    on_load_failure: Callable[[ProtestBotError], None] | None = None,
    shared: SharedState | None = None,
) -> FastAPI:
    """The API and page. Without `engine`, `open_engine` loads one after start-up (/healthz is 503 until
    then); a failure to load goes to `on_load_failure` (serve stops with its one-line message)."""
    state = ApiState(settings, serve, engine, shared or MemoryState())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = []
        if state.engine is None and open_engine is not None:
            tasks.append(asyncio.create_task(_load(state, open_engine, on_load_failure)))
        reloader = IndexReloader(settings.index)
        tasks.append(
            asyncio.create_task(
                keep_current(reloader, lambda: state.engine, _swap(state), settings.reload_seconds)
            )
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.shared.close()

    app = FastAPI(
        title="protest-bot",
        summary="Answers questions about the June 2018 Amazon employee protest with quoted, cited passages.",
        version="1",
        lifespan=lifespan,
    )
    app.state.api = state
    _install_errors(app)
    if serve.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(serve.api_cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _install_routes(app, state)
    return app


async def _load(
    state: ApiState,
    open_engine: Callable[[Settings], Engine],
    on_failure: Callable[[ProtestBotError], None] | None,
) -> None:
    try:
        state.engine = await asyncio.to_thread(open_engine, state.settings)
    except Exception as exc:
        if not isinstance(exc, ProtestBotError):
            log.error("loading the engine failed", exc_info=exc)
            exc = ProtestBotError(f"unexpected {type(exc).__name__} while loading: {exc}")
        if on_failure is not None:
            on_failure(exc)  # serve stops and prints it as its one error line
        else:
            log.error("cannot answer: %s", exc)
        return
    log.info("ready: answering from %d articles", len(state.engine.sources()))


def _swap(state: ApiState) -> Callable[[Engine], None]:
    def put(engine: Engine) -> None:
        state.engine = engine

    return put


# --- checks shared by the routes ----------------------------------------------------------------


def _authorized(state: ApiState) -> Callable[[Request], None]:
    token = state.serve.api_token.get_secret_value().encode() if state.serve.api_token else None

    def check(request: Request) -> None:
        if token is None:
            return
        scheme, _, supplied = request.headers.get("authorization", "").partition(" ")
        # compare_digest takes the same time wherever the strings differ: no timing hints.
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.strip().encode(), token):
            raise HTTPException(
                401, "missing or wrong API token (Authorization: Bearer …)", {"WWW-Authenticate": "Bearer"}
            )

    return check


def _rate_limited(state: ApiState) -> Callable[[Request], Awaitable[None]]:
    async def check(request: Request) -> None:
        verdict = await state.limiter.check(client_key(request.client.host if request.client else ""))
        if not verdict.allowed:
            wait = max(1, round(verdict.wait + 0.5))
            raise HTTPException(429, f"too many requests: try again in {wait} s", {"Retry-After": str(wait)})

    return check


def client_key(host: str) -> int:
    """The rate limiter's key for a client address (an int, as the limiter keys users)."""
    try:
        return int(ipaddress.ip_address(host))
    except ValueError:
        return int.from_bytes(hashlib.blake2b(host.encode(), digest_size=8).digest(), "big")


def _engine(state: ApiState) -> Engine:
    if state.engine is None:
        raise HTTPException(
            503, "the model and index are still loading: try again shortly", {"Retry-After": "5"}
        )
    return state.engine  # read once per request, so a reload never splits an answer


# --- routes -------------------------------------------------------------------------------------


def _install_routes(app: FastAPI, state: ApiState) -> None:
    guarded = [Depends(_authorized(state)), Depends(_rate_limited(state))]

    @app.post("/ask", dependencies=guarded, summary="Answer a question (the JSON of `ask --json`)")
    async def ask(request: AskRequest) -> dict[str, Any]:
        """Up to `k` quoted, cited passages that answer the question, or an abstention."""
        question = validate_question(request.question)
        previous = _previous(request.previous)
        engine = _engine(state)
        k = request.k or state.settings.top_k
        async with state.engine_calls:
            answer = await asyncio.to_thread(engine.answer, question, k, previous)
        return answer_dict(answer)

    @app.get("/sources", dependencies=guarded, summary="The articles the index holds")
    async def sources() -> dict[str, Any]:
        """Every article of the index answering questions now, as /ask cites it."""
        return {"sources": [source_dict(source) for source in _engine(state).sources()]}

    @app.get("/status", dependencies=guarded, summary="The index's status (`index status --json`)")
    async def status() -> dict[str, Any]:
        """Articles, passages, model, and whether the corpus changed since the index was built."""
        async with state.engine_calls:  # hashes the corpus: engine-sized work
            return await asyncio.to_thread(index_status, state.settings)

    @app.get("/healthz", summary="200 when the model and index are loaded, else 503")
    async def healthz() -> dict[str, Any]:
        """Whether questions can be answered now."""
        engine = _engine(state)
        return {"status": "ok", "articles": len(engine.index.manifest.articles)}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=WEB), name="static")


def _previous(previous: Previous | None) -> Answer | None:
    """The engine only reads an earlier answer's query: the question it searched, and those before."""
    if previous is None:
        return None
    query = previous.query if previous.query is not None else previous.question
    return Answer(question=previous.question, abstained=False, summary="", citations=(), query=query)


# --- errors: one line each ----------------------------------------------------------------------


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(*_describe_invalid(exc.errors()))

    @app.exception_handler(BadInputError)
    async def bad_input(request: Request, exc: BadInputError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(ProtestBotError)
    async def engine_error(request: Request, exc: ProtestBotError) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return _error(500, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": " ".join(detail.split())}, status_code=status, headers=headers)


def _describe_invalid(errors: Any) -> tuple[int, str]:
    """The first validation error as one line: 400 for a body that is not JSON, 422 for wrong fields."""
    first = next(iter(errors), {"type": "", "loc": (), "msg": "invalid request"})
    if first["type"] == "json_invalid":
        return 400, "the body is not valid JSON"
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    if not where:
        return 422, 'the body must be a JSON object like {"question": "…"}'
    return 422, f"{where}: {first['msg']}"


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, whether declared or sent in chunks."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self._detail())
            return message

        await self.app(scope, limited, send)

    def _detail(self) -> str:
        return f"the request body is too large (the limit is {self.limit // 1024} KB)"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _error(413, self._detail())(scope, receive, send)
