"""Asking a running `protest-bot serve` instead of loading the model: what makes `ask` instant.

Only httpx is imported here (no torch, no NumPy): a question costs a request, not a model load.
The answer comes back as the JSON contract and is turned into the engine's `Answer` again, so the
CLI renders it exactly as it renders an answer it made itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from bot.errors import BadInputError, ProtestBotError
from bot.models import Answer, Citation, Source

# Connecting is instant on a reachable server; an answer may wait behind others on a busy one.
CONNECT_SECONDS = 2.0
ANSWER_SECONDS = 120.0
# answer.py joins the notes after the summary; the contract carries them only inside `answer`.
_NOTE = re.compile(r"The sources give different figures: .*? in \[\d+\], .*? in \[\d+\]\.")


class ServerUnreachable(ProtestBotError):
    """No server answers at the address (refused, timed out, unknown host): answer in-process instead."""


class ServerError(ProtestBotError):
    """The server refused or failed a request; its one-line reason is the message."""


class ApiClient:
    """A `protest-bot serve` at `url`, with the bearer token when the server needs one."""

    def __init__(self, url: str, token: str | None = None) -> None:
        if not re.match(r"https?://[^/\s]+", url):
            raise BadInputError(f"--server must be an http:// or https:// address, not {url!r}")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(ANSWER_SECONDS, connect=CONNECT_SECONDS),
            trust_env=False,  # a proxy from the environment must not see questions meant for this server
        )

    def ask(self, question: str, k: int, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """The server's answer: the JSON contract of `ask --json`."""
        body: dict[str, Any] = {"question": question, "k": k}
        if previous is not None:
            body["previous"] = previous
        # ASCII-escaped JSON: a question with bytes that are not UTF-8 (surrogates, as Python reads them)
        # reaches the engine, which refuses it with the same line as in-process.
        return self._request(
            "POST",
            "/ask",
            content=json.dumps(body).encode("ascii"),
            headers={"Content-Type": "application/json"},
        )

    def check(self) -> None:
        """Raise ServerUnreachable unless a server answers at the address."""
        self._request("GET", "/healthz")

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ServerUnreachable(f"no server at {self.url} ({_reason(exc)})") from None
        except httpx.HTTPError as exc:
            raise ServerError(f"the server at {self.url} failed: {_reason(exc)}") from None
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise ServerError(f"the server at {self.url} did not answer with JSON") from None
        raise _refusal(self.url, response)


def _refusal(url: str, response: httpx.Response) -> ProtestBotError:
    try:
        detail = str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        detail = response.reason_phrase
    message = " ".join(detail.split())
    if response.status_code in (400, 413, 422):
        return BadInputError(message)  # the same exit code as the same input in-process
    return ServerError(f"the server at {url} answered {response.status_code}: {message}")


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def answer_from_dict(data: dict[str, Any]) -> Answer:
    """The engine's Answer from the JSON contract (the inverse of `render.answer_dict`)."""
    try:
        citations = tuple(
            Citation(
                n=c["n"],
                passage=c["passage"],
                quote=c["quote"],
                score=c["score"],
                sources=tuple(_source(s) for s in c["sources"]),
            )
            for c in data["citations"]
        )
        notes = data.get("notes")
        return Answer(
            question=data["question"],
            abstained=data["abstained"],
            answer=data["answer"],
            citations=citations,
            notes=tuple(notes) if notes is not None else tuple(_NOTE.findall(data["answer"])),
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
    )
