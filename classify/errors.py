"""Exceptions whose message is shown to the user as one line (the CLI adds no traceback), and helpers to keep
those lines short and printable."""

from __future__ import annotations

import os

MAX_QUOTE = 80
"""Messages quote at most this many characters of a bad value."""


class ClassifyError(Exception):
    """Base class: a problem with the user's input, not a bug. ``exit_code`` is the CLI's exit status."""

    exit_code = 1


class ConfigError(ClassifyError):
    exit_code = 2


class DataError(ClassifyError):
    exit_code = 2


class DumpError(ClassifyError):
    """A file that is not a dump. The message starts with the file name."""


class RowError(DumpError):
    """A bad row of a tabular input (``file:row: missing 'text'``): reported, and the other rows go on."""


class UsageError(ClassifyError):
    """Options or inputs that do not go together (e.g. tabular files with --engine ray)."""

    exit_code = 2


class ModelError(ClassifyError):
    """A model directory that is missing, partial, corrupt or foreign."""


class OutputError(ClassifyError):
    """An output path that cannot be written (a directory, a read-only folder, a full disk)."""

    exit_code = 2


def printable(text: str) -> str:
    """``text`` with lone surrogates (file names that are not UTF-8, read with surrogateescape) as ``\\xNN``
    escapes, so it can always be encoded as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that surrogateescape did not make
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def display_name(path: str | os.PathLike) -> str:
    """A path as it appears in messages and output rows: printable, on one line."""
    return one_line(printable(os.fspath(path)), limit=None)


def one_line(text: str, limit: int | None = MAX_QUOTE) -> str:
    """Control characters and line breaks escaped, cut after ``limit`` characters (with '…')."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        text = "".join(repr(ch)[1:-1] if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)
    return text


def quote(value, limit: int = MAX_QUOTE) -> str:
    """A short, one-line quotation of a user's value for an error message: at most ``limit`` characters of
    its ``repr`` (the repr of a huge value is never built in full for strings, bytes and containers)."""
    if isinstance(value, (str, bytes)):
        head = value[: limit + 1]
        text = repr(head)
        if len(value) > limit:
            text = repr(value[:limit])[:-1] + "…" + text[-1]
        return one_line(text, limit=None)
    if isinstance(value, (list, tuple, set, dict)):
        kind = type(value).__name__
        return f"<{kind} of {len(value)} item{'s' if len(value) != 1 else ''}>"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<integer of {value.bit_length()} bits>"
    return one_line(repr(value), limit)


def error_line(message: str) -> str:
    """A user's error as the one line the command line and the scripts print: paths made printable, one line, at
    most 1,000 characters."""
    return one_line(display_name(message), limit=1000)


def run_script(main, prog: str) -> None:
    """Run a script's ``main`` (the benchmarks): a user's error (a ``ClassifyError``: a missing or foreign model,
    bad data) or a file that cannot be read ends as one line on stderr, ``prog: message``, and a non-zero exit
    status (the error's ``exit_code``, 1 for a file), not a traceback."""
    import sys

    try:
        main()
    except (ClassifyError, OSError) as err:
        print(f"{prog}: {error_line(str(err))}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 1))
