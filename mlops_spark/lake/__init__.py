"""The one package that reads and writes Delta tables.

* `tables`: read a table (a pinned version, some partitions), write partitions
  (``replaceWhere``, one commit), overwrite, append, create, restore, delete.
* `partitions`: which dates a table holds, read from Delta's log (no data file opened),
  and which partitions hold a given value of a column (per-file statistics).
* `retry`: Delta's optimistic-concurrency conflicts, and a retry loop for writers.
* `maintenance`: OPTIMIZE and VACUUM.

Every function takes a `mlops_spark.catalog.Table`, so what a table is called and where
it lives is decided in one place (the catalog).
"""

from __future__ import annotations

from mlops_spark.lake.conflicts import is_write_conflict
from mlops_spark.lake.maintenance import optimize_and_vacuum
from mlops_spark.lake.partitions import list_partitions, partitions_holding
from mlops_spark.lake.tables import (
    TableRef,
    WriteResult,
    append_rows,
    current_version,
    delete_partitions,
    ensure_partitioned_table,
    exists,
    history,
    last_commit,
    last_user_metadata,
    overwrite_table,
    partition_filter,
    read_table,
    require_columns,
    restore_version,
    write_partitions,
)

__all__ = [
    "TableRef",
    "WriteResult",
    "append_rows",
    "current_version",
    "delete_partitions",
    "ensure_partitioned_table",
    "exists",
    "history",
    "is_write_conflict",
    "last_commit",
    "last_user_metadata",
    "list_partitions",
    "optimize_and_vacuum",
    "overwrite_table",
    "partition_filter",
    "partitions_holding",
    "read_table",
    "require_columns",
    "restore_version",
    "write_partitions",
]
