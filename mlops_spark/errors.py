"""Typed errors. Each message says what is wrong and how to fix it.

The CLI maps `UsageError` (and its subclasses) to exit code 2 and every other
`MlopsError` to exit code 1, printing one line instead of a stack trace.
"""

from __future__ import annotations


class MlopsError(Exception):
    """Base class of every error this framework raises on purpose."""


class UsageError(MlopsError):
    """Bad command-line usage (exit code 2)."""


class ConfigError(UsageError):
    """An invalid or missing configuration file (exit code 2)."""


class JobFailed(MlopsError):
    """A job could not finish; nothing past the last committed Delta version was written."""


class TableNotFoundError(JobFailed):
    def __init__(self, table: str, path: str, hint: str = "") -> None:
        self.table, self.path = table, path
        msg = f"table {table!r} does not exist at {path}"
        super().__init__(f"{msg}; {hint}" if hint else msg)


class MissingColumnError(JobFailed):
    def __init__(self, table: str, column: str, available: list[str] | None = None) -> None:
        self.table, self.column = table, column
        msg = f"table {table!r} has no column {column!r}"
        if available:
            msg += f" (it has: {', '.join(sorted(available))})"
        super().__init__(msg)


class SchemaChangeError(JobFailed):
    """A source changed shape in a way the schema policy does not allow."""


class DataQualityError(JobFailed):
    """Too much of a partition failed its expectations: nothing was written."""


class ModelNotFoundError(JobFailed):
    """A model name, version or alias is not in the registry."""


class TrackingServerError(JobFailed):
    """The MLflow tracking server could not be reached."""
