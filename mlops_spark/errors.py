"""Typed errors. Each message says what is wrong and how to fix it.

The CLI maps `UsageError` (and its subclasses) to exit code 2 and every other
`MlopsError` to exit code 1, printing one line instead of a stack trace.
"""

from __future__ import annotations

import re
from typing import Any

from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.errors.exceptions.captured import CapturedException

SPARK_ERRORS: tuple[type[Exception], ...] = (PySparkException, Py4JError)
"""What a failure inside Spark (the JVM, Delta, a Python worker) surfaces as in the driver."""


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


class NothingInRangeError(JobFailed):
    """An explicit --date / --from --to range selects no partition of the job's input."""

    def __init__(self, table: str, start: object, end: object, hint: str) -> None:
        self.table = table
        super().__init__(f"{table} has no partitions in {start}..{end}: nothing to process ({hint})")


_ERROR_CLASS = re.compile(r"\[[A-Z][A-Z0-9_.]+\][^\n]*")


def describe_error(exc: BaseException) -> str:
    """One readable line for a Spark / Py4J / Delta error (its error class and message).

    A Py4J error's text starts with "An error occurred while calling o123.collect" and ends
    with a Java stack trace; the useful part is the line with the error class, e.g.
    ``[FAILED_READ_FILE.NO_HINT] Encountered error while reading file ...``.
    """
    text = str(exc)
    match = _ERROR_CLASS.search(text)
    if match:
        line = match.group(0)
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("An error occurred while calling", "at "))]
        line = (useful or lines or [type(exc).__name__])[0]
        line = line.lstrip(": ")
    line = re.sub(r"\s+", " ", line).strip()
    return line if len(line) <= 400 else line[:397] + "..."


def _java_throwable(exc: BaseException) -> Any:
    """The Java exception behind a Py4J error or a PySpark captured exception (else None)."""
    if isinstance(exc, Py4JJavaError):
        return exc.java_exception
    if isinstance(exc, CapturedException):
        return getattr(exc, "_origin", None)
    return None


def _python_error_line(traceback_text: str) -> str | None:
    """``ValueError: bad row`` from a Python traceback (a failed UDF's, as the JVM saw it)."""
    lines = [ln for ln in traceback_text.splitlines() if ln.strip() and not ln[0].isspace()]
    lines = [ln for ln in lines if not ln.startswith("Traceback (most recent call last)")]
    return lines[-1].strip() if lines else None


def _deepest_java_cause(throwable: Any) -> str:
    for _ in range(100):  # a cause chain can, in principle, loop
        cause = throwable.getCause()
        if cause is None:
            break
        throwable = cause
    name = str(throwable.getClass().getSimpleName())
    message = str(throwable.getMessage() or "").strip()
    if name == "PythonException":
        return _python_error_line(message) or name
    first = message.splitlines()[0].strip() if message else ""
    return f"{name}: {first}" if first else name


def root_cause(exc: BaseException) -> str:
    """One line naming the deepest cause of a failure, for a job's summary and the CLI.

    A Spark failure reaches the driver wrapped (``Py4JJavaError: An error occurred while
    calling o76737.save``); the line that says what happened is the innermost Java cause,
    e.g. ``SparkOutOfMemoryError: Not enough memory to build and broadcast the table ...``,
    or, when a Python UDF raised, that Python error (``ValueError: bad row``). Anything
    else gives ``Type: first line of its message``.
    """
    throwable = _java_throwable(exc)
    line = None
    if throwable is not None:
        try:
            line = _deepest_java_cause(throwable)
        except Exception:  # the JVM may be gone (often why the job died): fall back
            line = None
    if line is None:
        text = str(exc).strip()
        first = text.splitlines()[0].strip() if text else ""
        line = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    line = re.sub(r"\s+", " ", line).strip()
    return line if len(line) <= 400 else line[:397] + "..."
