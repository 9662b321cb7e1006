"""train: features (pinned version) -> MLflow run -> registered version @challenger."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig, DateRange, resolved_dict, validate_config
from mlops_spark.errors import JobFailed, ModelNotFoundError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.lake import TableRef
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.training import (
    WEIGHT,
    build_pipeline,
    evaluate,
    feature_importances,
    model_input_columns,
    prepare_training_frame,
    primary_metric,
    time_split,
    with_balanced_weights,
    with_stable_layout,
)

CHALLENGER = "challenger"
CONFIG_ARTIFACT = "config/resolved.json"
FEATURES_VERSION_TAG = "lineage.features_version"
REPRODUCES_TAG = "mlops.reproduces"


def train(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Fit the configured pipeline on the train range (tuned on the validation range when
    a search space is set), evaluate on the test range, log everything to MLflow and
    register the model as ``@challenger``.

    With ``--reproduce RUN_ID`` the run's recorded config (model, features, split, lake)
    and feature-table version are used instead; the new metrics are compared with the
    recorded ones and the job fails if any differs by more than
    ``model.reproduce_tolerance``. A reproduction is logged as its own run (tagged
    ``mlops.reproduces``) but not registered, so it never becomes a challenger.
    """
    pinned: int | None = None
    original: dict[str, float] | None = None
    if args.reproduce:
        config, pinned, original = load_run_for_reproduction(config, args.reproduce)

    def body(ctx: JobContext) -> None:
        client = registry.configure(config.mlflow)
        result = fit_and_log(ctx, config, pinned, reproduces=args.reproduce)
        ctx.result.update(result)
        if original is None:
            ref: registry.ModelRef = result["model"]
            registry.set_alias(client, ref, CHALLENGER)
            ctx.say(f"registered {ref.name} v{ref.version} @{CHALLENGER} (run {ref.run_id})")
            return
        assert args.reproduce is not None
        check_reproduction(ctx, config, args.reproduce, original, result["metrics"], result["run_id"])

    return run_job("train", config, args.as_dict(), body, spark)


def check_reproduction(
    ctx: JobContext,
    config: AppConfig,
    run_id: str,
    original: dict[str, float],
    metrics: dict[str, float],
    new_run_id: str,
) -> None:
    """Compare a reproduction's metrics with the recorded ones; fail past the tolerance."""
    missing = sorted(set(original) - set(metrics))
    diffs = {k: abs(metrics[k] - v) for k, v in original.items() if k in metrics}
    worst = max(diffs.values(), default=0.0)
    tolerance = config.model.reproduce_tolerance
    ctx.result["reproduction_max_abs_diff"] = worst
    registry.log_to_run(new_run_id, metrics={"reproduction_max_abs_diff": worst})
    off = {k: d for k, d in diffs.items() if d > tolerance}
    if off or missing:
        detail = ", ".join(f"{k}: {original[k]:.12g} -> {metrics[k]:.12g}" for k in sorted(off))
        if missing:
            detail += f"{'; ' if detail else ''}not measured again: {', '.join(missing)}"
        raise JobFailed(
            f"--reproduce {run_id}: run {new_run_id} does not reproduce it within {tolerance:g} ({detail})"
        )
    ctx.say(
        f"reproduced run {run_id} as run {new_run_id}: {len(diffs)} metrics agree within "
        f"{tolerance:g} (largest difference {worst:.3g})"
    )


def read_training_data(ctx: JobContext, config: AppConfig, version: int | None) -> tuple[DataFrame, TableRef]:
    split = config.split
    path = ctx.table_path("features", config.features.name)
    df, ref = lake.read_table(
        ctx.spark,
        path,
        f"features.{config.features.name}",
        version=version,
        date_column=config.features.date_column,
        date_range=(split.train.start, split.test.end),
    )
    ctx.read(ref)
    return df, ref


ONE_DAY = dt.timedelta(days=1)


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


def fit_and_log(
    ctx: JobContext, config: AppConfig, version: int | None, reproduces: str | None = None
) -> dict[str, Any]:
    """Fit (after tuning, when configured), evaluate, log and (unless reproducing) register
    one model. Returns the metrics, the ModelRef (None when not registered) and run id."""
    spec, model_cfg, split = config.features, config.model, config.split
    if spec.label is None:
        raise JobFailed("train: features.label is not configured")
    label, date_col = spec.label.name, spec.date_column
    metric, _ = primary_metric(model_cfg, config.promotion.metric, where="promotion.metric")
    data, ref = read_training_data(ctx, config, version)
    prepared = prepare_training_frame(data, model_cfg, label, ref.name)
    parts = time_split(prepared, date_col, split)
    train_df, val_df, test_df = parts.train, parts.validation, parts.test
    if model_cfg.training_partitions is not None:
        keys = [spec.entity_id.name, date_col]
        lake.require_columns(train_df, ref.name, keys)
        train_df = train_df.transform(with_stable_layout(model_cfg.training_partitions, keys))

    stats = train_df.select(F.count(F.lit(1)).alias("n"), F.avg(label).alias("mean")).first()
    assert stats is not None
    if not stats["n"]:
        raise JobFailed(
            f"train: no labelled rows in {ref.name} v{ref.version} for {split.train.start}..{split.train.end}"
        )
    ctx.rows_read += int(stats["n"])
    if model_cfg.class_weight == "balanced" and model_cfg.task == "classification":
        train_df = with_balanced_weights(train_df, label, float(stats["mean"]))

    tags = {
        "mlops.job_run_id": ctx.run_id,
        "mlops.git_commit": registry.git_commit(),
        "mlops.seed": str(split.seed),
        FEATURES_VERSION_TAG: str(ref.version),
        "lineage.features_path": ref.path,
    }
    if reproduces:
        tags[REPRODUCES_TAG] = reproduces
    with registry.start_run(config.mlflow, run_name=f"train-{ctx.run_id}", tags=tags) as run:
        train_df, test_df = train_df.persist(), test_df.persist()
        val_df = val_df.persist() if val_df is not None else None
        tuned_params: dict[str, Any] = {}
        tuning = model_cfg.tuning
        holdout: tuple[dt.date, dt.date] | None = None
        if tuning is not None and tuning.search_space:
            from mlops_spark.tuning import tune_spark_pipeline

            if val_df is not None:
                tuned_params = tune_spark_pipeline(ctx, config, train_df, val_df, label)
            else:
                holdout = tuning_holdout(split.train, tuning.holdout_days)
                in_holdout = F.col(date_col).between(F.lit(holdout[0]), F.lit(holdout[1]))
                ctx.say(
                    f"tuning: no split.validation; trials fit on {split.train.start}..{holdout[0] - ONE_DAY} "
                    f"and are scored on {holdout[0]}..{holdout[1]}; the final fit uses the whole train range"
                )
                tuned_params = tune_spark_pipeline(
                    ctx, config, train_df.where(~in_holdout), train_df.where(in_holdout), label
                )
        pipeline = build_pipeline(model_cfg, label, tuned_params, split.seed)
        model = pipeline.fit(train_df)
        test_metrics = evaluate(model, test_df, model_cfg, label)
        metrics = {f"test_{k}": v for k, v in test_metrics.items()}
        if val_df is not None:
            metrics.update({f"val_{k}": v for k, v in evaluate(model, val_df, model_cfg, label).items()})
        metrics["train_rows"] = float(stats["n"])
        importances = feature_importances(model, test_df)
        train_df.unpersist()
        if val_df is not None:
            val_df.unpersist()

        mlflow.log_params(
            {
                "estimator": model_cfg.estimator,
                **{f"param.{k}": v for k, v in {**model_cfg.params, **tuned_params}.items()},
                "categorical": ",".join(model_cfg.categorical),
                "numeric": ",".join(model_cfg.numeric),
                "train_range": f"{split.train.start}..{split.train.end}",
                **(
                    {"validation_range": f"{split.validation.start}..{split.validation.end}"}
                    if split.validation
                    else {}
                ),
                **({"tuning_holdout": f"{holdout[0]}..{holdout[1]}"} if holdout else {}),
                "test_range": f"{split.test.start}..{split.test.end}",
                "class_weight": model_cfg.class_weight,
                "threshold": model_cfg.threshold,
                "seed": split.seed,
                "tuned": bool(tuned_params),
            }
        )
        mlflow.log_metrics(metrics)
        _log_lineage(ctx, config, data, ref, importances)
        model_ref = _log_model(config, model, test_df, register=reproduces is None)
        test_df.unpersist()
        run_id = str(run.info.run_id)

    ctx.say(
        f"{model_cfg.estimator} on {int(stats['n']):,} rows: test {metric} = "
        f"{test_metrics.get(metric, float('nan')):.4f}"
    )
    return {
        "metrics": metrics,
        "model": model_ref,
        "run_id": run_id,
        "importances": importances,
        "params": {**model_cfg.params, **tuned_params},
    }


def _log_lineage(
    ctx: JobContext, config: AppConfig, data: DataFrame, ref: TableRef, importances: dict[str, float]
) -> None:
    """The resolved config, every table read (name, path, version) as an artifact, tags
    and MLflow dataset inputs, and the feature importances."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "resolved.json"
        cfg.write_text(json.dumps(resolved_dict(config), indent=2, sort_keys=True))
        mlflow.log_artifact(str(cfg), artifact_path="config")
        lineage = Path(tmp) / "tables.json"
        lineage.write_text(
            json.dumps([{"name": r.name, "path": r.path, "version": r.version} for r in ctx.reads], indent=2)
        )
        mlflow.log_artifact(str(lineage), artifact_path="lineage")
        imp = Path(tmp) / "feature_importances.json"
        imp.write_text(json.dumps(dict(sorted(importances.items(), key=lambda kv: -kv[1])), indent=2))
        mlflow.log_artifact(str(imp))
    mlflow.set_tags({f"lineage.table.{r.name}": f"{r.path}@v{r.version}" for r in ctx.reads})
    label = config.features.label.name if config.features.label else None
    for read in ctx.reads:
        if read == ref:
            # only the columns the model uses: keeps the dataset's schema and digest small
            frame = data.select(*model_input_columns(config.model), *([label] if label else []))
        else:
            frame, _ = lake.read_table(ctx.spark, read.path, read.name, version=read.version)
        dataset = mlflow.data.from_spark(  # type: ignore[attr-defined]
            frame, path=read.path, version=str(read.version), name=read.name
        )
        mlflow.log_input(dataset, context="training")


def _log_model(
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
    predicted = model.transform(sample_source.limit(5)).select("prediction").toPandas()
    signature = infer_signature(example, predicted)
    info = mlflow.spark.log_model(
        model,
        "model",
        signature=signature,
        input_example=example,
        registered_model_name=config.mlflow.model_name if register else None,
        pip_requirements=model_requirements(),
    )
    if not register:
        return None
    version = info.registered_model_version
    if version is None:
        raise ModelNotFoundError(f"MLflow did not register {config.mlflow.model_name!r}")
    run = mlflow.active_run()
    assert run is not None
    return registry.ModelRef(config.mlflow.model_name, int(version), str(run.info.run_id))


def model_requirements() -> list[str]:
    """What a Spark pipeline model needs to load, pinned to this environment. Given
    explicitly because MLflow's inference starts a second Python process that loads
    the model (about a minute on a small machine)."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in ("pyspark", "mlflow")]


def load_run_for_reproduction(config: AppConfig, run_id: str) -> tuple[AppConfig, int, dict[str, float]]:
    """The config, feature-table version and test/validation metrics a run recorded.

    The recorded config is used except for where things run (``spark``, ``mlflow``): the
    reproduction is tracked in the store it was found in, on this machine's Spark.
    """
    registry.configure(config.mlflow)
    client = mlflow.tracking.MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise JobFailed(f"--reproduce: no MLflow run {run_id!r} in {mlflow.get_tracking_uri()}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=tmp
            )
        except (mlflow.exceptions.MlflowException, OSError):
            raise JobFailed(
                f"--reproduce: run {run_id} has no {CONFIG_ARTIFACT} artifact (is it a train run?)"
            ) from None
        recorded = json.loads(Path(local).read_text())
    version = run.data.tags.get(FEATURES_VERSION_TAG)
    if version is None:
        raise JobFailed(f"--reproduce: run {run_id} has no {FEATURES_VERSION_TAG} tag (is it a train run?)")
    current = resolved_dict(config)
    recorded.update({key: current[key] for key in ("spark", "mlflow")})
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "val_"))}
    return validate_config(recorded, default_origin=f"run {run_id}"), int(version), metrics


__all__ = ["CHALLENGER", "WEIGHT", "check_reproduction", "fit_and_log", "train"]
