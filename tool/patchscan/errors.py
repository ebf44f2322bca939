"""Errors that reach the user: each carries the exit code the CLI maps it to."""


class PatchscanError(Exception):
    """A failure explained to the user in one line, with no traceback."""

    exit_code = 2


class UsageError(PatchscanError):
    """The command line asks for something that cannot be done (bad path, model, option)."""

    exit_code = 2


class ModelError(PatchscanError):
    """A model file is missing, unreadable or lacks the metadata patchscan needs."""

    exit_code = 2


class ImageError(Exception):
    """One file could not be turned into model input; its message is the reason shown in reports."""
