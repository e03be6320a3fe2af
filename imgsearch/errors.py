"""Domain errors. Library code raises these; the CLI turns each into one line and an exit code."""


class ImgsearchError(Exception):
    """Base class: the message is meant for the user, on one line."""

    exit_code = 1


class UsageError(ImgsearchError):
    """Bad input from the user: unknown model spec, bad -k, missing path, bad dataset file."""

    exit_code = 2


class ModelUnavailable(ImgsearchError):
    """A model's weights cannot be loaded here (no internet, no local checkpoint)."""

    exit_code = 2


class IndexMismatch(ImgsearchError):
    """An index was built by another model or preprocessing than the one asked for."""

    exit_code = 2


class IndexCorrupt(ImgsearchError):
    """An index file or database cannot be read; the message says how to recover."""

    exit_code = 3


class IndexLocked(ImgsearchError):
    """Another process is writing to the same index dir."""

    exit_code = 4


class DecodeError(ImgsearchError):
    """One file cannot be read as an image; the indexer records it and moves on."""


def first_line(e: BaseException) -> str:
    """A library's exception as one short line for a domain error's message."""
    return (str(e).strip().splitlines() or [e.__class__.__name__])[0][:300]
