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

import hashlib
import importlib
import inspect
import json
import math
import os
import shutil
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config import AppConfig, ModelConfig, SegmentedConfig, TuningConfig
from mlops_spark.errors import ConfigError, JobFailed, MissingColumnError
from mlops_spark.training import PREDICTION, PROBABILITY

if TYPE_CHECKING:
    import pyarrow as pa

GLOBAL = "__global__"
"""The key of the fallback model, fitted on every train row."""
MISSING = "<missing>"
"""What a null categorical input becomes before it reaches an estimator."""
MODEL_SEGMENT = "model_segment"
"""Output column: which model scored the row (its segment, or GLOBAL)."""
SEGMENT_KEY = "__segment"
ROLE = "__role"
_PART = "__fit_task"

Task = Literal["classification", "regression"]

# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class RouteSpec:
    """What scoring needs: where the segment is, the inputs, the task and the threshold."""

    segment_column: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    task: Task
    threshold: float = 0.5
    fallback: Literal["global", "error"] = "global"

    @property
    def inputs(self) -> list[str]:
        return [*self.categorical, *self.numeric]


@dataclass(frozen=True)
class FitSpec:
    """What a segment's fit needs besides the estimator (shipped to the executors)."""

    route: RouteSpec
    label: str
    min_rows: int = 100
    one_hot: bool = True
    impute: Literal["none", "mean", "median"] = "median"
    class_weight: Literal["none", "balanced"] = "none"
    seed: int = 42


def segment_inputs(config: AppConfig) -> tuple[list[str], list[str]]:
    """(categorical, numeric) inputs of the segmented model: the section's own lists, else
    the model's (categorical without the segment column)."""
    seg = _section(config)
    categorical = (
        seg.categorical
        if seg.categorical is not None
        else [c for c in config.model.categorical if c != seg.segment_column]
    )
    numeric = seg.numeric if seg.numeric is not None else list(config.model.numeric)
    if seg.segment_column in categorical or seg.segment_column in numeric:
        raise ConfigError(
            f"segmented.segment_column {seg.segment_column!r} is also an input: every row of a "
            "segment has the same value, so remove it from segmented.categorical / segmented.numeric"
        )
    if not categorical and not numeric:
        raise ConfigError(
            "segmented: the model has no inputs (set segmented.numeric or segmented.categorical)"
        )
    return list(categorical), list(numeric)


def segment_task(config: AppConfig) -> Task:
    return _section(config).task or config.model.task


def route_spec(config: AppConfig) -> RouteSpec:
    seg = _section(config)
    categorical, numeric = segment_inputs(config)
    return RouteSpec(
        segment_column=seg.segment_column,
        categorical=tuple(categorical),
        numeric=tuple(numeric),
        task=segment_task(config),
        threshold=config.model.threshold,
        fallback=seg.fallback,
    )


def fit_spec(config: AppConfig) -> FitSpec:
    seg = _section(config)
    if config.features.label is None:
        raise ConfigError("segmented: features.label is not configured, so there is nothing to fit")
    return FitSpec(
        route=route_spec(config),
        label=config.features.label.name,
        min_rows=seg.min_rows,
        one_hot=seg.one_hot,
        impute=seg.impute,
        class_weight=seg.class_weight,
        seed=config.split.seed,
    )


def segmented_model_config(config: AppConfig) -> ModelConfig:
    """The ``model`` section the generic jobs (promote, score, monitor) see for the segmented
    model: they read only its task, threshold and input columns (the segment column comes
    first among the categorical inputs). The estimator named here is a stand-in for the
    task; the real estimators are in the registered model."""
    categorical, numeric = segment_inputs(config)
    task = segment_task(config)
    return ModelConfig(
        estimator="logistic_regression" if task == "classification" else "linear_regression",
        categorical=[_section(config).segment_column, *categorical],
        numeric=numeric,
        threshold=config.model.threshold,
    )


def segmented_app_config(config: AppConfig) -> AppConfig:
    """The use case's config pointed at the segmented model: its registered name, its
    predictions table and its inputs. Run the ordinary promote / score / monitor jobs with
    it and they gate, score and watch the segmented model like any other model."""
    seg = _section(config)
    return config.model_copy(
        update={
            "model": segmented_model_config(config),
            "mlflow": config.mlflow.model_copy(update={"model_name": seg.model_name}),
            "scoring": config.scoring.model_copy(update={"table": seg.predictions_table or seg.model_name}),
        }
    )


def _section(config: AppConfig) -> SegmentedConfig:
    if config.segmented is None:
        raise ConfigError(
            "no 'segmented:' section in the config (model_name, segment_column, estimator, ...)"
        )
    return config.segmented


# --------------------------------------------------------------------------- estimators


def import_estimator(path: str, where: str = "segmented.estimator") -> Callable[..., Any]:
    """A class (``pkg.mod.Class``) or a factory (``pkg.mod:function``) by import path."""
    if ":" in path:
        module_name, attr = path.split(":", 1)
    else:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import module {module_name!r} of {path!r} ({exc})") from None
    target = getattr(module, attr, None)
    if target is None or not callable(target):
        raise ConfigError(f"{where}: module {module_name!r} has no class or function {attr!r}")
    return target  # type: ignore[no-any-return]


def _importable_everywhere(module_name: str) -> bool:
    """True for modules that executors import themselves: the standard library, installed
    packages (site-packages) and this package."""
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top == "mlops_spark" or module_name == "__main__":
        return True  # __main__ is always pickled by value
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if file is None:
        return True
    resolved = Path(file).resolve()
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    if any(resolved.is_relative_to(Path(r).resolve()) for r in roots):
        return True
    return "site-packages" in resolved.parts or "dist-packages" in resolved.parts


def ship_by_value(obj: Any) -> str | None:
    """Make cloudpickle send ``obj``'s module by value when executors cannot import it (a
    test, a notebook helper, a script). Returns the module name when it did so."""
    module_name = getattr(obj, "__module__", None)
    if not module_name or _importable_everywhere(module_name):
        return None
    module = sys.modules[module_name]
    import cloudpickle
    from pyspark import cloudpickle as spark_cloudpickle

    cloudpickle.register_pickle_by_value(module)
    spark_cloudpickle.register_pickle_by_value(module)
    return module_name


def _factory_parameters(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword names a class or factory takes (None when it takes **kwargs)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n, p in sig.parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL}


def check_estimator(
    factory: Callable[..., Any], seg: SegmentedConfig, task: Task, searched: Sequence[str] = ()
) -> None:
    """Fail before any Spark work when the estimator cannot be built with the configured
    params, names a searched param it does not take, or cannot predict for the task."""
    accepted = _factory_parameters(factory)
    if accepted is not None:
        for where, names in (("segmented.params", seg.params), ("segmented.tuning.search_space", searched)):
            for name in names:
                if name not in accepted:
                    raise ConfigError(
                        f"{where}.{name}: {seg.estimator} takes no parameter {name!r} "
                        f"(it takes: {', '.join(sorted(accepted)) or 'none'})"
                    )
    try:
        probe = factory(**seg.params)
    except Exception as exc:
        raise ConfigError(
            f"segmented.params: {seg.estimator} rejected them ({type(exc).__name__}: {exc})"
        ) from None
    needs = ("fit", "predict_proba") if task == "classification" else ("fit", "predict")
    for method in needs:
        if not callable(getattr(probe, method, None)):
            raise ConfigError(
                f"segmented.estimator: {seg.estimator} built a {type(probe).__name__}, which has no "
                f"{method}() (a {task} model needs {' and '.join(needs)})"
            )


def build_estimator(factory: Callable[..., Any], params: Mapping[str, Any], spec: FitSpec) -> Any:
    """An unfitted estimator from the factory, seeded when it takes ``random_state``, behind
    the configured one-hot encoder and imputer (a scikit-learn Pipeline)."""
    est = factory(**params)
    if hasattr(est, "get_params") and "random_state" in est.get_params(deep=False):
        if "random_state" not in params:
            est.set_params(random_state=spec.seed)
    route = spec.route
    one_hot = spec.one_hot and bool(route.categorical)
    impute = spec.impute != "none" and bool(route.numeric)
    if not one_hot and not impute:
        return est
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    parts: list[tuple[str, Any, list[str]]] = []
    if route.categorical:
        cat: Any = OneHotEncoder(handle_unknown="ignore", sparse_output=False) if one_hot else "passthrough"
        parts.append(("categorical", cat, list(route.categorical)))
    if route.numeric:
        num: Any = SimpleImputer(strategy=spec.impute, keep_empty_features=True) if impute else "passthrough"
        parts.append(("numeric", num, list(route.numeric)))
    prepare = ColumnTransformer(parts, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("prepare", prepare), ("model", est)])


def _fit(est: Any, features: pd.DataFrame, label: pd.Series, weights: np.ndarray | None) -> Any:
    if weights is None:
        return est.fit(features, label)
    steps = getattr(est, "steps", None)
    if steps:  # a Pipeline routes fit params by step name
        return est.fit(features, label, **{f"{steps[-1][0]}__sample_weight": weights})
    return est.fit(features, label, sample_weight=weights)


# --------------------------------------------------------------------------- pandas frames


def model_frame(pdf: pd.DataFrame, route: RouteSpec) -> pd.DataFrame:
    """The estimator's input: categorical columns as strings (null -> MISSING), numeric
    columns as float64 (null -> NaN), in the configured order."""
    out: dict[str, pd.Series] = {}
    for c in route.categorical:
        s = pdf[c]
        out[c] = s.astype(object).where(s.notna(), MISSING).astype(str)
    for c in route.numeric:
        out[c] = pd.to_numeric(pdf[c], errors="coerce").astype("float64")
    return pd.DataFrame(out, index=pdf.index)


def segment_keys(values: pd.Series) -> pd.Series:
    """Segment values as the strings Spark's ``cast(... AS string)`` gives (null stays None);
    whole floats print without '.0', as an integer column with nulls arrives in pandas."""

    def key(v: Any) -> str | None:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, float | np.floating) and float(v).is_integer():
            return str(int(v))
        if isinstance(v, bool | np.bool_):
            return "true" if v else "false"
        return str(v)

    return values.map(key).astype(object)


def positive_scores(model: Any, features: pd.DataFrame) -> np.ndarray:
    """P(label = 1) from a fitted classifier (0 when it never saw the positive class)."""
    proba = np.asarray(model.predict_proba(features))
    classes = [float(c) for c in getattr(model, "classes_", [0.0, 1.0])]
    if 1.0 not in classes:
        return np.zeros(len(features))
    return proba[:, classes.index(1.0)].astype("float64")


# --------------------------------------------------------------------------- fit one segment

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
    if spec.class_weight != "balanced" or spec.route.task != "classification":
        return None
    from mlops_spark.tuning import balanced_sample_weight

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
        "positive_rate": float(y.mean()) if spec.route.task == "classification" and len(y) else None,
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
    if spec.route.task == "classification" and y.nunique() < 2:
        return done(SINGLE_CLASS, f"every one of the {len(train)} train rows has label {y.iloc[0]:g}")
    features = model_frame(train, spec.route)
    best: dict[str, Any] = {}
    try:
        weights = _label_weights(y, spec)
        if tuning is not None:
            best, note = _tune_segment(features, y, val, weights, spec, factory, params, tuning, row)
            row["note"] = note
        merged = {**params, **best}
        est = _fit(build_estimator(factory, merged, spec), features, y, weights)
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
    from mlops_spark.tuning import HyperoptTuner, TrialOutcome, sklearn_metrics

    y_val = val[spec.label].astype("float64")
    if len(val) < 2 or (spec.route.task == "classification" and y_val.nunique() < 2):
        return {}, f"not tuned: the validation range has {len(val)} row(s) of {y_val.nunique()} class(es)"
    val_features = model_frame(val, spec.route)

    def objective(trial: dict[str, Any]) -> TrialOutcome:
        est = _fit(build_estimator(factory, {**params, **trial}, spec), features, y, weights)
        metrics = sklearn_metrics(est, val_features, y_val, spec.route.task, spec.route.threshold)
        value = metrics[tuning.metric]
        return TrialOutcome(-value if tuning.higher_is_better else value, metrics)

    result = HyperoptTuner().minimize(objective, tuning.settings, spec.seed)
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
        T.StructType([T.StructField(SEGMENT_KEY, T.StringType()), T.StructField(_PART, T.LongType())]),
    )
    fitter = segment_fitter(spec, factory, params, tuning)
    schema = T.StructType([T.StructField(_PART, T.LongType()), *FIT_SCHEMA.fields])

    def fit_with_task(pdf: pd.DataFrame) -> pd.DataFrame:
        out = fitter(pdf.drop(columns=[_PART]))
        out.insert(0, _PART, pdf[_PART].iloc[0])
        return out

    return (
        keyed.join(F.broadcast(tasks), SEGMENT_KEY)
        .repartition(bins, _PART)
        .groupBy(_PART, SEGMENT_KEY)
        .applyInPandas(fit_with_task, schema)
        .drop(_PART)
    )


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class SegmentModels:
    """Fitted models by segment, and the fallback (None when ``fallback: error``)."""

    models: Mapping[str, Any]
    fallback: Any | None = None

    @classmethod
    def from_blobs(cls, blobs: Mapping[str, bytes]) -> SegmentModels:
        import pickle

        loaded = {k: pickle.loads(v) for k, v in blobs.items()}
        fallback = loaded.pop(GLOBAL, None)
        return cls(models=loaded, fallback=fallback)


def route_predict(models: SegmentModels, pdf: pd.DataFrame, route: RouteSpec) -> pd.DataFrame:
    """Score each row with its segment's model (else the fallback): one output row per
    input row, same order. Columns: prediction, probability (classification) and
    MODEL_SEGMENT. Rows no model can serve raise JobFailed naming their segments."""
    n = len(pdf)
    keys = segment_keys(pdf[route.segment_column]).to_numpy()
    features = model_frame(pdf, route)
    prediction = np.full(n, np.nan)
    probability = np.full(n, np.nan)
    served = np.empty(n, dtype=object)
    known = np.array([k is not None and k in models.models for k in keys], dtype=bool)
    groups: list[tuple[str, np.ndarray, Any]] = []
    for key in pd.unique(keys[known]):
        groups.append((str(key), np.flatnonzero(known & (keys == key)), models.models[key]))
    rest = np.flatnonzero(~known)
    if len(rest):
        if models.fallback is None:
            missing = sorted({"<null>" if k is None else str(k) for k in keys[rest]})
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise JobFailed(
                f"segmented model: {len(rest)} row(s) of segment(s) {shown} have no model of their own "
                f"and the model has no global fallback (fallback: error); retrain with fallback: global "
                f"or filter those rows"
            )
        groups.append((GLOBAL, rest, models.fallback))
    for key, rows, model in groups:
        part = features.iloc[rows]
        if route.task == "classification":
            p = positive_scores(model, part)
            probability[rows] = p
            prediction[rows] = (p > route.threshold).astype("float64")
        else:
            prediction[rows] = np.asarray(model.predict(part), dtype="float64")
        served[rows] = key
    out = {PREDICTION: prediction}
    if route.task == "classification":
        out[PROBABILITY] = probability
    out[MODEL_SEGMENT] = served
    return pd.DataFrame(out, index=pdf.index)


_WORKER_MODELS: dict[str, SegmentModels] = {}
_WORKER_LOCK = threading.Lock()
_WORKER_CACHE_SIZE = 4
WORKER_LOADS: dict[str, int] = {}
"""How many times this process unpickled each model set (tests and benchmarks read it)."""


def models_key(blobs: Mapping[str, bytes]) -> str:
    """A content hash of a model set: the cache key on workers."""
    digest = hashlib.sha256()
    for key in sorted(blobs):
        digest.update(key.encode())
        digest.update(hashlib.sha256(blobs[key]).digest())
    return digest.hexdigest()


def cached_models(key: str, blobs: Mapping[str, bytes]) -> SegmentModels:
    """The unpickled models of ``key``, loaded once per Python worker process."""
    with _WORKER_LOCK:
        models = _WORKER_MODELS.get(key)
        if models is None:
            models = SegmentModels.from_blobs(blobs)
            WORKER_LOADS[key] = WORKER_LOADS.get(key, 0) + 1
            while len(_WORKER_MODELS) >= _WORKER_CACHE_SIZE:
                _WORKER_MODELS.pop(next(iter(_WORKER_MODELS)))
            _WORKER_MODELS[key] = models
    return models


def arrow_scorer(
    blobs: Mapping[str, bytes], route: RouteSpec, segment_key_column: str
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The mapInArrow function: every input column passes through untouched (no pandas
    round trip), the inputs are converted once per batch, and the routed outputs are
    appended."""
    key = models_key(blobs)
    frozen = dict(blobs)
    inputs = list(route.inputs)
    # routing reads the segment as Spark cast it to string (segment_key_column)
    keyed_route = RouteSpec(
        segment_column=segment_key_column,
        categorical=route.categorical,
        numeric=route.numeric,
        task=route.task,
        threshold=route.threshold,
        fallback=route.fallback,
    )

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        models = cached_models(key, frozen)
        for batch in batches:
            pdf = batch.select([segment_key_column, *inputs]).to_pandas()
            out = route_predict(models, pdf, keyed_route)
            batch = batch.append_column(PREDICTION, pa.array(out[PREDICTION].to_numpy(), pa.float64()))
            if route.task == "classification":
                batch = batch.append_column(
                    "__probability", pa.array(out[PROBABILITY].to_numpy(), pa.float64())
                )
            yield batch.append_column(MODEL_SEGMENT, pa.array(out[MODEL_SEGMENT].tolist(), pa.string()))

    return score


# --------------------------------------------------------------------------- the Spark stage


class _RouterParams(Params):
    segmentCol: Param[str] = Param(
        Params._dummy(), "segmentCol", "the segment column", typeConverter=TypeConverters.toString
    )
    categoricalCols: Param[Any] = Param(
        Params._dummy(), "categoricalCols", "categorical inputs", typeConverter=TypeConverters.toListString
    )
    numericCols: Param[Any] = Param(
        Params._dummy(), "numericCols", "numeric inputs", typeConverter=TypeConverters.toListString
    )
    task: Param[str] = Param(
        Params._dummy(), "task", "classification or regression", typeConverter=TypeConverters.toString
    )
    threshold: Param[float] = Param(
        Params._dummy(), "threshold", "P(1) above which prediction is 1", typeConverter=TypeConverters.toFloat
    )
    fallback: Param[str] = Param(
        Params._dummy(), "fallback", "global or error", typeConverter=TypeConverters.toString
    )


class SegmentRouter(Transformer, _RouterParams, MLReadable["SegmentRouter"], MLWritable):
    """A pyspark.ml Transformer that scores each row with its segment's scikit-learn model.

    Adds ``prediction`` (double), ``probability`` (vector [P(0), P(1)], classification)
    and ``model_segment`` (which model served the row), as a fitted pyspark.ml
    classifier does, so `training.evaluate` and `scoring.prediction_rows` take its
    output unchanged. Saved inside a `PipelineModel` (the spark flavour of the logged
    model): its params as metadata, the models as a small Parquet table next to them.
    """

    def __init__(self, route: RouteSpec | None = None, blobs: Mapping[str, bytes] | None = None) -> None:
        super().__init__()
        self._blobs: dict[str, bytes] = dict(blobs or {})
        if route is not None:
            self._set(
                segmentCol=route.segment_column,
                categoricalCols=list(route.categorical),
                numericCols=list(route.numeric),
                task=route.task,
                threshold=float(route.threshold),
                fallback=route.fallback,
            )

    @property
    def route(self) -> RouteSpec:
        task = self.getOrDefault(self.task)
        fallback = self.getOrDefault(self.fallback)
        return RouteSpec(
            segment_column=self.getOrDefault(self.segmentCol),
            categorical=tuple(self.getOrDefault(self.categoricalCols)),
            numeric=tuple(self.getOrDefault(self.numericCols)),
            task="regression" if task == "regression" else "classification",
            threshold=float(self.getOrDefault(self.threshold)),
            fallback="error" if fallback == "error" else "global",
        )

    @property
    def blobs(self) -> dict[str, bytes]:
        """Pickled models by segment (GLOBAL: the fallback)."""
        return dict(self._blobs)

    @property
    def segments(self) -> list[str]:
        return sorted(k for k in self._blobs if k != GLOBAL)

    def global_only(self) -> SegmentRouter:
        """The same stage with only the fallback: every row scored by the global model."""
        if GLOBAL not in self._blobs:
            raise JobFailed("segmented model: there is no global model to score with")
        return SegmentRouter(self.route, {GLOBAL: self._blobs[GLOBAL]})

    def copy(self, extra: Any = None) -> SegmentRouter:
        that = super().copy(extra)
        that._blobs = dict(self._blobs)
        return that

    def _transform(self, dataset: DataFrame) -> DataFrame:
        route = self.route
        for col in [route.segment_column, *route.inputs]:
            if col not in dataset.columns:
                raise MissingColumnError("input of the segmented model", col, dataset.columns)
        taken = {PREDICTION, PROBABILITY, MODEL_SEGMENT, SEGMENT_KEY} & set(dataset.columns)
        if taken:
            raise JobFailed(
                f"segmented model: the input already has column(s) {', '.join(sorted(taken))}; "
                "drop or rename them before scoring"
            )
        keyed = dataset.withColumn(SEGMENT_KEY, F.col(route.segment_column).cast("string"))
        fields = [*keyed.schema.fields, T.StructField(PREDICTION, T.DoubleType())]
        if route.task == "classification":
            fields.append(T.StructField("__probability", T.DoubleType()))
        fields.append(T.StructField(MODEL_SEGMENT, T.StringType()))
        scored = keyed.mapInArrow(arrow_scorer(self._blobs, route, SEGMENT_KEY), T.StructType(fields))
        if route.task == "classification":
            p = F.col("__probability")
            scored = scored.withColumn(PROBABILITY, array_to_vector(F.array(1.0 - p, p))).drop(
                "__probability"
            )
        return scored.drop(SEGMENT_KEY)

    def write(self) -> MLWriter:
        return _RouterWriter(self)

    @classmethod
    def read(cls) -> MLReader[SegmentRouter]:
        return _RouterReader()


_MODELS_DIR = "segment_models"
_BLOB_SCHEMA = T.StructType(
    [T.StructField("segment", T.StringType(), False), T.StructField("model", T.BinaryType(), False)]
)


class _RouterWriter(MLWriter):
    def __init__(self, instance: SegmentRouter) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession)
        rows = sorted(self.instance.blobs.items())
        # one model per task: no single task carries every model (they can be large)
        slices = self.sparkSession.sparkContext.parallelize(rows, max(1, len(rows)))
        self.sparkSession.createDataFrame(slices, _BLOB_SCHEMA).write.parquet(os.path.join(path, _MODELS_DIR))


class _RouterReader(MLReader[SegmentRouter]):
    def load(self, path: str) -> SegmentRouter:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        router = SegmentRouter()
        router._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(router, metadata)
        rows = self.sparkSession.read.parquet(os.path.join(path, _MODELS_DIR)).collect()
        router._blobs = {str(r["segment"]): bytes(r["model"]) for r in rows}
        return router


# --------------------------------------------------------------------------- the pyfunc flavour


class SegmentedModel(PythonModel):
    """The python_function flavour: routes pandas rows to their segment's model.

    Loading needs this package, scikit-learn and the packages of the estimators (a user's
    own estimator code travels inside the pickled models)."""

    def __init__(self, route: RouteSpec) -> None:
        self.route = route
        self._models: SegmentModels | None = None

    def load_context(self, context: Any) -> None:
        table = pd.read_parquet(context.artifacts["segment_models"])
        self._models = SegmentModels.from_blobs(dict(zip(table["segment"], table["model"], strict=True)))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        if self._models is None:
            raise JobFailed("segmented model: predict() before load_context(); load it with mlflow.pyfunc")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        missing = [c for c in [self.route.segment_column, *self.route.inputs] if c not in frame.columns]
        if missing:
            raise MissingColumnError("input of the segmented model", missing[0], list(frame.columns))
        return route_predict(self._models, frame, self.route)


def pip_requirements(factory: Callable[..., Any] | None = None) -> list[str]:
    """Pinned requirements of a logged segmented model (plus the estimator's package)."""
    from importlib import metadata

    names = ["mlflow", "scikit-learn", "cloudpickle", "pandas", "pyarrow", "pyspark", "mlops-spark"]
    module = getattr(factory, "__module__", "") or ""
    top = module.split(".")[0]
    if top and _importable_everywhere(module) and top not in sys.stdlib_module_names:
        names += metadata.packages_distributions().get(top, [])
    out: list[str] = []
    for name in dict.fromkeys(names):
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


class _SegmentedFlavor:
    """What `mlflow.models.Model.log` calls to write the model folder: the pyfunc flavour
    (SegmentedModel + the models as Parquet) and the spark flavour (the router stage)."""

    __name__ = "mlops_spark.segmented"

    @staticmethod
    def save_model(
        path: str,
        mlflow_model: Any,
        router: SegmentRouter,
        signature: Any = None,
        input_example: Any = None,
        pip_requirements: list[str] | None = None,
        dfs_tmpdir: str | None = None,
        **_: Any,
    ) -> None:
        import mlflow.spark
        from mlflow.models import Model
        from pyspark.ml import PipelineModel

        with tempfile.TemporaryDirectory() as tmp:
            blobs = pd.DataFrame(sorted(router.blobs.items()), columns=["segment", "model"])
            models_file = os.path.join(tmp, "segment_models.parquet")
            blobs.to_parquet(models_file, index=False)
            spark_dir = os.path.join(tmp, "spark")
            mlflow.spark.save_model(
                PipelineModel([router]), spark_dir, dfs_tmpdir=dfs_tmpdir, pip_requirements=pip_requirements
            )
            spark_flavor = Model.load(spark_dir).flavors["spark"]
            mlflow.pyfunc.save_model(
                path,
                python_model=SegmentedModel(router.route),
                artifacts={"segment_models": models_file},
                mlflow_model=mlflow_model,
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements,
            )
            shutil.copytree(
                os.path.join(spark_dir, spark_flavor["model_data"]), os.path.join(path, "sparkml")
            )
        mlflow_model.add_flavor("spark", **{**spark_flavor, "model_data": "sparkml"})
        mlflow_model.save(os.path.join(path, "MLmodel"))


def log_segmented_model(
    router: SegmentRouter,
    example: pd.DataFrame,
    registered_model_name: str | None,
    factory: Callable[..., Any] | None = None,
    dfs_tmpdir: str | None = None,
) -> Any:
    """Log ONE model (pyfunc + spark flavours) to the active run; register it when a name
    is given. Returns MLflow's ModelInfo."""
    from mlflow.models import Model, infer_signature

    output = route_predict(SegmentModels.from_blobs(router.blobs), example, router.route)
    return Model.log(
        artifact_path=None,
        name="model",
        flavor=_SegmentedFlavor,
        registered_model_name=registered_model_name,
        router=router,
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=pip_requirements(factory),
        dfs_tmpdir=dfs_tmpdir,
    )


# --------------------------------------------------------------------------- metrics in Spark


def _safe_div(num: Column, den: Column) -> Column:
    return F.when(den != 0, num / den)


def segment_metrics(
    scored: DataFrame,
    segment_column: str,
    label: str,
    task: Task,
    threshold: float = 0.5,
    probability: str = "__p",
    prefix: str = "test_",
) -> DataFrame:
    """Per-segment metrics of scored rows, every segment in the same Spark jobs.

    Classification (``probability`` holds P(1) as a double): ROC AUC from ranks (average
    ranks for ties, so it equals scikit-learn's roc_auc_score; null when a segment has one
    class), log loss, accuracy, precision, recall, F1 at ``threshold``, positive rate,
    rows. Regression (``prediction``): rmse, mae, r2, rows. Columns: ``segment`` (the
    segment as a string, null for null segments) and ``<prefix><metric>``.
    """
    seg = F.col(segment_column).cast("string").alias("segment")
    y = F.col(label).cast("double")
    if task == "regression":
        err = F.col(PREDICTION) - y
        base = scored.select(seg, y.alias("y"), err.alias("err"))
        agg = base.groupBy("segment").agg(
            F.count(F.lit(1)).alias("rows"),
            F.sqrt(F.avg(F.col("err") * F.col("err"))).alias("rmse"),
            F.avg(F.abs("err")).alias("mae"),
            F.sum(F.col("err") * F.col("err")).alias("sse"),
            F.variance("y").alias("var"),
        )
        r2 = 1.0 - _safe_div(F.col("sse"), F.col("var") * (F.col("rows") - 1))
        out = agg.select("segment", "rmse", "mae", r2.alias("r2"), F.col("rows").cast("double").alias("rows"))
    else:
        p = F.col(probability).cast("double")
        base = scored.select(seg, y.alias("y"), p.alias("p"))
        clipped = F.greatest(F.least(F.col("p"), F.lit(1 - 1e-15)), F.lit(1e-15))
        hit = (F.col("p") > threshold).cast("double")
        yc = F.col("y")
        counts = base.groupBy("segment").agg(
            F.count(F.lit(1)).alias("rows"),
            F.avg(-(yc * F.log(clipped) + (1 - yc) * F.log(1 - clipped))).alias("log_loss"),
            F.sum(hit * yc).alias("tp"),
            F.sum(hit * (1 - yc)).alias("fp"),
            F.sum((1 - hit) * yc).alias("fn"),
            F.sum((1 - hit) * (1 - yc)).alias("tn"),
            F.avg(yc).alias("positive_rate"),
        )
        ties = base.groupBy("segment", "p").agg(F.count(F.lit(1)).alias("n"), F.sum("y").alias("pos"))
        below = Window.partitionBy("segment").orderBy("p").rowsBetween(Window.unboundedPreceding, -1)
        ranked = ties.withColumn(
            "avg_rank", F.coalesce(F.sum("n").over(below), F.lit(0)) + (F.col("n") + 1) / 2.0
        )
        ranks = ranked.groupBy("segment").agg(
            F.sum(F.col("pos") * F.col("avg_rank")).alias("rank_sum"),
            F.sum("pos").alias("npos"),
            F.sum("n").alias("nall"),
        )
        auc = _safe_div(
            F.col("rank_sum") - F.col("npos") * (F.col("npos") + 1) / 2.0,
            F.col("npos") * (F.col("nall") - F.col("npos")),
        )
        aucs = ranks.select("segment", auc.alias("areaUnderROC"))
        precision = F.coalesce(_safe_div(F.col("tp"), F.col("tp") + F.col("fp")), F.lit(0.0))
        recall = F.coalesce(_safe_div(F.col("tp"), F.col("tp") + F.col("fn")), F.lit(0.0))
        f1 = F.coalesce(_safe_div(2 * precision * recall, precision + recall), F.lit(0.0))
        out = counts.join(aucs, counts["segment"].eqNullSafe(aucs["segment"])).select(
            counts["segment"],
            aucs["areaUnderROC"],
            "log_loss",
            ((F.col("tp") + F.col("tn")) / F.col("rows")).alias("accuracy"),
            precision.alias("precision"),
            recall.alias("recall"),
            f1.alias("f1"),
            "positive_rate",
            F.col("rows").cast("double").alias("rows"),
        )
    return out.select("segment", *[F.col(c).alias(f"{prefix}{c}") for c in out.columns if c != "segment"])


def positive_probability_double(frame: DataFrame) -> DataFrame:
    """Add ``__p`` = P(1) from the router's probability vector."""
    from mlops_spark.training import positive_probability

    return frame.withColumn("__p", positive_probability(PROBABILITY))


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


__all__ = [
    "GLOBAL",
    "MISSING",
    "MODEL_SEGMENT",
    "FitSpec",
    "RouteSpec",
    "SegmentFits",
    "SegmentModels",
    "SegmentRouter",
    "SegmentTuning",
    "SegmentedModel",
    "build_estimator",
    "check_estimator",
    "fit_segment",
    "fit_segments",
    "import_estimator",
    "log_segmented_model",
    "route_predict",
    "segment_metrics",
    "segmented_app_config",
    "ship_by_value",
]
