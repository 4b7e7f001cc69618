"""Domain exceptions. Their messages are safe to show to a user: no paths outside the project's
folders, no tokens, no tracebacks. The CLI turns them into one line and an exit code."""


class ProtestBotError(Exception):
    """Base of every error the engine raises on purpose. A kind of error that has one remedy says it
    in `advice`, added to each message ("…: run `protest-bot index build`"); `advice=` overrides it."""

    exit_code = 1
    advice = ""

    def __init__(self, message: str, advice: str | None = None) -> None:
        advice = self.advice if advice is None else advice
        super().__init__(f"{message}: {advice}" if advice else message)


class BadInputError(ProtestBotError):
    """The user's input (question, option, file) cannot be used."""

    exit_code = 2


class ArticleError(BadInputError):
    """An article file cannot be read or added."""


class CorpusError(ProtestBotError):
    """The corpus folder is missing or unreadable."""


class IndexUnavailableError(ProtestBotError):
    """The index cannot be used or written: missing, corrupt, built differently from what is asked for
    now, not readable or writable, or another writer busy. (Not the builtin IndexError, which the
    tables raise for a row out of range.)"""

    exit_code = 3


REBUILD = "run `protest-bot index build`"


class IndexMissingError(IndexUnavailableError):
    """No index has been built yet."""

    advice = REBUILD


class IndexCorruptError(IndexUnavailableError):
    """An index file is missing, truncated or unreadable."""

    advice = REBUILD


class IndexMismatchError(IndexUnavailableError):
    """The index was built with another model, dimension or format version."""

    advice = REBUILD


class ModelError(ProtestBotError):
    """The embedding model cannot be loaded."""
