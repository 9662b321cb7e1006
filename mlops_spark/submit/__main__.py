"""``python -m mlops_spark.submit``: what spark-submit.sh runs."""

from __future__ import annotations

from mlops_spark.submit.command import entry_point

if __name__ == "__main__":
    entry_point()
