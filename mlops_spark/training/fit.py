"""One training run: read the pinned features, split by time, tune, fit, evaluate, log, register.

Everything a run needs to be reproduced is logged with it (`mlops_spark.registry.lineage`):
the resolved config, the Delta version of every table read, the seed and the git commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import mlflow
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig, DateRange, resolved_dict
from mlops_spark.errors import JobFailed, ModelNotFoundError
from mlops_spark.lake import TableRef
from mlops_spark.metrics import primary_metric
from mlops_spark.outputs import PREDICTION
from mlops_spark.results import TrainResult
from mlops_spark.runtime import JobContext
from mlops_spark.tasks import infer_task, label_profile, with_task
from mlops_spark.training.pipeline import (
    build_pipeline,
    evaluate_model,
    feature_importances,
    in_range,
    model_input_columns,
    prepare_training_frame,
    time_split,
    with_balanced_weights,
    with_stable_layout,
)

ONE_DAY = dt.timedelta(days=1)


def read_training_data(ctx: JobContext, config: AppConfig, version: int | None) -> tuple[DataFrame, TableRef]:
    """The features table (at ``version``, or the latest) from the train range's start to the
    test range's end; the read is recorded on the job."""
    split = config.split
    df, ref = lake.read_table(
        ctx.spark, ctx.catalog.features(), version=version, date_range=(split.train.start, split.test.end)
    )
    return df, ctx.read(ref)


def tuning_holdout(train: DateRange, days: int | None) -> tuple[dt.date, dt.date]:
    """The last ``days`` of the train range (None: a quarter of it, at least one day) where
    tuning trials are scored when no validation range is configured."""
    length = (train.end - train.start).days + 1
    if length < 2:
        raise JobFailed(
            f"train: tuning needs split.validation or a train range of at least 2 days "
            f"(got {train.start}..{train.end})"
        )
    take = days if days is not None else max(1, length // 4)
    if take >= length:
        raise JobFailed(
            f"train: model.tuning.holdout_days ({take}) must be shorter than the train range ({length} days)"
        )
    return train.end - dt.timedelta(days=take - 1), train.end


def _tune(
    ctx: JobContext, config: AppConfig, train_df: DataFrame, val_df: DataFrame | None, label: str
) -> tuple[dict[str, Any], Any, tuple[dt.date, dt.date] | None]:
    """(best params, the search result, the tuning holdout when carved from the train range)."""
    tuning = config.model.tuning
    if tuning is None or not tuning.search_space:
        return {}, None, None
    from mlops_spark.tuning import tune_spark_pipeline

    if val_df is not None:
        params, result = tune_spark_pipeline(ctx, config, train_df, val_df, label)
        return params, result, None
    split, date_col = config.split, config.features.date_column
    holdout = tuning_holdout(split.train, tuning.holdout_days)
    in_holdout = F.col(date_col).between(F.lit(holdout[0]), F.lit(holdout[1]))
    ctx.say(
        f"tuning: no split.validation; trials fit on {split.train.start}..{holdout[0] - ONE_DAY} "
        f"and are scored on {holdout[0]}..{holdout[1]}; the final fit uses the whole train range"
    )
    params, result = tune_spark_pipeline(
        ctx, config, train_df.where(~in_holdout), train_df.where(in_holdout), label
    )
    return params, result, holdout


def fit_and_log(
    ctx: JobContext, config: AppConfig, version: int | None, reproduces: str | None = None
) -> TrainResult:
    """Fit (after tuning, when configured), evaluate, log and (unless reproducing) register
    one model version."""
    spec, split = config.features, config.split
    if spec.label is None:
        raise JobFailed("train: features.label is not configured")
    label, date_col = spec.label.name, spec.date_column
    data, ref = read_training_data(ctx, config, version)
    train_labels = data.where(in_range(date_col, split.train))
    task = infer_task(config.model, label_profile(train_labels, label, ref.name), ref.name, label)
    config = with_task(config, task)
    model_cfg = config.model
    metric, _ = primary_metric(task, config.promotion.metric, where="promotion.metric")
    parts = time_split(prepare_training_frame(data, model_cfg, label, ref.name), date_col, split)
    train_df, val_df, test_df = parts.train, parts.validation, parts.test
    if model_cfg.training_partitions is not None:
        keys = [spec.entity_id.name, date_col]
        lake.require_columns(train_df, ref.name, keys)
        train_df = train_df.transform(with_stable_layout(model_cfg.training_partitions, keys))

    counts = {float(r[0]): int(r[1]) for r in train_df.groupBy(label).count().collect()}
    rows = sum(counts.values())
    if not rows:
        raise JobFailed(
            f"train: no labelled rows in {ref.name} v{ref.version} for {split.train.start}..{split.train.end}"
        )
    ctx.rows_read += rows
    if model_cfg.class_weight == "balanced" and task != "regression":
        train_df = with_balanced_weights(train_df, label, {c: n / rows for c, n in counts.items()})

    tags = registry.run_tags("train", ctx.run_id, registry.training_tags(ref, split.seed))
    if reproduces:
        tags[registry.REPRODUCES_TAG] = reproduces
    with registry.start_run(config.mlflow, run_name=f"train-{ctx.run_id}", tags=tags) as run:
        train_df, test_df = train_df.persist(), test_df.persist()
        val_df = val_df.persist() if val_df is not None else None
        tuned_params, tuning, holdout = _tune(ctx, config, train_df, val_df, label)
        model = build_pipeline(model_cfg, label, tuned_params, split.seed).fit(train_df)
        test_metrics = evaluate_model(model, test_df, model_cfg, label)
        metrics = {f"test_{k}": v for k, v in test_metrics.items()}
        if val_df is not None:
            metrics.update(
                {f"val_{k}": v for k, v in evaluate_model(model, val_df, model_cfg, label).items()}
            )
            val_df.unpersist()
        metrics["train_rows"] = float(rows)
        importances = feature_importances(model, test_df)
        train_df.unpersist()
        params = {**model_cfg.params, **tuned_params}
        mlflow.log_params(_run_params(config, params, holdout, bool(tuned_params)))
        mlflow.log_metrics(metrics)
        columns = [*model_input_columns(model_cfg), label]
        registry.log_lineage(
            resolved_dict(config),
            ctx.reads,
            [(data.select(*columns), ref)],
            {"feature_importances.json": dict(sorted(importances.items(), key=lambda kv: -kv[1]))},
        )
        model_ref = log_model(config, model, test_df, register=reproduces is None)
        test_df.unpersist()
        run_id = str(run.info.run_id)

    value = test_metrics.get(metric, float("nan"))
    ctx.say(f"{model_cfg.estimator} on {rows:,} rows: test {metric} = {value:.4f}")
    return TrainResult(run_id, model_ref, metrics, params, importances, tuning, task=task)


def _run_params(
    config: AppConfig, params: dict[str, Any], holdout: tuple[dt.date, dt.date] | None, tuned: bool
) -> dict[str, Any]:
    model_cfg, split = config.model, config.split
    out: dict[str, Any] = {
        "estimator": model_cfg.estimator,
        "task": model_cfg.resolved_task,
        **{f"param.{k}": v for k, v in params.items()},
        "categorical": ",".join(model_cfg.categorical),
        "numeric": ",".join(model_cfg.numeric),
        "train_range": f"{split.train.start}..{split.train.end}",
        "test_range": f"{split.test.start}..{split.test.end}",
        "class_weight": model_cfg.class_weight,
        "threshold": model_cfg.threshold,
        "seed": split.seed,
        "tuned": tuned,
    }
    if split.validation:
        out["validation_range"] = f"{split.validation.start}..{split.validation.end}"
    if holdout:
        out["tuning_holdout"] = f"{holdout[0]}..{holdout[1]}"
    return out


def log_model(
    config: AppConfig, model: Any, sample_source: DataFrame, register: bool
) -> registry.ModelRef | None:
    """Log the fitted pipeline with its signature and an input example (raw feature rows);
    register it under ``mlflow.model_name`` unless ``register`` is False."""
    import mlflow.spark
    from mlflow.models import infer_signature

    inputs = model_input_columns(config.model)
    example: Any = sample_source.select(*inputs).limit(5).toPandas()
    if example.empty:
        raise JobFailed("train: the test range has no rows to build the model's input example")
    predicted = model.transform(sample_source.limit(5)).select(PREDICTION).toPandas()
    info = mlflow.spark.log_model(
        model,
        "model",
        signature=infer_signature(example, predicted),
        input_example=example,
        registered_model_name=config.mlflow.model_name if register else None,
        pip_requirements=registry.model_requirements(),
    )
    if not register:
        return None
    version = info.registered_model_version
    if version is None:
        raise ModelNotFoundError(f"MLflow did not register {config.mlflow.model_name!r}")
    run = mlflow.active_run()
    if run is None:
        raise JobFailed("train: the MLflow run ended before the model was registered")
    return registry.ModelRef(config.mlflow.model_name, int(version), str(run.info.run_id))
