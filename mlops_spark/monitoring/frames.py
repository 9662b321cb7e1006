"""Names and helpers every monitoring module shares (the long format of the monitoring table)."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame

from mlops_spark.errors import MissingColumnError
from mlops_spark.metrics import METRIC, VALUE, safe_divide

COLUMN = "column"
BUCKET = "bucket"
BIN = "bin"
SLICE = "slice"
ALL = "all"
OTHER = "__other__"
NEW = "__new__"
PSI_EPSILON = 1e-4
"""Probability floor for PSI's logarithm (bins empty on one side would make it infinite)."""

N, TOTAL = "n", "total"


N, TOTAL = "n", "total"


def require(df: DataFrame, table: str, columns: Sequence[str]) -> None:
    have = set(df.columns)
    for column in columns:
        if column not in have:
            raise MissingColumnError(table, column, list(have))


__all__ = [
    "ALL",
    "BIN",
    "BUCKET",
    "COLUMN",
    "METRIC",
    "NEW",
    "OTHER",
    "PSI_EPSILON",
    "SLICE",
    "VALUE",
    "require",
    "safe_divide",
]
