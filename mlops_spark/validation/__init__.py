"""Validation: row rules and the schema policy (`rules`), table rules (`table_rules`), and the
two-phase check-then-write of bronze into silver and quarantine (`plan`)."""

from __future__ import annotations

from mlops_spark.validation.rules import (
    DUPLICATE_ROW,
    FAILED_RULES,
    SchemaChange,
    compare_schemas,
    enforce_schema_policy,
    split_valid,
    to_quarantine,
    with_failed_rules,
)
from mlops_spark.validation.table_rules import PartitionReport, check_table_rules, partition_reports

__all__ = [
    "DUPLICATE_ROW",
    "FAILED_RULES",
    "PartitionReport",
    "SchemaChange",
    "check_table_rules",
    "compare_schemas",
    "enforce_schema_policy",
    "partition_reports",
    "split_valid",
    "to_quarantine",
    "with_failed_rules",
]
