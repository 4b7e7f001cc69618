"""Domain exceptions. Their messages are safe to show to a user: no paths outside the project's
folders, no tokens, no tracebacks. The CLI turns them into one line and an exit code."""


class ProtestBotError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 1


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


class IndexMissingError(IndexUnavailableError):
    """No index has been built yet."""


class IndexCorruptError(IndexUnavailableError):
    """An index file is missing, truncated or unreadable."""


class IndexMismatchError(IndexUnavailableError):
    """The index was built with another model, dimension or format version."""


class ModelError(ProtestBotError):
    """The embedding model cannot be loaded."""
