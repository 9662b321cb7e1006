"""Table maintenance: compaction (OPTIMIZE) and removal of unreferenced files (VACUUM)."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from mlops_spark.catalog import Table


def optimize_and_vacuum(spark: SparkSession, table: Table, retain_hours: int = 168) -> str:
    """Compact small files, then delete files older than ``retain_hours`` that no version
    within it references; returns one summary line."""
    delta = DeltaTable.forPath(spark, table.path)
    metrics = (
        delta.optimize()
        .executeCompaction()
        .select("metrics.numFilesAdded", "metrics.numFilesRemoved")
        .first()
    )
    delta.vacuum(retain_hours)
    added, removed = (metrics[0], metrics[1]) if metrics else (0, 0)
    return (
        f"maintenance of {table.name}: OPTIMIZE compacted {removed} file(s) into {added}; "
        f"VACUUM kept {retain_hours}h of history"
    )
