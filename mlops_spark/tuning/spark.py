"""Tuning a pyspark.ml estimator: featurisation fitted once, each trial fits only the estimator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_spark.config import AppConfig
from mlops_spark.errors import ConfigError, JobFailed
from mlops_spark.tuning.interface import TrialOutcome, Tuner, TuningResult
from mlops_spark.tuning.tracking import active_run_id, log_summary, mlflow_trial_logger, tuning_metric
from mlops_spark.tuning.tuners import make_tuner

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from mlops_spark.runtime import JobContext

# --------------------------------------------------------------------------- pyspark.ml


def tune_spark_pipeline(
    ctx: JobContext,
    config: AppConfig,
    train_df: DataFrame,
    val_df: DataFrame,
    label: str,
    tuner: Tuner | None = None,
) -> tuple[dict[str, Any], TuningResult]:
    """Search the estimator's params on the validation range; return the best ones (and the search).

    The featurisation stages do not depend on the searched params, so they are fitted
    once on the train rows and their vectors cached; each trial fits only the estimator.
    The caller refits the whole pipeline with the returned params.
    """
    from pyspark.ml import Pipeline

    from mlops_spark.training import (
        FEATURES_VECTOR,
        WEIGHT,
        check_estimator_params,
        evaluate_model,
        featurizer_stages,
        make_estimator,
        with_balanced_weights,
    )

    model_cfg, seed = config.model, config.split.seed
    settings = model_cfg.tuning
    if settings is None or not settings.search_space:
        raise ConfigError("model.tuning.search_space is empty: nothing to tune")
    check_estimator_params(model_cfg, list(settings.search_space), "model.tuning.search_space")
    metric, higher = tuning_metric(model_cfg, settings, config.promotion.metric)

    if model_cfg.class_weight == "balanced" and model_cfg.resolved_task != "regression":
        if WEIGHT not in train_df.columns:
            counts = {float(r[0]): int(r[1]) for r in train_df.groupBy(label).count().collect()}
            total = sum(counts.values())
            train_df = with_balanced_weights(train_df, label, {c: n / total for c, n in counts.items()})
    featurizer = Pipeline(stages=featurizer_stages(model_cfg)).fit(train_df)
    keep = [FEATURES_VECTOR, label, *([WEIGHT] if WEIGHT in train_df.columns else [])]
    train_vec = featurizer.transform(train_df).select(*keep).persist()
    val_vec = featurizer.transform(val_df).select(FEATURES_VECTOR, label).persist()
    n_train, n_val = train_vec.count(), val_vec.count()
    if not n_val:
        raise JobFailed("tuning: the validation range has no labelled rows (see split.validation)")

    def objective(params: dict[str, Any]) -> TrialOutcome:
        fitted = make_estimator(model_cfg, label, params, seed).fit(train_vec)
        metrics = evaluate_model(fitted, val_vec, model_cfg, label)
        return TrialOutcome(-metrics[metric] if higher else metrics[metric], metrics)

    parent = active_run_id()
    on_trial = mlflow_trial_logger(parent) if parent else None
    ctx.say(
        f"tuning {model_cfg.estimator}: up to {settings.max_evals} trials on {n_train:,} train / "
        f"{n_val:,} validation rows, optimising validation {metric}"
    )
    try:
        tuner = tuner or make_tuner(settings)
        result = tuner.minimize(objective, settings, seed, on_trial)
    finally:
        train_vec.unpersist()
        val_vec.unpersist()
    best = result.best
    if parent:
        log_summary(parent, result, metric, "spark", tuner)
    stop = ", stopped early" if result.stopped_early else ""
    ctx.say(
        f"tuned: {len(result.trials)} trials in {result.seconds:.0f}s{stop}; best trial {best.number} "
        f"validation {metric} = {best.metrics.get(metric, float('nan')):.4f} with {best.params}"
    )
    return best.params, result
