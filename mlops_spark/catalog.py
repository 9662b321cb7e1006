"""The catalog: one object that maps the logical tables of a use case to where they live.

Jobs ask for tables by what they are (``catalog.silver("flights")``,
``catalog.predictions()``, ``catalog.jobs()``) and hand the resulting `Table` to `lake`;
no job builds a table name or a path by hand. A `Table` knows its logical name
(``silver.flights``), its storage location and how it is partitioned by date.

Layout under ``lake.root``::

    bronze/<source table>       silver/<source table>       quarantine/<source table>
    quarantine/<table>_undated  features/<features.name>    predictions/<model or scoring.table>
    predictions/<..>_shadow     monitoring/<..>             monitoring/<segmented model>_segments
    ops/jobs  ops/job_starts    reports/<model>/
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlops_spark.config import AppConfig
from mlops_spark.errors import ConfigError


@dataclass(frozen=True)
class Partitioning:
    """How a table's rows map to partition dates.

    ``date_column`` is the DATE column that reads of the table expose. For every table this
    framework writes it is also the physical partition column. A foreign table adopted in
    place may be partitioned by anything (a 'YYYY-MM-DD' string, an int yyyymmdd, a
    timestamp): ``source_expr`` is then the SQL expression over its partition column(s)
    that gives the date, e.g. ``to_date(CAST(day AS STRING), 'yyyyMMdd')``; reads add
    ``date_column`` from it and date filters are written on it, so Delta still prunes.
    """

    date_column: str
    source_expr: str | None = None

    @property
    def native(self) -> bool:
        """True when the partition column itself holds the date (no expression needed)."""
        return self.source_expr is None


@dataclass(frozen=True)
class Table:
    """One logical table: its name (``layer.table``), location and date partitioning."""

    name: str
    path: str
    partitioning: Partitioning | None = None
    version: int | None = None
    """Read this version (a foreign table pinned in the config); None: the latest."""
    foreign: bool = False
    """A table another tool owns, adopted in place: read, never written."""

    @property
    def date_column(self) -> str | None:
        """The DATE column that holds each row's partition date (None: unpartitioned)."""
        return self.partitioning.date_column if self.partitioning else None

    @property
    def partitioned(self) -> bool:
        return self.partitioning is not None

    def describe(self) -> str:
        return f"{self.name} ({self.path})"

    @classmethod
    def at(cls, path: str, date_column: str | None = None, name: str | None = None) -> Table:
        """A table at an explicit location (tests, benchmarks, notebooks exploring a lake)."""
        return cls(name or path, path, Partitioning(date_column) if date_column else None)


def absolute_location(path: str) -> str:
    """A relative local path made absolute against this process's working directory; URIs
    (``s3a://``, ``file:/``, ``dbfs:/``) and absolute paths as they are.

    Spark resolves a relative path against the JVM's working directory, which is the
    directory the session started in: after an ``os.chdir`` (a notebook, a test) Python and
    the JVM would disagree on where ``./lake`` is, and the tables would land in one place
    and the reports in another. Every location Python hands to Spark goes through here."""
    if ":" in path.split("/", 1)[0] or os.path.isabs(path):
        return path
    return os.path.abspath(path)


class Catalog:
    """The tables of one use case (from its config)."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.root = absolute_location(config.lake.root).rstrip("/")

    # -- plumbing -----------------------------------------------------------------------------
    def _table(self, layer: str, name: str, partitioned: bool, date_column: str | None = None) -> Table:
        column = date_column or self.config.lake.date_column
        return Table(
            f"{layer}.{name}", f"{self.root}/{layer}/{name}", Partitioning(column) if partitioned else None
        )

    def _source_dated(self, table: str) -> bool:
        spec = self.config.source.tables.get(table)
        if spec is None:
            known = ", ".join(self.config.source.tables) or "none"
            raise ConfigError(f"source.tables: no table {table!r} (configured: {known})")
        return spec.date_expr is not None

    # -- data layers --------------------------------------------------------------------------
    def bronze(self, table: str) -> Table:
        """The source table as landed by ingest, or, for a Delta source adopted in place,
        the source table itself (its partition values typed by its ``date_expr``)."""
        dated = self._source_dated(table)
        if not self.config.source.adopted:
            return self._table("bronze", table, dated)
        spec = self.config.source.tables[table]
        assert spec.path is not None
        part = Partitioning(self.config.lake.date_column, spec.date_expr) if spec.date_expr else None
        return Table(
            f"bronze.{table}", absolute_location(spec.path).rstrip("/"), part, spec.version, foreign=True
        )

    def silver(self, table: str) -> Table:
        return self._table("silver", table, self._source_dated(table))

    def quarantine(self, table: str) -> Table:
        return self._table("quarantine", table, self._source_dated(table))

    def undated(self, table: str) -> Table:
        """Source rows whose date expression is null (kept whole, with the reason)."""
        return self._table("quarantine", f"{table}_undated", partitioned=False)

    def features(self) -> Table:
        spec = self.config.features
        return self._table("features", spec.name, True, spec.date_column)

    # -- model outputs ------------------------------------------------------------------------
    @property
    def predictions_name(self) -> str:
        return self.config.scoring.table or self.config.mlflow.model_name

    def predictions(self) -> Table:
        return self._table("predictions", self.predictions_name, True, self.config.features.date_column)

    def shadow(self) -> Table:
        """Where @challenger's canary (shadow) predictions go; champion predictions are never touched."""
        name = self.config.monitoring.canary.table or f"{self.predictions_name}_shadow"
        return self._table("predictions", name, True, self.config.features.date_column)

    def monitoring(self) -> Table:
        name = self.config.monitoring.table or self.predictions_name
        return self._table("monitoring", name, True, self.config.features.date_column)

    def segments(self) -> Table:
        """Per-segment metrics of the segmented model's training runs."""
        if self.config.segmented is None:
            raise ConfigError("segmented: the config has no 'segmented:' section")
        return self._table("monitoring", f"{self.config.segmented.model_name}_segments", partitioned=False)

    # -- operations ---------------------------------------------------------------------------
    def jobs(self) -> Table:
        """The jobs audit table: one row per ended job run (its outcome)."""
        return self._table("ops", "jobs", partitioned=False)

    def job_starts(self) -> Table:
        """One ``running`` row per job run, appended as it starts (host, process id): a run
        here with no row in `jobs` is still running, or was killed (`mlops_spark.runs`)."""
        return self._table("ops", "job_starts", partitioned=False)

    def reports(self) -> str:
        """The folder of the monitoring reports of the configured model."""
        return f"{self.root}/reports/{self.config.mlflow.model_name}"

    def source_tables(self) -> list[str]:
        return list(self.config.source.tables)

    def table(self, qualified: str) -> Table:
        """A table by its logical name, e.g. ``silver.flights`` or ``predictions.flights_delay``."""
        layer, _, name = qualified.partition(".")
        if layer in ("bronze", "silver", "quarantine") and name in self.config.source.tables:
            return {"bronze": self.bronze, "silver": self.silver, "quarantine": self.quarantine}[layer](name)
        if layer in ("features", "predictions", "monitoring") and name:
            return self._table(layer, name, True, self.config.features.date_column)
        if layer and name:
            return self._table(layer, name, partitioned=False)
        raise ConfigError(f"{qualified!r} is not a table name (expected layer.table, e.g. silver.flights)")


__all__ = ["Catalog", "Partitioning", "Table"]
