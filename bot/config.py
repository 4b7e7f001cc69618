"""Settings in one typed object, built in one place from options, environment and `.env`.

Deeper modules take values as arguments and never read `os.environ` themselves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import BadInputError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class Settings(BaseSettings):
    """Engine settings: where the corpus and index live, which model embeds, how text is chunked."""

    model_config = SettingsConfigDict(
        env_prefix="PROTEST_BOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    corpus: Path = Path("corpus")
    index: Path = Path("index")
    model: str = DEFAULT_MODEL
    # Passages are packed from whole sentences up to this many word pieces; the model reads 256,
    # so passages never reach its truncation point (the question needs none of that room).
    chunk_tokens: int = Field(default=200, ge=16, le=512)
    # Sentences repeated at the start of the next passage, so an answer that straddles a boundary
    # is still whole in one of the two.
    chunk_overlap: int = Field(default=1, ge=0, le=3)
    top_k: int = Field(default=3, ge=1, le=20)
    batch_size: int = Field(default=64, ge=1, le=1024)
    # Above this many passages the store switches from exact to approximate (IVF) search.
    exact_search_limit: int = Field(default=200_000, ge=1)
    # How often a running server or bot checks for a newer index (written by `add` or `index update`).
    reload_seconds: float = Field(default=2.0, gt=0, le=3600)

    @field_validator("model")
    @classmethod
    def _strip_model(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the model name or path is empty")
        return value


class TelegramSettings(BaseSettings):
    """Telegram front-end settings. The token is a SecretStr so it never prints by accident."""

    model_config = SettingsConfigDict(
        env_prefix="TELEGRAM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    bot_token: SecretStr | None = None
    api_base_url: str = "https://api.telegram.org/bot"
    # NoDecode: the environment gives "1,2,3", not JSON; the validator below parses it.
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    rate_limit_per_minute: int = Field(default=20, ge=1)
    # All users together: protects the engine (two cores) from a crowd, not just from one user.
    rate_limit_global_per_minute: int = Field(default=120, ge=1)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    # How long a webhook update stays claimed by a replica that stopped renewing the claim (it died):
    # another replica takes the update over after this.
    webhook_claim_seconds: float = Field(default=10.0, gt=0, le=600)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _parse_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(int(part) for part in value.replace(" ", "").split(",") if part)
        if isinstance(value, int):
            return frozenset({value})
        return value

    def checked_token(self) -> str:
        """The token, checked for shape (never echoed: a near-miss may be a real token with a typo)."""
        token = self.bot_token.get_secret_value().strip() if self.bot_token else ""
        if not token:
            raise BadInputError(
                "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather and put its token in the "
                "environment or .env (see the Telegram section of README.md)"
            )
        if not TOKEN_SHAPE.fullmatch(token):
            raise BadInputError(
                "TELEGRAM_BOT_TOKEN is malformed: a bot token is the bot's id, a colon and a secret "
                "(like 123456789:AAE…), exactly as @BotFather gives it"
            )
        return token

    def checked_api_base_url(self) -> str:
        """The Bot API base URL (the token is appended to it), checked to be http(s)."""
        url = self.api_base_url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            default = type(self).model_fields["api_base_url"].default
            raise BadInputError(f"TELEGRAM_API_BASE_URL must be an http(s) URL, like {default}")
        return url.rstrip("/")


# A bot token as @BotFather gives it: the bot's numeric id, a colon, then the secret.
TOKEN_SHAPE = re.compile(r"\d{1,20}:[A-Za-z0-9_-]{30,100}")


def load_telegram_settings(**overrides: object) -> TelegramSettings:
    """TelegramSettings from options (those not None), environment and .env; one clear error if invalid."""
    return load_settings(TelegramSettings, "invalid Telegram setting TELEGRAM_{WHERE}: {msg}", **overrides)


def canonical_model_name(model: str) -> str:
    """The short hub name and the full one are the same model; record one spelling in manifests."""
    if model == DEFAULT_MODEL.split("/", 1)[1]:
        return DEFAULT_MODEL
    return model


class ServeSettings(BaseSettings):
    """HTTP API settings (`protest-bot serve`). The token is a SecretStr so it never prints by accident."""

    model_config = SettingsConfigDict(
        env_prefix="PROTEST_BOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Required for a bind other than loopback; sent by clients as `Authorization: Bearer …`.
    api_token: SecretStr | None = None
    # Questions per client address per minute (a burst of that many, then evenly refilled).
    api_rate_limit_per_minute: int = Field(default=60, ge=1)
    # Engine calls at once. One: a single question's encode already uses every core (torch's
    # threads), so two at once on a 2-core machine only make both slower.
    api_concurrency: int = Field(default=1, ge=1, le=64)
    # Origins allowed to call the API from a browser page of their own; none unless listed.
    # NoDecode: the environment gives "https://a.example,https://b.example", not JSON.
    api_cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


class StateSettings(BaseSettings):
    """Where the state shared by replicas lives: Redis when a URL is given, else process memory."""

    model_config = SettingsConfigDict(
        env_prefix="PROTEST_BOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # redis://[:password@]host:port/db (rediss:// for TLS, unix:// for a socket). A SecretStr: the
    # URL may carry a password.
    redis_url: SecretStr | None = None

    @field_validator("redis_url", mode="before")
    @classmethod
    def _check_redis_url(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
            if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
                raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


SettingsKind = TypeVar("SettingsKind", bound=BaseSettings)


def load_settings(
    kind: type[SettingsKind] = Settings,  # type: ignore[assignment]
    message: str = "invalid setting {where}: {msg}",
    **overrides: object,
) -> SettingsKind:
    """`kind` from options (those not None), environment and .env, in that order of precedence.

    Invalid values raise BadInputError with `message`, formatted with the first problem: `{msg}`
    pydantic's words, `{where}` the field (`{WHERE}` upper-cased, for environment variable names).
    Each front end keeps the wording its users and tests know.
    """
    try:
        return kind(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        raise BadInputError(message.format(where=where, WHERE=where.upper(), msg=first["msg"])) from None
    except ValueError as exc:  # pydantic-settings' own errors (a .env it cannot parse) carry no list
        raise BadInputError(message.format(where="value", WHERE="VALUE", msg=exc)) from None
