"""Job functions: thin wiring from config and arguments to library calls.

Each job is ``job(config, args, spark=None) -> JobContext``; the CLI, the spark-submit
entry points in ``jobs/`` and notebooks all call these same functions.
"""

from __future__ import annotations

from mlops_spark.jobs.args import JobArgs

__all__ = ["JobArgs"]
