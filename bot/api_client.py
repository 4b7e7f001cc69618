"""Asking a running `protest-bot serve` instead of loading the model: what makes `ask` instant.

Only the standard library's urllib is imported here: no torch, no NumPy, and not httpx either, whose
import pulls in httpcore and, where it is installed, trio (0.1 s of a 0.35 s `ask`). The answer comes
back as the JSON contract and is turned into the engine's `Answer` again, so the CLI renders it
exactly as it renders an answer it made itself.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from typing import Any

from bot.errors import BadInputError, ProtestBotError
from bot.models import Answer, AnswerSpan, Citation, Source

# An answer may wait behind others on a busy server; connecting to a reachable one is instant.
ANSWER_SECONDS = 120.0
# engine.py joins the notes after the summary; the contract carries them only inside `answer`.
_NOTE = re.compile(r"The sources give different figures: .*? in \[\d+\], .*? in \[\d+\]\.")


class ServerUnreachable(ProtestBotError):
    """No server answers at the address (refused, unknown host): answer in-process instead."""


class ServerError(ProtestBotError):
    """The server refused or failed a request; its one-line reason is the message."""


class ApiClient:
    """A `protest-bot serve` at `url`, with the bearer token when the server needs one."""

    def __init__(self, url: str, token: str | None = None) -> None:
        if not re.match(r"https?://[^/\s]+", url):
            raise BadInputError(f"--server must be an http:// or https:// address, not {url!r}")
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        # No proxy from the environment: questions meant for this server go to it and nowhere else.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def ask(self, question: str, k: int, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """The server's answer: the JSON contract of `ask --json`."""
        body: dict[str, Any] = {"question": question, "k": k}
        if previous is not None:
            body["previous"] = previous
        # ASCII-escaped JSON: a question with bytes that are not UTF-8 (surrogates, as Python reads
        # them) reaches the engine, which refuses it with the same line as in-process.
        return self._request("/ask", json.dumps(body).encode("ascii"))

    def check(self) -> None:
        """Raise ServerUnreachable unless a server answers at the address."""
        self._request("/healthz")

    def close(self) -> None:
        self._opener.close()

    def _request(self, path: str, body: bytes | None = None) -> dict[str, Any]:
        headers = {**self._headers, **({"Content-Type": "application/json"} if body is not None else {})}
        request = urllib.request.Request(self.url + path, data=body, headers=headers)
        try:
            with self._opener.open(request, timeout=ANSWER_SECONDS) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise _refusal(self.url, exc.code, exc.reason, exc.read()) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (ConnectionRefusedError, socket.gaierror, TimeoutError)):
                raise ServerUnreachable(f"no server at {self.url} ({_reason(exc.reason)})") from None
            raise ServerError(f"the server at {self.url} failed: {_reason(exc.reason)}") from None
        except (OSError, ValueError) as exc:  # a reset connection, a bad status line, a timeout mid-answer
            raise ServerError(f"the server at {self.url} failed: {_reason(exc)}") from None
        try:
            return json.loads(text)
        except ValueError:
            raise ServerError(f"the server at {self.url} did not answer with JSON") from None


def _refusal(url: str, status: int, reason: str, body: bytes) -> ProtestBotError:
    try:
        detail = str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        detail = str(reason)
    message = " ".join(detail.split())
    if status in (400, 413, 422):
        return BadInputError(message)  # the same exit code as the same input in-process
    return ServerError(f"the server at {url} answered {status}: {message}")


def _reason(exc: object) -> str:
    text = exc if isinstance(exc, str) else " ".join(str(exc).split())
    return text or type(exc).__name__


def _citation(data: dict[str, Any]) -> Citation:
    return Citation(
        n=data["n"],
        passage_text=data["passage"],
        quote=data["quote"],
        score=data["score"],
        sources=tuple(_source(s) for s in data["sources"]),
    )


def answer_from_dict(data: dict[str, Any]) -> Answer:
    """The engine's Answer from the JSON contract (the inverse of `render.answer_dict`)."""
    try:
        citations = tuple(_citation(c) for c in data["citations"])
        notes = data.get("notes")
        span = data.get("answer_span")
        return Answer(
            question=data["question"],
            abstained=data["abstained"],
            summary=data["answer"],
            citations=citations,
            notes=tuple(notes) if notes is not None else tuple(_NOTE.findall(data["answer"])),
            answer_span=AnswerSpan(n=span["n"], text=span["text"]) if span else None,
            query=data.get("query") or "",
            related=tuple(_citation(c) for c in data.get("related") or ()),
        )
    except (KeyError, TypeError) as exc:
        raise ServerError(f"the server's answer does not follow the JSON contract ({exc})") from None


def _source(data: dict[str, Any]) -> Source:
    return Source(
        id=data["id"],
        title=data["title"],
        outlet=data["outlet"],
        date=data["date"],
        url=data["url"],
        path=data["path"],
        label=data.get("label") or "",
    )
