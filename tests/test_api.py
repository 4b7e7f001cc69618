"""The HTTP API through the real FastAPI app and an HTTP client: every route, every bad input, the
auth rules, the size and rate limits, concurrent requests, and index reloads. The engine is the real
one over the fake embedder's index (the real model is used by tests/test_serve.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from bot import api as api_module
from bot.api import MAX_BODY_BYTES, create_app
from bot.cli import app as cli_app
from bot.config import ServeSettings, Settings
from bot.engine import Engine
from bot.errors import BadInputError, IndexCorruptError
from bot.index_reload import IndexReloader
from bot.indexer import update_from_settings
from bot.manifest import CURRENT, current_version
from bot.render import answer_dict
from bot.serve import check_bind, is_loopback
from bot.startup import open_engine

TOKEN = "s3cret-token-for-the-api-tests-0123456789"
QUESTION = "What does Palantir run on?"
NEW_ARTICLE = """---
title: "Zebra crossing festival"
outlet: "Test Gazette"
date: 2018-06-30
---
The zebra crossing festival in Quimper drew four hundred marching tubas on Saturday.
"""


@pytest.fixture
def engine(built: Settings) -> Engine:
    return open_engine(built)


@pytest.fixture
def client(built: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(built, ServeSettings(), engine)) as test_client:
        yield test_client


def one_line(response: httpx.Response) -> str:
    """The `detail` of an error response, checked to be one line with no traceback."""
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    return detail


# --- routes -------------------------------------------------------------------------------------


def test_ask_returns_exactly_the_cli_json(client: TestClient, built: Settings, engine: Engine) -> None:
    response = client.post("/ask", json={"question": QUESTION, "k": 2})
    assert response.status_code == 200
    assert response.json() == answer_dict(engine.answer(QUESTION, 2))
    base = ["--corpus", str(built.corpus), "--index", str(built.index), "--model", built.model]
    cli = CliRunner().invoke(cli_app, [*base, "ask", "--json", "-k", "2", QUESTION])
    assert cli.exit_code == 0, cli.output
    assert response.json() == json.loads(cli.stdout)
    assert response.json()["citations"], "the fake index answers this question"


def test_the_top_k_setting_is_the_default_k_of_ask_and_the_api(built: Settings, engine: Engine) -> None:
    one = built.model_copy(update={"top_k": 1})
    with TestClient(create_app(one, ServeSettings(), engine)) as test_client:
        response = test_client.post("/ask", json={"question": QUESTION})
    assert response.json() == answer_dict(engine.answer(QUESTION, 1))
    base = ["--corpus", str(built.corpus), "--index", str(built.index), "--model", built.model]
    cli = CliRunner().invoke(cli_app, [*base, "ask", "--json", QUESTION], env={"PROTEST_BOT_TOP_K": "1"})
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout) == response.json()
    wider = CliRunner().invoke(
        cli_app, [*base, "ask", "--json", "-k", "3", QUESTION], env={"PROTEST_BOT_TOP_K": "1"}
    )
    assert len(json.loads(wider.stdout)["citations"]) > len(response.json()["citations"]) == 1


def test_ask_with_previous_reads_a_follow_up_with_the_question_before(
    client: TestClient, engine: Engine
) -> None:
    first = client.post("/ask", json={"question": "Who wrote the letter to Jeff Bezos?"}).json()
    follow = client.post("/ask", json={"question": "how many signed it?", "previous": first}).json()
    expected = engine.answer("how many signed it?", 3, previous=engine.answer(first["question"], 3))
    assert follow == answer_dict(expected)
    alone = client.post("/ask", json={"question": "how many signed it?"}).json()
    assert alone != follow, "without `previous` the follow-up is searched alone"


def test_ask_previous_query_carries_a_chain_of_follow_ups(client: TestClient, engine: Engine) -> None:
    first = engine.answer("Who wrote the letter to Jeff Bezos?", 3)
    second = engine.answer("how many signed it?", 3, previous=first)
    expected = engine.answer("and when was that?", 3, previous=second)
    previous = {"question": second.question, "query": second.query}
    got = client.post("/ask", json={"question": "and when was that?", "previous": previous}).json()
    assert got == answer_dict(expected)


def test_sources_and_status_match_the_cli(client: TestClient, built: Settings, engine: Engine) -> None:
    sources = client.get("/sources").json()["sources"]
    assert [s["id"] for s in sources] == [s.id for s in engine.sources()]
    cited = client.post("/ask", json={"question": QUESTION}).json()["citations"][0]["sources"][0]
    assert cited in sources, "a source has the same fields in /sources as in /ask"
    base = ["--corpus", str(built.corpus), "--index", str(built.index), "--model", built.model]
    cli = CliRunner().invoke(cli_app, [*base, "index", "status", "--json"])
    assert client.get("/status").json() == json.loads(cli.stdout)


def test_healthz_is_503_until_the_engine_is_loaded(built: Settings) -> None:
    release = threading.Event()

    def slow_open(settings: Settings) -> Engine:
        release.wait(30)
        return open_engine(settings)

    with TestClient(create_app(built, ServeSettings(), open_engine=slow_open)) as client:
        loading = client.get("/healthz")
        assert loading.status_code == 503 and "loading" in one_line(loading)
        assert client.post("/ask", json={"question": QUESTION}).status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while client.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the engine never loaded"
            time.sleep(0.05)
        assert client.post("/ask", json={"question": QUESTION}).status_code == 200


def test_a_failed_load_is_reported_once_and_healthz_stays_503(built: Settings) -> None:
    failures: list[Exception] = []

    def broken(settings: Settings) -> Engine:
        raise IndexCorruptError("the index is corrupt")

    app = create_app(built, ServeSettings(), open_engine=broken, on_load_failure=failures.append)
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while not failures:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.get("/healthz").status_code == 503
    assert [str(f) for f in failures] == ["the index is corrupt: run `protest-bot index build`"]


def test_openapi_docs_describe_the_routes(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/ask", "/sources", "/status", "/healthz"} <= set(schema["paths"])
    ask_body = schema["components"]["schemas"]["AskRequest"]["properties"]
    assert {"question", "k", "previous"} == set(ask_body)


def test_the_page_is_served_with_a_strict_content_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="ask-form"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    web = Path(api_module.WEB)
    for path in web.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "//cdn" not in text and "https://" not in text, f"{path.name} must load nothing from elsewhere"
    script = (web / "app.js").read_text(encoding="utf-8")
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", script)


def test_nothing_writes_over_http(client: TestClient) -> None:
    assert client.post("/reindex").status_code == 404
    assert client.post("/add").status_code == 404
    assert client.delete("/sources").status_code == 405
    assert client.put("/status").status_code == 405


# --- bad input ----------------------------------------------------------------------------------

BAD_BODIES: list[tuple[str, Any, int, str]] = [
    ("empty-question", {"question": ""}, 400, "the question is empty"),
    ("blank-question", {"question": "   \n "}, 400, "the question is empty"),
    ("nul-question", {"question": "\x00"}, 400, "the question is empty"),
    ("long-question", {"question": "x" * 1001}, 400, "too long (1001 characters; the limit is 1000)"),
    ("invalid-json", b'{"question": "What', 400, "not valid JSON"),
    ("not-json-at-all", b"question=What", 400, "not valid JSON"),
    ("empty-body", b"", 422, "the body must be a JSON object"),
    ("a-list", ["What does Palantir run on?"], 422, "the body must be a JSON object"),
    ("missing-question", {"k": 3}, 422, "question: Field required"),
    ("question-a-number", {"question": 42}, 422, "question: Input should be a valid string"),
    ("question-null", {"question": None}, 422, "question: Input should be a valid string"),
    ("k-a-string", {"question": QUESTION, "k": "3"}, 422, "k: Input should be a valid integer"),
    ("k-zero", {"question": QUESTION, "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("k-21", {"question": QUESTION, "k": 21}, 422, "k: Input should be less than or equal to 20"),
    ("k-a-float", {"question": QUESTION, "k": 2.5}, 422, "k: Input should be a valid integer"),
    ("previous-a-string", {"question": QUESTION, "previous": "x"}, 422, "previous: Input should be"),
    (
        "previous-no-question",
        {"question": QUESTION, "previous": {}},
        422,
        "previous.question: Field required",
    ),
    (
        "unknown-field",
        {"question": QUESTION, "questoin": "x"},
        422,
        "questoin: Extra inputs are not permitted",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "expected"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES]
)
def test_bad_input_is_a_4xx_with_one_line(client: TestClient, body: Any, status: int, expected: str) -> None:
    if isinstance(body, bytes):
        response = client.post("/ask", content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.post("/ask", json=body)
    assert response.status_code == status, response.text
    assert expected in one_line(response)


def test_a_body_over_the_limit_is_413(client: TestClient) -> None:
    big = json.dumps({"question": QUESTION, "previous": {"question": "x", "pad": "y" * MAX_BODY_BYTES}})
    declared = client.post("/ask", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "too large" in one_line(declared)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        data = big.encode()
        for at in range(0, len(data), 8192):
            yield data[at : at + 8192]

    streamed = client.post("/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "too large" in one_line(streamed)


def test_a_whole_answer_sent_back_as_previous_fits_the_limit(client: TestClient) -> None:
    earlier = client.post("/ask", json={"question": QUESTION, "k": 20}).json()
    follow = client.post("/ask", json={"question": "who else?", "k": 20, "previous": earlier})
    assert follow.status_code == 200


# --- auth ---------------------------------------------------------------------------------------


@pytest.fixture
def guarded(built: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(built, ServeSettings(api_token=TOKEN), engine)) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-of-some-length", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x", "Bearer "],
    ids=["none", "wrong", "basic-scheme", "no-scheme", "token-plus-one", "empty"],
)
def test_a_missing_or_wrong_token_is_401(guarded: TestClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("POST", "/ask"), ("GET", "/sources"), ("GET", "/status")):
        body = {"question": QUESTION} if method == "POST" else None
        response = guarded.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text and "API token" in one_line(response)


def test_the_right_token_is_let_in_and_never_logged(
    guarded: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = api_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_module.hmac, "compare_digest", spy)
    caplog.set_level(logging.DEBUG)
    headers = {"Authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
    assert guarded.post("/ask", json={"question": QUESTION}, headers=headers).status_code == 200
    assert guarded.get("/sources", headers=headers).status_code == 200
    assert (
        guarded.post(
            "/ask", json={"question": QUESTION}, headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    assert len(compared) == 3, "every check goes through the constant-time comparison"
    assert TOKEN not in caplog.text


def test_health_page_and_docs_need_no_token(guarded: TestClient) -> None:
    for path in ("/healthz", "/", "/docs", "/openapi.json", "/static/app.js"):
        assert guarded.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("host", "token", "expected"),
    [
        ("0.0.0.0", None, "reachable from other machines"),
        ("192.168.1.20", None, "reachable from other machines"),
        ("::", None, "reachable from other machines"),
        ("example.org", None, "reachable from other machines"),
        ("0.0.0.0", "short", "too short"),
        ("127.0.0.1", "short", "too short"),
    ],
    ids=["any-ipv4", "lan", "any-ipv6", "host-name", "short-token", "short-token-loopback"],
)
def test_an_open_bind_without_a_good_token_is_refused(host: str, token: str | None, expected: str) -> None:
    with pytest.raises(BadInputError, match=expected):
        check_bind(ServeSettings(host=host, api_token=token))


def test_loopback_binds_need_no_token_and_others_start_with_one() -> None:
    for host in ("127.0.0.1", "127.3.4.5", "::1", "localhost"):
        assert is_loopback(host)
        check_bind(ServeSettings(host=host))
    check_bind(ServeSettings(host="0.0.0.0", api_token=TOKEN))


def test_serve_refuses_an_open_bind_in_one_line(built: Settings) -> None:
    base = ["--corpus", str(built.corpus), "--index", str(built.index), "--model", built.model]
    result = CliRunner().invoke(
        cli_app, [*base, "serve", "--host", "0.0.0.0"], env={"PROTEST_BOT_API_TOKEN": ""}
    )
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "reachable from other machines" in errors[0]
    assert "Traceback" not in result.output
    bad_port = CliRunner().invoke(cli_app, [*base, "serve", "--port", "70000"])
    assert bad_port.exit_code == 2 and "Traceback" not in bad_port.output


# --- limits -------------------------------------------------------------------------------------


def test_the_rate_limit_is_per_client(built: Settings, engine: Engine) -> None:
    app = create_app(built, ServeSettings(api_rate_limit_per_minute=3), engine)

    async def run() -> tuple[list[httpx.Response], httpx.Response]:
        def client(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(address, 50000))
            return httpx.AsyncClient(transport=transport, base_url="http://api")

        async with client("10.0.0.1") as one, client("10.0.0.2") as other:
            responses = [await one.post("/ask", json={"question": QUESTION}) for _ in range(4)]
            return responses, await other.post("/ask", json={"question": QUESTION})

    responses, other = asyncio.run(run())
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    refused = responses[-1]
    assert int(refused.headers["retry-after"]) >= 1 and "too many requests" in one_line(refused)
    assert other.status_code == 200, "another client has its own allowance"


def test_concurrent_questions_are_answered_once_each_within_the_engine_bound(
    built: Settings, engine: Engine
) -> None:
    calls: list[str] = []
    running = 0
    most = 0
    lock = threading.Lock()
    real_answer = engine.answer

    def counted(question: str, k: int = 3, previous: Any = None) -> Any:
        nonlocal running, most
        with lock:
            calls.append(question)
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.02)  # hold the engine, so overlapping calls would show
            return real_answer(question, k, previous)
        finally:
            with lock:
                running -= 1

    engine.answer = counted  # type: ignore[method-assign]
    questions = [f"{QUESTION} ({n})" for n in range(12)] + ["Who wrote to Jeff Bezos?"] * 4
    for concurrency in (1, 2):
        calls.clear()
        most = 0
        app = create_app(built, ServeSettings(api_concurrency=concurrency), engine)

        async def run(app: Any = app) -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                return await asyncio.gather(*(http.post("/ask", json={"question": q}) for q in questions))

        responses = asyncio.run(run())
        assert [r.status_code for r in responses] == [200] * len(questions)
        assert [r.json()["question"] for r in responses] == questions, "each answer answers its own question"
        assert sorted(calls) == sorted(questions), "each question reached the engine exactly once"
        assert most == concurrency


def test_no_cors_unless_configured(built: Settings, engine: Engine) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    with TestClient(create_app(built, ServeSettings(), engine)) as plain:
        response = plain.post("/ask", json={"question": QUESTION}, headers=origin)
        assert "access-control-allow-origin" not in response.headers
        preflight = plain.options("/ask", headers={**origin, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers
    allowed = ServeSettings(api_cors_origins="https://elsewhere.example")
    with TestClient(create_app(built, allowed, engine)) as open_to_one:
        response = open_to_one.post("/ask", json={"question": QUESTION}, headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://elsewhere.example"
        other = open_to_one.post(
            "/ask", json={"question": QUESTION}, headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


# --- reloads ------------------------------------------------------------------------------------


def add_article(settings: Settings, fake: Any) -> None:
    (settings.corpus / "zebra.md").write_text(NEW_ARTICLE, encoding="utf-8")
    update_from_settings(settings, fake)


def corrupt_new_version(root: Path) -> str:
    """A copy of the live version with one file damaged, swapped in through CURRENT as a writer would."""
    live = current_version(root)
    name = "v-99999999T000000-damaged"
    shutil.copytree(live, root / name)
    (root / name / "sentences.npy").write_bytes((live / "sentences.npy").read_bytes()[:-64])
    (root / ".CURRENT.tmp").write_text(name + "\n", encoding="utf-8")
    (root / ".CURRENT.tmp").replace(root / CURRENT)
    return name


def test_the_reloader_loads_a_newer_index_and_keeps_the_old_one_when_it_is_broken(
    built: Settings, engine: Engine, fake_embedder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reloader = IndexReloader(built.index)
    assert reloader.newer(engine) is None, "nothing new yet"
    add_article(built, fake_embedder)
    fresh = reloader.newer(engine)
    assert fresh is not None and "zebra" in [s.id for s in fresh.sources()]
    assert (
        "four hundred marching tubas" in fresh.answer("How many tubas marched at the zebra festival?").summary
    )
    assert reloader.newer(fresh) is None
    caplog.set_level(logging.INFO)
    damaged = corrupt_new_version(built.index)
    assert reloader.newer(fresh) is None
    assert reloader.newer(fresh) is None, "a broken version is tried once"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and damaged in warnings[0] and "still answering from the old one" in warnings[0]
    assert "\n" not in warnings[0]


def test_serve_answers_from_a_newer_index_without_a_restart(
    built: Settings, engine: Engine, fake_embedder: Any
) -> None:
    settings = built.model_copy(update={"reload_seconds": 0.05})
    with TestClient(create_app(settings, ServeSettings(), engine)) as client:
        question = {"question": "How many tubas marched at the zebra festival?"}
        assert "four hundred marching tubas" not in client.post("/ask", json=question).text
        add_article(settings, fake_embedder)
        deadline = time.monotonic() + 20
        while "four hundred marching tubas" not in client.post("/ask", json=question).text:
            assert time.monotonic() < deadline, "the new article was never answered"
            time.sleep(0.05)
        assert "zebra" in [s["id"] for s in client.get("/sources").json()["sources"]]


def test_serve_with_a_damaged_index_stops_with_one_line_and_exit_3(built: Settings) -> None:
    from tests.test_serve import free_port

    (built.index / CURRENT).write_text("v-gone\n", encoding="utf-8")
    base = ["--corpus", str(built.corpus), "--index", str(built.index), "--model", built.model]
    result = CliRunner().invoke(cli_app, [*base, "serve", "--port", str(free_port())])
    assert result.exit_code == 3, result.output
    errors = [line for line in result.output.splitlines() if "v-gone" in line]
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert "run `protest-bot index build`" in errors[0] and "Traceback" not in result.output
