"""The small pieces of the Telegram front end: parsing what users send, settings, and log redaction."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import SecretStr
from telegram import Bot, Update

from bot.config import TelegramSettings, load_telegram_settings
from bot.errors import BadInputError
from bot.telegram.app import webhook_options
from bot.telegram.chat import AddressedToBot, command_argument, has_words, result_id, strip_mention
from bot.telegram.redact import protect_secret, redact, shorten_polling_errors
from tests.fake_bot_api import BOT, GROUP, TOKEN, FakeBotApi


def settings(**values: object) -> TelegramSettings:
    return TelegramSettings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@protest_test_bot who wrote the letter?", "who wrote the letter?"),
        ("Who wrote it, @Protest_Test_Bot ?", "Who wrote it, ?"),
        ("@protest_test_botty is someone else", "@protest_test_botty is someone else"),
        ("mail@protest_test_bot.org", "mail@protest_test_bot.org"),
    ],
)
def test_strip_mention(text: str, expected: str) -> None:
    assert strip_mention(text, "protest_test_bot") == expected


def test_command_argument_keeps_the_question_whole() -> None:
    assert command_argument("/ask@protest_test_bot  Who wrote\nthe letter? ") == "Who wrote\nthe letter?"
    assert command_argument("/ask") == ""
    assert command_argument(None) == ""


@pytest.mark.parametrize(
    ("text", "expected"), [("🔥🔥", False), ("?!…", False), ("", False), ("ICE?", True), ("2018", True)]
)
def test_has_words(text: str, expected: bool) -> None:
    assert has_words(text) is expected


def test_result_ids_are_short_and_distinct() -> None:
    ids = {result_id(f"{n}:passage-{n}") for n in range(100)}
    assert len(ids) == 100 and all(len(i.encode()) <= 64 for i in ids)


def test_a_group_message_is_addressed_by_mention_or_reply() -> None:
    with FakeBotApi() as api:
        to_bot = api.message("@protest_test_bot what is Rekognition?", chat=GROUP)
        bot_said = {
            **api.message("earlier", chat=GROUP),
            "from": {k: BOT[k] for k in ("id", "is_bot", "first_name")},
        }
        reply = api.message("and who sold it?", chat=GROUP, reply_to=bot_said)
        to_someone = api.message("and who sold it?", chat=GROUP, reply_to=api.message("earlier", chat=GROUP))
        chatter = api.message("lunch? cc @alice", chat=GROUP)

        async def check() -> list[bool]:
            async with Bot(TOKEN, base_url=api.base_url) as bot:  # getMe: the bot learns its id and username
                updates = [
                    Update.de_json({"update_id": n, "message": m}, bot) for n, m in enumerate(messages)
                ]
                return [bool(AddressedToBot().check_update(u)) for u in updates]

        messages = [to_bot, reply, to_someone, chatter]
        assert asyncio.run(check()) == [True, True, False, False]


def test_token_shape_is_checked_without_echoing_it() -> None:
    assert settings(bot_token=f" {TOKEN} ").checked_token() == TOKEN
    with pytest.raises(BadInputError, match="not set"):
        settings(bot_token=None).checked_token()
    for bad in ("123:abc", "abc:" + "x" * 35, TOKEN + "!"):
        with pytest.raises(BadInputError) as caught:
            settings(bot_token=bad).checked_token()
        assert bad not in str(caught.value)


def test_invalid_settings_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_RATE_LIMIT_PER_MINUTE", "0")
    with pytest.raises(BadInputError, match="TELEGRAM_RATE_LIMIT_PER_MINUTE"):
        load_telegram_settings()


def test_webhook_options_listen_on_the_urls_path_with_a_secret() -> None:
    options = webhook_options(settings(webhook_url="https://bot.example.org/tg/hook", webhook_port=8443))
    assert options["url_path"] == "tg/hook" and options["webhook_url"] == "https://bot.example.org/tg/hook"
    assert len(options["secret_token"]) >= 32, "a random secret when none is configured"
    other = webhook_options(settings(webhook_url="https://bot.example.org/tg/hook"))
    assert other["secret_token"] != options["secret_token"]
    given = webhook_options(
        settings(webhook_url="https://b.example/x", webhook_secret=SecretStr("s3cret_value"))
    )
    assert given["secret_token"] == "s3cret_value"
    assert redact("secret is s3cret_value") == "secret is <redacted>"


def test_an_http_webhook_is_allowed_only_through_a_self_hosted_bot_api() -> None:
    local = settings(api_base_url="http://bot-api:8081/bot", webhook_url="http://replicas:8443/telegram")
    assert webhook_options(local)["webhook_url"] == "http://replicas:8443/telegram"
    with pytest.raises(BadInputError, match="must be a public https URL"):
        webhook_options(settings(webhook_url="http://replicas:8443/telegram"))
    with pytest.raises(BadInputError, match="must be an http"):
        webhook_options(settings(api_base_url="http://bot-api:8081/bot", webhook_url="ftp://replicas/t"))


def test_a_shortened_polling_error_stays_redacted(caplog: pytest.LogCaptureFixture) -> None:
    # The one-line polling warning is written after the record was redacted: it must redact itself.
    secret = "666666666:AAHsecret-for-the-polling-test_00000"
    protect_secret(secret)
    shorten_polling_errors()
    caplog.set_level(logging.WARNING, logger="telegram.ext.Updater")
    try:
        raise RuntimeError(f"GET https://api.telegram.org/bot{secret}/getUpdates failed")
    except RuntimeError as exc:
        logging.getLogger("telegram.ext.Updater").exception(
            "Exception happened while polling for updates.", exc_info=exc
        )
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "polling failed, retrying: RuntimeError" in caplog.text
    assert secret not in caplog.text and "bot<redacted>/getUpdates" in caplog.text


def test_redaction_covers_messages_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    secret = "555555555:AAHsecret-for-the-redaction-test_0000"
    protect_secret(secret)
    logger = logging.getLogger("httpx")
    caplog.set_level(logging.DEBUG, logger="httpx")
    logger.debug("HTTP Request: POST %s", f"https://api.telegram.org/bot{secret}/getMe")
    logger.debug(f"inline {secret} and quoted {secret.replace(':', '%3A')}")
    try:
        raise RuntimeError(f"The token `{secret}` was rejected by the server.")
    except RuntimeError:
        logger.exception("failed")
    assert secret not in caplog.text and secret.replace(":", "%3A") not in caplog.text
    assert "https://api.telegram.org/bot<redacted>/getMe" in caplog.text
    assert "The token `<redacted>` was rejected" in caplog.text
