"""Errors raised by ragapp. The library raises; the CLI and UI turn them into one line."""

from __future__ import annotations

import errno
import sqlite3


class RagError(Exception):
    """Base class for every error ragapp raises on purpose."""

    exit_code = 1


class ConfigError(RagError):
    """A setting has a value ragapp cannot use."""

    exit_code = 2


class IndexNotFoundError(RagError):
    """No index exists at the given directory."""

    exit_code = 3


class IndexMismatchError(RagError):
    """The index was built with settings (embedding model, schema) that differ from the current ones."""

    exit_code = 4


class IndexCorruptError(RagError):
    """An index file is missing, truncated or altered."""

    exit_code = 5


class ModelNotAvailableError(RagError):
    """A model cannot be loaded offline; the message names the pip line that installs it."""

    exit_code = 6


class DocumentError(RagError):
    """One document could not be read; the message names the file and the reason."""

    exit_code = 7


class ParseError(DocumentError):
    """Raised by a format's parser (in the sandbox child): the file cannot be read, for the reason given."""


class NoDocumentsError(RagError):
    """The given paths contain no supported documents."""

    exit_code = 8


class IndexLockedError(RagError):
    """Another process is writing the index."""

    exit_code = 9


class IndexWriteError(RagError):
    """The index could not be written (disk full, permissions); the previous index is unchanged."""

    exit_code = 10


def disk_full(exc: BaseException) -> bool:
    """True when `exc` says the disk (or the user's quota) is full, as the kernel or SQLite says it."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def write_failure(what: str, folder: object, exc: BaseException, kept: str = "the previous index") -> IndexWriteError:
    """The error for `what` not written into `folder`: "disk full" first when that is why."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return IndexWriteError(f"{'disk full: ' if disk_full(exc) else ''}cannot write {what} at {folder}: {reason}; "
                           f"{kept} is unchanged")


class NotAnIndexError(RagError):
    """A folder given as an index holds other things: ragapp will not write into it."""

    exit_code = 11


class IndexUnavailableError(RagError):
    """The server holding the index (Milvus) does not answer, or refused a call; the message names the URI."""

    exit_code = 13


class ModelServerError(RagError):
    """A model server (OpenAI-compatible) could not give an answer; the message names the URL and what to do."""

    exit_code = 12


class TestSetFullError(RagError):
    """A verdict that the knowledge base's test set cannot take (it is full of questions that are not feedback)."""

    exit_code = 14


class BusyError(RagError):
    """More work of one kind at once than the server takes (page renders, eval jobs): try again shortly."""

    exit_code = 15
