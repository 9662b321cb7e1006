"""The reference profile: small summaries of the reference rows that drift is measured against.

A quantile grid and counts per bucket for each numeric column, counts per category for
each categorical one. Only these summaries reach the driver.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.errors import JobFailed
from mlops_spark.monitoring.frames import BUCKET, COLUMN, OTHER, TOTAL, N, require
from mlops_spark.monitoring.histograms import as_double, categorical_histograms, numeric_histograms


@dataclass(frozen=True)
class NumericProfile:
    """A numeric column of the reference: its quantile grid and counts per grid bucket.

    Bucket 0 is ``x <= edges[0]`` (the minimum), bucket k is ``edges[k-1] < x <= edges[k]``,
    the last bucket ``x > edges[-1]``. ``coarse`` maps each bucket to its PSI/JS/chi2 bin.
    """

    column: str
    edges: tuple[float, ...]
    coarse: tuple[int, ...]
    cuts: tuple[float, ...]
    counts: tuple[int, ...]
    totals: tuple[float, ...]
    rows: int
    nulls: int
    mean: float
    std: float

    @property
    def null_rate(self) -> float:
        return self.nulls / (self.rows + self.nulls) if self.rows + self.nulls else 0.0

    def bin_labels(self) -> list[str]:
        """Human labels of the coarse bins, e.g. '(-inf, 3.2]'."""
        bounds = ["-inf", *[f"{c:.4g}" for c in self.cuts], "inf"]
        return [f"({bounds[i]}, {bounds[i + 1]}]" for i in range(len(bounds) - 1)]


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical column of the reference: the count of every category it has."""

    column: str
    counts: dict[str, int]
    bins: tuple[str, ...]
    nulls: int

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    @property
    def null_rate(self) -> float:
        total = self.rows + self.nulls
        return self.nulls / total if total else 0.0

    def bin_of(self, category: str) -> str:
        return category if category in self.bins else OTHER


@dataclass(frozen=True)
class ReferenceProfile:
    numeric: dict[str, NumericProfile] = field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = field(default_factory=dict)
    description: str = "reference"
    rows: int = 0


def profile_reference(
    df: DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int = 10,
    grid_size: int = 200,
    relative_error: float = 0.001,
    max_categories: int = 50,
    description: str = "reference",
) -> ReferenceProfile:
    """Summarise the reference in Spark: quantile grids, bucket counts, category counts."""
    if grid_size % bins:
        raise JobFailed(f"monitoring.grid_size ({grid_size}) must be a multiple of monitoring.bins ({bins})")
    require(df, "reference", [*numeric, *categorical])
    # several passes (count, quantiles, histograms, moments) read it: compute it once
    cleaned = df.select(*[as_double(c).alias(c) for c in numeric], *[F.col(c) for c in categorical]).persist()
    try:
        return _profile(
            cleaned, numeric, categorical, bins, grid_size, relative_error, max_categories, description
        )
    finally:
        cleaned.unpersist()


def _profile(
    cleaned: DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int,
    grid_size: int,
    relative_error: float,
    max_categories: int,
    description: str,
) -> ReferenceProfile:
    total = cleaned.count()
    if total == 0:
        raise JobFailed(f"{description}: the reference has no rows; check monitoring.reference and its range")
    profiles: dict[str, NumericProfile] = {}
    if numeric:
        probabilities = [k / grid_size for k in range(grid_size + 1)]
        quantiles = cleaned.approxQuantile(list(numeric), probabilities, relative_error)
        step = grid_size // bins
        grids: dict[str, tuple[list[float], list[float]]] = {}
        for column, q in zip(numeric, quantiles, strict=True):
            if not q:
                continue  # only nulls: nothing to bucket, null rates still tracked below
            edges = sorted(set(q))
            cuts = sorted({q[j * step] for j in range(1, bins)} - {q[0]})
            grids[column] = (edges, cuts)
        if grids:
            hist = numeric_histograms(cleaned, {c: g[0] for c, g in grids.items()}, []).collect()
        else:
            hist = []
        moments = cleaned.select(
            *[F.avg(c).alias(f"m_{i}") for i, c in enumerate(numeric)],
            *[F.stddev_pop(c).alias(f"s_{i}") for i, c in enumerate(numeric)],
            *[F.count(c).alias(f"n_{i}") for i, c in enumerate(numeric)],
        ).first()
        assert moments is not None
        for i, column in enumerate(numeric):
            if column not in grids:
                continue
            edges, cuts = grids[column]
            counts = [0] * (len(edges) + 1)
            totals = [0.0] * (len(edges) + 1)
            for row in hist:
                if row[COLUMN] == column and row[BUCKET] is not None:
                    counts[row[BUCKET]] = int(row[N])
                    totals[row[BUCKET]] = float(row[TOTAL] or 0.0)
            uppers = [*edges, math.inf]
            coarse = [sum(1 for c in cuts if c < upper) for upper in uppers]
            rows = int(moments[f"n_{i}"])
            profiles[column] = NumericProfile(
                column=column,
                edges=tuple(edges),
                coarse=tuple(coarse),
                cuts=tuple(cuts),
                counts=tuple(counts),
                totals=tuple(totals),
                rows=rows,
                nulls=total - rows,
                mean=float(moments[f"m_{i}"]),
                std=float(moments[f"s_{i}"] or 0.0),
            )
    cats: dict[str, CategoricalProfile] = {}
    if categorical:
        for row_column, cat_rows in _group_rows(
            categorical_histograms(cleaned, categorical, []).collect()
        ).items():
            seen = {str(r["category"]): int(r[N]) for r in cat_rows if r["category"] is not None}
            nulls = sum(int(r[N]) for r in cat_rows if r["category"] is None)
            top = sorted(seen, key=lambda k: (-seen[k], k))[:max_categories]
            cats[row_column] = CategoricalProfile(row_column, seen, tuple(top), nulls)
        for column in categorical:
            cats.setdefault(column, CategoricalProfile(column, {}, (), total))
    return ReferenceProfile(profiles, cats, description, total)


def _group_rows(rows: Sequence[T.Row]) -> dict[str, list[T.Row]]:
    out: dict[str, list[T.Row]] = {}
    for r in rows:
        out.setdefault(r[COLUMN], []).append(r)
    return out
