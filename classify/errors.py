"""Exceptions whose message is shown to the user as one line (the CLI adds no traceback)."""


class ClassifyError(Exception):
    """Base class: a problem with the user's input, not a bug. ``exit_code`` is the CLI's exit status."""

    exit_code = 1


class ConfigError(ClassifyError):
    exit_code = 2


class DataError(ClassifyError):
    exit_code = 2


class DumpError(ClassifyError):
    """A file that is not a dump. The message starts with the file name."""


class ModelError(ClassifyError):
    """A model directory that is missing, partial, corrupt or foreign."""
