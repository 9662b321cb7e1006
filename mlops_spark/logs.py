"""The jobs' log: progress lines and errors through `logging`, as text or one JSON object per line.

Every progress line a job prints (``[score] scored 40 partitions ...``) is a record of the
``mlops_spark.jobs`` logger at INFO, with the job and its run id attached; the CLI's error
lines are records at ERROR. Nothing else changes for a reader of the terminal: the text
format is the message alone, on stderr, as before. For a log shipper, ``--log-format json``
(or ``MLOPS_LOG_FORMAT=json``) writes one object per line::

    {"time": "2026-12-04T18:02:11.412Z", "level": "INFO", "logger": "mlops_spark.jobs",
     "message": "[score] nothing new to score: ...", "job": "score", "run_id": "3f0c..."}

``--log-level`` (or ``MLOPS_LOG_LEVEL``) filters them (WARNING keeps warnings and errors).
Spark's own JVM log level is separate: ``MLOPS_SPARK_LOG_LEVEL`` (default WARN).

The first job installs that stderr handler on the ``mlops_spark`` logger (not on the
root logger), so a notebook cell or a scheduler's task log shows progress without any
set-up and a host's own root handlers do not print each line twice. A program that wants
the records in its own handlers sets ``logging.getLogger("mlops_spark").propagate = True``
after the first job (and removes the handler if it wants the lines only once).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import Any, TextIO

from mlops_spark.errors import UsageError

LOGGER = "mlops_spark"
FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_FIELDS = ("job", "run_id")
"""Extra record attributes the JSON format carries when a record has them."""


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time (a notebook or pytest replaces it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:  # StreamHandler.__init__ assigns it
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ms), level, logger, message, job, run_id."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        out: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            if (value := getattr(record, name, None)) is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def parse_level(text: str) -> int:
    name = text.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LEVELS:
        raise UsageError(f"log level {text!r}: expected one of {', '.join(LEVELS)}")
    return int(logging.getLevelName(name))


def configure(level: str | None = None, fmt: str | None = None) -> logging.Logger:
    """Set the jobs' log level and format (defaults: $MLOPS_LOG_LEVEL or INFO, $MLOPS_LOG_FORMAT
    or text). Replaces the handler an earlier call installed; leaves other handlers alone."""
    level = level or os.environ.get("MLOPS_LOG_LEVEL") or "INFO"
    fmt = (fmt or os.environ.get("MLOPS_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        raise UsageError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    logger = logging.getLogger(LOGGER)
    logger.setLevel(parse_level(level))
    for handler in [h for h in logger.handlers if isinstance(h, _Stderr)]:
        logger.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def ensure_configured() -> None:
    """Install the default handler unless this package's logger already has one."""
    if not logging.getLogger(LOGGER).handlers:
        configure()


def job_logger() -> logging.Logger:
    ensure_configured()
    return logging.getLogger(f"{LOGGER}.jobs")
