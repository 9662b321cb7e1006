"""mlops_spark: production machine learning on Apache Spark, Delta Lake and MLflow."""

from __future__ import annotations

__version__ = "0.1.0"
