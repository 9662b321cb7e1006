"""Many models: one scikit-learn model per segment, fitted in parallel on Spark, served as one.

A segmented model is configured by ``segmented:`` (`SegmentedConfig`): a segment column
(say ``carrier``), a scikit-learn estimator or pipeline by import path, its inputs.

* **Fit** (`fit_segments`): the train rows are grouped by segment and each group is fitted
  by `fit_segment` inside ``groupBy(...).applyInPandas`` - one Spark task per segment (or
  per bin of small segments), so N models fit in parallel across the executors. A
  *global* model is fitted on every train row the same way, in the same stage. Each
  group reports one row: segment, status, error, row counts, params, seconds and the
  fitted model as bytes (cloudpickle).
* **Route** (`route_predict`): a row goes to its segment's model; rows of segments without
  a model of their own (too few rows, one class, a failed fit, unseen, or a null segment)
  go to the global model, or fail with an error naming the segment
  (``fallback: error``). One output row per input row, in order: no row is lost.
* **Serve**: the models are logged as ONE MLflow model with two flavours that share the
  routing code: ``python_function`` (`SegmentedModel`, for ``mlflow.pyfunc.load_model``
  and ``spark_udf``) and ``spark`` (a `PipelineModel` holding a `SegmentRouter` stage).
  The spark flavour is what the registry, the promotion gate, the score job and
  monitoring already load (``registry.load_spark_model`` then ``.transform``): it scores
  through ``mapInArrow`` and unpickles the segment models once per Python worker.
* **Measure** (`segment_metrics`): per-segment metrics of scored rows in Spark SQL (ROC
  AUC by ranks, log loss, confusion counts; or RMSE, MAE, R2), one pass for every segment.

User code: an estimator (or factory) from a module that executors cannot import - a test,
a notebook, a script - is shipped by value (`ship_by_value`), so only scikit-learn and
this package need to be installed on the cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config import TuningConfig
from mlops_spark.errors import JobFailed, MissingColumnError
from mlops_spark.segmented.estimators import build_estimator, fit_estimator, model_frame, ship_by_value
from mlops_spark.segmented.spec import GLOBAL, PART, ROLE, SEGMENT_KEY, FitSpec

FIT_SCHEMA = T.StructType(
    [
        T.StructField("segment", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("error", T.StringType(), True),
        T.StructField("note", T.StringType(), True),
        T.StructField("train_rows", T.LongType(), False),
        T.StructField("validation_rows", T.LongType(), False),
        T.StructField("positive_rate", T.DoubleType(), True),
        T.StructField("params", T.StringType(), True),
        T.StructField("tuning_trials", T.IntegerType(), False),
        T.StructField("validation_loss", T.DoubleType(), True),
        T.StructField("fit_seconds", T.DoubleType(), False),
        T.StructField("cpu_seconds", T.DoubleType(), False),
        T.StructField("model", T.BinaryType(), True),
    ]
)
FITTED, TOO_SMALL, SINGLE_CLASS, FAILED, UNSEEN = "fitted", "too_small", "single_class", "failed", "unseen"


@dataclass(frozen=True)
class SegmentTuning:
    """Per-segment hyperopt: the search and the validation metric it minimises."""

    settings: TuningConfig
    metric: str
    higher_is_better: bool


def _label_weights(label: pd.Series, spec: FitSpec) -> np.ndarray | None:
    if spec.class_weight != "balanced" or spec.route.task != "binary":
        return None
    from mlops_spark.tuning.sklearn import balanced_sample_weight

    return balanced_sample_weight(label)


def fit_segment(
    pdf: pd.DataFrame,
    spec: FitSpec,
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    tuning: SegmentTuning | None = None,
) -> dict[str, Any]:
    """Fit one segment's rows (``ROLE`` says train or validation) into one result row.

    Never raises for the segment's own reasons: too few train rows, one class or an
    exception from the estimator become the row's status and error, so one bad segment
    does not stop the others (the job decides what a failure means).
    """
    import cloudpickle

    started, cpu_started = time.time(), time.process_time()
    key = str(pdf[SEGMENT_KEY].iloc[0]) if len(pdf) else ""
    train = pdf[pdf[ROLE] == "train"]
    val = pdf[pdf[ROLE] == "validation"]
    y = train[spec.label].astype("float64")
    row: dict[str, Any] = {
        "segment": key,
        "status": FITTED,
        "error": None,
        "note": None,
        "train_rows": len(train),
        "validation_rows": len(val),
        "positive_rate": float(y.mean()) if spec.route.task == "binary" and len(y) else None,
        "params": json.dumps(dict(params), sort_keys=True, default=str),
        "tuning_trials": 0,
        "validation_loss": None,
        "fit_seconds": 0.0,
        "cpu_seconds": 0.0,
        "model": None,
    }

    def done(status: str, error: str | None = None) -> dict[str, Any]:
        row.update(
            status=status,
            error=error,
            fit_seconds=time.time() - started,
            cpu_seconds=time.process_time() - cpu_started,
        )
        return row

    if len(train) < spec.min_rows:
        return done(TOO_SMALL, f"{len(train)} labelled train row(s), fewer than min_rows {spec.min_rows}")
    if spec.route.task == "binary" and y.nunique() < 2:
        return done(SINGLE_CLASS, f"every one of the {len(train)} train rows has label {y.iloc[0]:g}")
    features = model_frame(train, spec.route)
    best: dict[str, Any] = {}
    try:
        weights = _label_weights(y, spec)
        if tuning is not None:
            best, note = _tune_segment(features, y, val, weights, spec, factory, params, tuning, row)
            row["note"] = note
        merged = {**params, **best}
        est = fit_estimator(build_estimator(factory, merged, spec), features, y, weights)
        row["params"] = json.dumps(merged, sort_keys=True, default=str)
        row["model"] = cloudpickle.dumps(est)
    except Exception as exc:
        return done(FAILED, f"{type(exc).__name__}: {exc}"[:2000])
    return done(FITTED)


def _tune_segment(
    features: pd.DataFrame,
    y: pd.Series,
    val: pd.DataFrame,
    weights: np.ndarray | None,
    spec: FitSpec,
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    tuning: SegmentTuning,
    row: dict[str, Any],
) -> tuple[dict[str, Any], str | None]:
    """Hyperopt in this process (trials one after another inside the segment's task)."""
    from mlops_spark.tuning import TrialOutcome, make_tuner
    from mlops_spark.tuning.sklearn import sklearn_metrics

    y_val = val[spec.label].astype("float64")
    if len(val) < 2 or (spec.route.task == "binary" and y_val.nunique() < 2):
        return {}, f"not tuned: the validation range has {len(val)} row(s) of {y_val.nunique()} class(es)"
    val_features = model_frame(val, spec.route)

    def objective(trial: dict[str, Any]) -> TrialOutcome:
        est = fit_estimator(build_estimator(factory, {**params, **trial}, spec), features, y, weights)
        metrics = sklearn_metrics(est, val_features, y_val, spec.route.task, spec.route.threshold)
        value = metrics[tuning.metric]
        return TrialOutcome(-value if tuning.higher_is_better else value, metrics)

    result = make_tuner(tuning.settings).minimize(objective, tuning.settings, spec.seed)
    best = result.best  # raises when every trial failed: the segment fails with that error
    row["tuning_trials"] = len(result.trials)
    row["validation_loss"] = best.loss
    failed = len(result.trials) - len(result.succeeded)
    return dict(best.params), (f"{failed} of {len(result.trials)} trials failed" if failed else None)


def segment_fitter(
    spec: FitSpec,
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    tuning: SegmentTuning | None,
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The applyInPandas function: one group of rows in, one result row out. It captures
    only plain values (specs, the factory, params), never a session."""
    frozen_params = dict(params)
    columns = FIT_SCHEMA.fieldNames()

    def fit_group(pdf: pd.DataFrame) -> pd.DataFrame:
        row = fit_segment(pdf, spec, factory, frozen_params, tuning)
        return pd.DataFrame([row], columns=columns)

    return fit_group


def _task_ids(spark: SparkSession, partitions: int) -> list[int]:
    """For each partition j, an integer whose Spark hash lands in j (so a
    ``repartition(n, col)`` puts exactly the chosen groups in each task)."""
    found: dict[int, int] = {}
    span = partitions * 16
    start = 0
    while len(found) < partitions:
        rows = (
            spark.range(start, start + span)
            .select("id", F.expr(f"pmod(hash(id), {partitions})").alias("p"))
            .collect()
        )
        for r in rows:
            found.setdefault(int(r["p"]), int(r["id"]))
        start += span
    return [found[j] for j in range(partitions)]


def pack_segments(sizes: Mapping[str, int], bins: int) -> dict[str, int]:
    """Largest-first greedy packing of segments into ``bins`` tasks by row count: bin 0
    gets the largest segment, each next segment goes to the lightest bin."""
    load = [0] * bins
    out: dict[str, int] = {}
    for key, n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        j = min(range(bins), key=lambda b: (load[b], b))
        out[key] = j
        load[j] += max(n, 1)
    return out


def fit_segments(
    df: DataFrame,
    spec: FitSpec,
    factory: Callable[..., Any],
    params: Mapping[str, Any],
    tuning: SegmentTuning | None = None,
    include_global: bool = True,
    max_tasks: int | None = None,
) -> DataFrame:
    """One result row (FIT_SCHEMA) per segment, plus GLOBAL when ``include_global``.

    ``df`` holds labelled rows with the segment column, the inputs and ``ROLE``
    ('train'/'validation'). Rows with a null segment only feed the global model. Segments
    are packed into at most ``max_tasks`` tasks (default: 4 x the default parallelism),
    largest first, so the fits spread over every executor core even where adaptive query
    execution would have merged small shuffle partitions.
    """
    route = spec.route
    needed = [route.segment_column, *route.inputs, spec.label, ROLE]
    for col in needed:
        if col not in df.columns:
            raise MissingColumnError("segmented fit input", col, df.columns)
    ship_by_value(factory)
    rows = df.select(F.col(route.segment_column).cast("string").alias(SEGMENT_KEY), *needed[1:])
    counted = {r[0]: int(r[1]) for r in rows.groupBy(SEGMENT_KEY).count().collect()}
    if GLOBAL in counted:
        raise JobFailed(
            f"segmented fit: {route.segment_column} = {GLOBAL!r} is reserved for the global model; rename it"
        )
    if not counted:
        raise JobFailed("segmented fit: there are no labelled rows to fit")
    sizes = {str(k): n for k, n in counted.items() if k is not None}
    keyed = rows.where(F.col(SEGMENT_KEY).isNotNull())
    if include_global:
        keyed = keyed.unionByName(rows.withColumn(SEGMENT_KEY, F.lit(GLOBAL)))
        sizes[GLOBAL] = sum(counted.values())
    if not sizes:
        raise JobFailed(
            f"segmented fit: every row has a null {route.segment_column} and there is no global model"
        )
    spark = df.sparkSession
    limit = max_tasks or 4 * max(1, spark.sparkContext.defaultParallelism)
    bins = max(1, min(len(sizes), limit))
    packing = pack_segments(sizes, bins)
    ids = _task_ids(spark, bins)
    tasks = spark.createDataFrame(
        [(k, ids[j]) for k, j in packing.items()],
        T.StructType([T.StructField(SEGMENT_KEY, T.StringType()), T.StructField(PART, T.LongType())]),
    )
    fitter = segment_fitter(spec, factory, params, tuning)
    schema = T.StructType([T.StructField(PART, T.LongType()), *FIT_SCHEMA.fields])

    def fit_with_task(pdf: pd.DataFrame) -> pd.DataFrame:
        out = fitter(pdf.drop(columns=[PART]))
        out.insert(0, PART, pdf[PART].iloc[0])
        return out

    return (
        keyed.join(F.broadcast(tasks), SEGMENT_KEY)
        .repartition(bins, PART)
        .groupBy(PART, SEGMENT_KEY)
        .applyInPandas(fit_with_task, schema)
        .drop(PART)
    )


@dataclass
class SegmentFits:
    """The fit results on the driver: the rows (without model bytes) and the models."""

    rows: list[dict[str, Any]]
    blobs: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def collect(cls, fits: DataFrame) -> SegmentFits:
        rows, blobs = [], {}
        for r in fits.collect():
            d = r.asDict()
            model = d.pop("model")
            if d["status"] == FITTED and model is not None:
                blobs[d["segment"]] = bytes(model)
            rows.append(d)
        rows.sort(key=lambda d: (d["segment"] != GLOBAL, d["segment"]))
        return cls(rows=rows, blobs=blobs)

    def by_status(self, status: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == status and r["segment"] != GLOBAL]

    @property
    def global_row(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["segment"] == GLOBAL), None)
