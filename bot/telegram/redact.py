"""Secrets never reach a log: the bot token and webhook secret are redacted from every record, and
python-telegram-bot's polling failures are shortened to one line. No telegram import."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote as url_quote

REDACTED = "<redacted>"

_secrets: set[str] = set()
_factory_installed = False


def protect_secret(secret: str) -> None:
    """Redact `secret` from every log record made from now on, in any logger (httpx and PTB included).

    httpx logs request URLs, which carry the token, and PTB logs the API URL and names the token in
    InvalidToken; redacting when the record is made covers every handler and formatter at once.
    """
    global _factory_installed
    if len(secret) < 8:
        return  # too short to redact without mangling unrelated text
    _secrets.update({secret, url_quote(secret, safe="")})
    if _factory_installed:
        return
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(redacting_factory)
    _factory_installed = True


class PollingErrorsInOneLine(logging.Filter):
    """PTB logs every failed getUpdates at ERROR with a traceback, then retries by itself: a flaky
    network filled the log with tracebacks. One warning line says as much."""

    PTB_MESSAGE = "Exception happened while polling for updates."

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == self.PTB_MESSAGE and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            # The record factory redacted the record as made; this new text must be redacted too.
            record.msg, record.args = (
                "polling failed, retrying: %s: %s",
                (type(error).__name__, redact(str(error))),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class GivingUpInOneLine(logging.Filter):
    """When PTB gives up (the Bot API unreachable at start), it logs a traceback of ~100 lines just
    before `run` reports the same error in one `error:` line. Its record keeps one line, message and
    error; the traceback is for --verbose (the root logger at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        verbose = logging.getLogger().getEffectiveLevel() <= logging.DEBUG
        if record.exc_info and record.exc_info[1] is not None and not verbose:
            error = record.exc_info[1]
            record.msg, record.args = (
                "%s (%s: %s)",
                (record.getMessage(), type(error).__name__, redact(str(error))),
            )
            record.exc_info, record.exc_text = None, None
        return True


def shorten_polling_errors() -> None:
    """Install PollingErrorsInOneLine on PTB's Updater logger and GivingUpInOneLine on the logger of
    its network retry loop (once each)."""
    for name, kind in (("telegram.ext.Updater", PollingErrorsInOneLine), ("telegram.ext", GivingUpInOneLine)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


def redact(text: str) -> str:
    """`text` with every protected secret replaced."""
    for secret in tuple(_secrets):
        text = text.replace(secret, REDACTED)
    return text


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is the logging call's bug; leave it to the formatter
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean  # formatters use exc_text as is when it is set
