"""Operating a use case: monitoring thresholds, retrain rule, per-job resources, segmented models."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from mlops_spark.config.model import TuningConfig
from mlops_spark.config.schema import DateRange, StrictModel


class MetricThreshold(StrictModel):
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


class CalibrationConfig(StrictModel):
    """Warn/alert limits measured on the reference instead of fixed numbers (see
    `mlops_spark.monitoring.calibration`): each metric on chunks of the reference shaped like
    what is monitored (each day, each rolling window) against the rest of it."""

    enabled: bool = True
    method: Literal["quantile", "std"] = "quantile"
    warn: Annotated[float, Field(ge=0.5, le=1.0)] = 0.95
    """quantile: warn at this quantile of the reference chunks' values."""
    alert: Annotated[float, Field(ge=0.5, le=1.0)] = 1.0
    """quantile: alert at this quantile (1.0: the largest) times ``margin``."""
    margin: Annotated[float, Field(ge=1.0)] = 1.25
    k_warn: Annotated[float, Field(gt=0.0)] = 3.0
    """std: warn at mean + k_warn standard deviations of the reference chunks."""
    k_alert: Annotated[float, Field(gt=0.0)] = 5.0
    min_chunks: Annotated[int, Field(ge=3)] = 10
    """Fewer reference chunks than this: the metric keeps its fixed thresholds."""
    min_alert: Annotated[float, Field(ge=0.0)] = 0.0
    """A floor under every calibrated alert limit (e.g. 0.1 for PSI on a very stable reference)."""
    metrics: list[str] = Field(
        default_factory=lambda: [
            "psi",
            "ks",
            "js_distance",
            "wasserstein_std",
            "null_rate_delta",
            "new_category_rate",
        ]
    )
    """Drift metrics calibrated on the reference."""
    quality: bool = True
    """Also calibrate the quality metrics' lower limits on the training run's holdout days."""


class EstimationConfig(StrictModel):
    """Quality estimated before labels land (confidence-based performance estimation)."""

    enabled: bool = True
    max_rows: Annotated[int, Field(ge=100)] = 200_000
    """Holdout rows the probability calibration is fitted on (a seeded sample beyond this)."""


Evidence = Literal["prediction_drift", "feature_drift", "estimated_quality", "realised_quality"]
DEFAULT_EVIDENCE: tuple[Evidence, ...] = ("prediction_drift", "estimated_quality", "realised_quality")


class RetrainRule(StrictModel):
    """Retrain when `alerts` of the last `of_last` monitored partitions have an alert of the
    kinds of evidence listed (the monitor's calibrated alerts; see docs/monitoring.md)."""

    alerts: Annotated[int, Field(ge=1)] = 3
    of_last: Annotated[int, Field(ge=1)] = 7
    metrics: list[str] = Field(default_factory=lambda: ["psi", "areaUnderROC"])
    """Metrics whose alerts count (drift metrics for drift evidence, quality metrics for the
    estimated and realised quality)."""
    columns: list[str] = Field(default_factory=list)
    """Narrows drift evidence to these columns; empty: every prediction column (for
    prediction_drift) and every monitored feature (for feature_drift)."""
    evidence: list[Evidence] = Field(default_factory=lambda: list(DEFAULT_EVIDENCE))
    """Which alerts count: drift of the predictions, drift of the features, the quality
    estimated before labels land, the realised quality. feature_drift is not in the default:
    seasonal features drift without hurting the model, and the prediction drift and the
    estimated quality already say when a feature's change matters to it."""
    window: Literal["slide", "expand"] = "slide"
    """New split: 'slide' moves every range so the test range ends at the newest labelled
    partition; 'expand' keeps split.train.from and extends the train range."""

    @model_validator(mode="after")
    def _n_of_m(self) -> RetrainRule:
        if self.alerts > self.of_last:
            raise ValueError(f"'alerts' ({self.alerts}) cannot exceed 'of_last' ({self.of_last})")
        return self


class CanaryConfig(StrictModel):
    """Shadow scoring with @challenger beside @champion (never touching champion predictions)."""

    enabled: bool = True
    table: str | None = None
    """Shadow predictions table; None: predictions.<predictions table>_shadow."""
    partitions: Annotated[int, Field(ge=1)] = 7
    """The retrain job shadow-scores this many of the newest partitions before the gate."""
    max_metric_drop: float = 0.0
    """The retrain job does not promote a challenger whose realised primary metric on the
    shadow partitions is worse than the champion's by more than this."""


class MonitoringConfig(StrictModel):
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
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    estimation: EstimationConfig = Field(default_factory=EstimationConfig)
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


class JobResources(StrictModel):
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


class ResourcesConfig(StrictModel):
    """Per-job Spark resources (training usually wants more than scoring)."""

    defaults: JobResources = Field(default_factory=JobResources)
    jobs: dict[str, JobResources] = Field(default_factory=dict)
    """Overrides by job name, e.g. {train: {executor_memory: 8g, shuffle_partitions: 200}}."""

    def for_job(self, job: str) -> JobResources:
        return self.defaults.overlaid(self.jobs.get(job, JobResources()))


class SegmentedConfig(StrictModel):
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
    task: Literal["binary", "regression"] | None = None
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
