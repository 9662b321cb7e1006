"""A model's monitoring baseline: what "normal" is for that model, measured once, kept with it.

* the **reference profile** of its training rows (or the configured baseline window), scored by
  the model itself, so prediction drift compares like with like;
* **calibrated limits** (`calibration`): every drift metric on chunks of the reference (each
  day, each rolling window) against the rest of it, and the realised quality per day of the
  training run's holdout (the test range);
* a **probability calibration** fitted on that holdout (isotonic: P(label = 1) given the
  model's score; for multiclass, P(correct) given the top-class confidence), so quality can be
  estimated before labels land (`mlops_spark.metrics.estimated`).

The baseline is built the first time a model version is monitored and logged as an artifact
of the model's own MLflow run (``monitoring/baseline.json``); later runs load it, so
monitoring one new day costs no pass over the reference, and a model is always watched with
its own limits. A change of the monitoring config (columns, bins, windows, calibration)
changes the fingerprint and rebuilds it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig
from mlops_spark.lake import TableRef
from mlops_spark.metrics import higher_is_better, task_metrics
from mlops_spark.monitoring.calibration import Calibration, Limits, calibrate, describe_short, quantile
from mlops_spark.monitoring.drift import drift_metrics
from mlops_spark.monitoring.frames import SLICE
from mlops_spark.monitoring.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    profile_reference,
)
from mlops_spark.monitoring.quality import realised_quality
from mlops_spark.outputs import PREDICTION, PROBABILITIES, PROBABILITY
from mlops_spark.registry import ModelRef
from mlops_spark.scoring import prepare_scorer

log = logging.getLogger(__name__)

ARTIFACT = "monitoring/baseline.json"
FORMAT = 2  # 2: quality limits per slice


# --------------------------------------------------------------------------- probability calibration


@dataclass(frozen=True)
class ProbabilityCalibration:
    """An isotonic map score -> probability (piecewise linear between ``x`` knots, constant
    outside), fitted on the training run's holdout."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    target: str
    """'positive' (binary: P(label = 1) from P(1)) or 'correct' (multiclass: P(correct) from
    the top-class probability)."""

    def column(self, score: Column) -> Column:
        """The calibrated probability of ``score`` as a Spark expression."""
        if len(self.x) == 1:
            return F.lit(self.y[0])
        expr = F.lit(self.y[-1])
        for i in range(len(self.x) - 1, 0, -1):  # innermost: the first segment
            x0, x1, y0, y1 = self.x[i - 1], self.x[i], self.y[i - 1], self.y[i]
            slope = (y1 - y0) / (x1 - x0) if x1 > x0 else 0.0
            expr = F.when(score <= F.lit(x1), F.lit(y0) + (score - F.lit(x0)) * F.lit(slope)).otherwise(expr)
        return F.when(score <= F.lit(self.x[0]), F.lit(self.y[0])).otherwise(expr)


def fit_isotonic(
    score: np.ndarray[Any, Any], outcome: np.ndarray[Any, Any], target: str
) -> ProbabilityCalibration:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, outcome)
    x = [float(v) for v in iso.X_thresholds_]
    y = [float(v) for v in iso.y_thresholds_]
    if len(x) > 400:  # keep the Spark expression small: resample the monotone curve
        grid = np.quantile(np.asarray(x), np.linspace(0, 1, 400))
        x, y = [float(v) for v in grid], [float(v) for v in iso.predict(grid)]
    return ProbabilityCalibration(tuple(x), tuple(y), target)


# --------------------------------------------------------------------------- the baseline


@dataclass(frozen=True)
class Baseline:
    model_version: int
    fingerprint: str
    profile: ReferenceProfile
    drift: Calibration
    quality: Mapping[tuple[str, str], Limits] = field(default_factory=dict)
    """Realised-quality limits by (slice, metric), from the holdout's days: each slice is
    judged by its own day-to-day spread (a carrier with 40 flights a day has a far noisier
    daily AUC than all flights together)."""
    holdout: Mapping[str, float] = field(default_factory=dict)
    """The holdout's realised quality over all its rows (what estimates are compared with)."""
    probability: ProbabilityCalibration | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model_version": self.model_version,
            "fingerprint": self.fingerprint,
            "profile": profile_to_json(self.profile),
            "drift": self.drift.to_json(),
            "quality": [
                {"slice": s, "metric": m, **asdict(lim)} for (s, m), lim in sorted(self.quality.items())
            ],
            "holdout": dict(self.holdout),
            "probability": asdict(self.probability) if self.probability else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Baseline:
        prob = data.get("probability")
        return cls(
            model_version=int(data["model_version"]),
            fingerprint=str(data["fingerprint"]),
            profile=profile_from_json(data["profile"]),
            drift=Calibration.from_json(data["drift"]),
            quality={
                (str(q["slice"]), str(q["metric"])): Limits(
                    float(q["warn"]), float(q["alert"]), float(q["mean"]), float(q["std"]), int(q["chunks"])
                )
                for q in data.get("quality", [])
            },
            holdout={k: float(v) for k, v in data.get("holdout", {}).items()},
            probability=ProbabilityCalibration(tuple(prob["x"]), tuple(prob["y"]), prob["target"])
            if prob
            else None,
        )


def profile_to_json(profile: ReferenceProfile) -> dict[str, Any]:
    return {
        "description": profile.description,
        "rows": profile.rows,
        "numeric": [asdict(p) for p in profile.numeric.values()],
        "categorical": [asdict(p) for p in profile.categorical.values()],
    }


def profile_from_json(data: Mapping[str, Any]) -> ReferenceProfile:
    numeric = {
        p["column"]: NumericProfile(
            column=p["column"],
            edges=tuple(p["edges"]),
            coarse=tuple(p["coarse"]),
            cuts=tuple(p["cuts"]),
            counts=tuple(p["counts"]),
            totals=tuple(p["totals"]),
            rows=int(p["rows"]),
            nulls=int(p["nulls"]),
            mean=float(p["mean"]),
            std=float(p["std"]),
        )
        for p in data["numeric"]
    }
    categorical = {
        p["column"]: CategoricalProfile(p["column"], dict(p["counts"]), tuple(p["bins"]), int(p["nulls"]))
        for p in data["categorical"]
    }
    return ReferenceProfile(numeric, categorical, str(data["description"]), int(data["rows"]))


def fingerprint(config: AppConfig, ref: ModelRef, numeric: Sequence[str], categorical: Sequence[str]) -> str:
    mon = config.monitoring
    settings = {
        "format": FORMAT,
        "model": [ref.name, ref.version],
        "columns": [sorted(numeric), sorted(categorical)],
        "bins": [mon.bins, mon.grid_size, mon.relative_error, mon.max_categories],
        "windows": sorted(mon.windows),
        "reference": [mon.reference, str(mon.baseline)],
        "calibration": mon.calibration.model_dump(mode="json"),
        "slices": list(mon.slices),
        "estimation": mon.estimation.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def load_baseline(client: MlflowClient, ref: ModelRef, wanted: str) -> Baseline | None:
    """The baseline logged with the model's run, when it matches ``wanted`` (the fingerprint)."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=ref.run_id, artifact_path=ARTIFACT, dst_path=tmp
            )
        except (MlflowException, OSError):
            return None
        data = json.loads(Path(local).read_text())
    if data.get("format") != FORMAT or data.get("fingerprint") != wanted:
        return None
    return Baseline.from_json(data)


def save_baseline(client: MlflowClient, ref: ModelRef, baseline: Baseline) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(ARTIFACT).name
        path.write_text(json.dumps(baseline.to_json()))
        client.log_artifact(ref.run_id, str(path), artifact_path=str(Path(ARTIFACT).parent))


def baseline_for(
    spark: SparkSession,
    config: AppConfig,
    client: MlflowClient,
    ref: ModelRef,
    numeric: list[str],
    categorical: list[str],
    say: Callable[[str], None],
) -> tuple[Baseline, list[TableRef]]:
    """The model's baseline: loaded from its run, else built (and logged there)."""
    wanted = fingerprint(config, ref, numeric, categorical)
    loaded = load_baseline(client, ref, wanted)
    if loaded is not None:
        return loaded, []
    started = dt.datetime.now()
    baseline, reads = build_baseline(spark, config, client, ref, numeric, categorical, wanted, say)
    save_baseline(client, ref, baseline)
    took = (dt.datetime.now() - started).total_seconds()
    say(
        f"{ref.describe()}: monitoring baseline built in {took:.0f}s ({len(baseline.drift.limits)} "
        f"calibrated drift limits, {len(baseline.quality)} quality limits over "
        f"{len({s for s, _ in baseline.quality})} slice(s)) and kept with its run"
    )
    short = describe_short(baseline.drift, config.monitoring.calibration.min_chunks)
    if short:
        say(f"{ref.describe()}: {short}")
    return baseline, reads


def _scored(spark: SparkSession, config: AppConfig, ref: ModelRef, df: DataFrame, table: str) -> DataFrame:
    spec = config.features
    keys = [spec.entity_id.name, spec.date_column]
    scorer = prepare_scorer(
        spark, config.model, ref, df, table, "auto", config.scoring.max_compiled_tree_nodes
    )
    return df.transform(scorer.score(keys)).join(df, keys)


def build_baseline(
    spark: SparkSession,
    config: AppConfig,
    client: MlflowClient,
    ref: ModelRef,
    numeric: list[str],
    categorical: list[str],
    wanted: str,
    say: Callable[[str], None],
) -> tuple[Baseline, list[TableRef]]:
    mon, spec = config.monitoring, config.features
    date_col = spec.date_column
    record = registry.training_record(client, ref)
    version = None
    if mon.reference == "baseline":
        assert mon.baseline is not None
        rng = (mon.baseline.start, mon.baseline.end)
    else:
        version = record.features_version
        rng = record.train_range or (config.split.train.start, config.split.train.end)
        if version is None:
            say(f"{ref.describe()}: its run recorded no features version; using the latest")
    features = Catalog(config).features()
    df, table_ref = lake.read_table(spark, features, version=version, date_range=rng)
    reads = [table_ref]
    scored = (
        _scored(spark, config, ref, df, table_ref.name)
        .select(date_col, *[c for c in dict.fromkeys([*numeric, *categorical])])
        .persist()
    )
    try:
        description = f"{table_ref.name} v{table_ref.version} {rng[0]}..{rng[1]} ({mon.reference})"
        profile = profile_reference(
            scored.select(*numeric, *categorical),
            numeric,
            categorical,
            bins=mon.bins,
            grid_size=mon.grid_size,
            relative_error=mon.relative_error,
            max_categories=mon.max_categories,
            description=description,
        )
        drift = Calibration({})
        if mon.calibration.enabled:
            days = lake.list_partitions(spark, features, version)
            ends = [d for d in days if rng[0] <= d <= rng[1]]
            chunks = drift_metrics(
                scored, profile, [date_col], date_col, windows=mon.windows, window_ends=ends, leave_out=True
            )
            rows = chunks.select("column", "metric", "window_days", "value").collect()
            drift = calibrate([r.asDict() for r in rows], mon.calibration, mon.calibration.metrics)
    finally:
        scored.unpersist()
    quality, holdout, probability = _holdout(spark, config, ref, record.test_range, version, reads)
    return Baseline(ref.version, wanted, profile, drift, quality, holdout, probability), reads


def _holdout(
    spark: SparkSession,
    config: AppConfig,
    ref: ModelRef,
    test_range: tuple[dt.date, dt.date] | None,
    version: int | None,
    reads: list[TableRef],
) -> tuple[dict[tuple[str, str], Limits], dict[str, float], ProbabilityCalibration | None]:
    """Quality limits from the holdout's days, its overall quality, and the probability
    calibration fitted on it (nothing when there is no label or no holdout row)."""
    spec, mon = config.features, config.monitoring
    if spec.label is None or test_range is None:
        return {}, {}, None
    label, date_col, task = spec.label.name, spec.date_column, config.model.resolved_task
    df, table_ref = lake.read_table(spark, Catalog(config).features(), version=version, date_range=test_range)
    reads.append(table_ref)
    scored = _scored(spark, config, ref, df, table_ref.name).where(F.col(label).isNotNull()).persist()
    try:
        overall = {r["metric"]: float(r["value"]) for r in task_metrics(scored, task, label).collect()}
        if not overall.get("rows"):
            return {}, {}, None
        quality: dict[tuple[str, str], Limits] = {}
        if mon.calibration.enabled and mon.calibration.quality:
            per_day = realised_quality(scored, task, label, [date_col], mon.slices)
            values: dict[tuple[str, str], list[float]] = {}
            for r in per_day.select(SLICE, "metric", "value").collect():
                if r["value"] is not None:
                    values.setdefault((str(r[SLICE]), str(r["metric"])), []).append(float(r["value"]))
            for (slice_, metric), vs in values.items():
                if metric in (
                    "rows",
                    "positive_rate",
                    "predicted_positive_rate",
                    "mean_probability",
                    "classes",
                ):
                    continue
                lim = _quality_limits(vs, metric, mon.calibration)
                if lim is not None:
                    quality[(slice_, metric)] = lim
        probability = _fit_probability(scored, task, label, mon.estimation.max_rows, config.split.seed)
    finally:
        scored.unpersist()
    return quality, overall, probability if mon.estimation.enabled else None


def _quality_limits(values: list[float], metric: str, settings: Any) -> Limits | None:
    """Limits on the side where the metric is worse: below the holdout days for scores,
    above them for errors. quantile: warn at the ``1 - warn`` quantile of the days on the bad
    side, alert a ``margin - 1`` share of the spread beyond the worst day; std: mean -/+ k sigma."""
    finite = sorted(v for v in values if math.isfinite(v))
    if len(finite) < settings.min_chunks:
        return None
    worse = -1.0 if higher_is_better(metric) else 1.0  # the direction in which the metric gets worse
    bad_side = sorted(worse * v for v in finite)  # larger = worse
    mean = sum(bad_side) / len(bad_side)
    std = math.sqrt(sum((v - mean) ** 2 for v in bad_side) / len(bad_side))
    if settings.method == "std":
        warn, alert = mean + settings.k_warn * std, mean + settings.k_alert * std
    else:
        warn = quantile(bad_side, settings.warn)
        worst = bad_side[-1]
        alert = max(worst + (settings.margin - 1.0) * (worst - mean), warn)
    return Limits(warn=worse * warn, alert=worse * alert, mean=worse * mean, std=std, chunks=len(bad_side))


def _fit_probability(
    scored: DataFrame, task: str, label: str, max_rows: int, seed: int
) -> ProbabilityCalibration | None:
    if task == "regression":
        return None
    total = scored.count()
    sample = scored if total <= max_rows else scored.sample(fraction=max_rows / total, seed=seed)
    if task == "binary":
        pdf: Any = sample.select(F.col(PROBABILITY).alias("s"), F.col(label).alias("y")).toPandas()
        return fit_isotonic(pdf["s"].to_numpy(float), pdf["y"].to_numpy(float), "positive")
    top = F.array_max(F.col(PROBABILITIES))
    pdf = sample.select(
        top.alias("s"), (F.col(PREDICTION) == F.col(label)).cast("double").alias("y")
    ).toPandas()
    return fit_isotonic(pdf["s"].to_numpy(float), pdf["y"].to_numpy(float), "correct")
