"""train: features (pinned version) -> MLflow run -> registered version @challenger."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig, resolved_dict, validate_config
from mlops_spark.errors import JobFailed, ModelNotFoundError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.lake import TableRef
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.training import (
    WEIGHT,
    build_pipeline,
    evaluate,
    feature_importances,
    in_range,
    model_input_columns,
    prepare_training_frame,
    primary_metric,
    with_balanced_weights,
)

CHALLENGER = "challenger"
CONFIG_ARTIFACT = "config/resolved.json"
FEATURES_VERSION_TAG = "lineage.features_version"


def train(config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None) -> JobContext:
    """Fit the configured pipeline on the train range, evaluate on the test range, log
    everything to MLflow and register the model as ``@challenger``.

    With ``--reproduce RUN_ID`` the run's recorded config and feature-table version are
    used instead, and the new metrics are compared with the recorded ones.
    """
    pinned: int | None = None
    original: dict[str, float] | None = None
    if args.reproduce:
        config, pinned, original = load_run_for_reproduction(config, args.reproduce)

    def body(ctx: JobContext) -> None:
        client = registry.configure(config.mlflow)
        result = fit_and_log(ctx, config, pinned, reproduces=args.reproduce)
        ctx.result.update(result)
        ref: registry.ModelRef = result["model"]
        registry.set_alias(client, ref, CHALLENGER)
        ctx.say(f"registered {ref.name} v{ref.version} @{CHALLENGER} (run {ref.run_id})")
        if original is not None:
            diffs = {k: abs(result["metrics"][k] - v) for k, v in original.items() if k in result["metrics"]}
            worst = max(diffs.values(), default=0.0)
            ctx.result["reproduction_max_abs_diff"] = worst
            ctx.say(f"reproduced run {args.reproduce}: largest metric difference {worst:.3g}")

    return run_job("train", config, args.as_dict(), body, spark)


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


def fit_and_log(
    ctx: JobContext, config: AppConfig, version: int | None, reproduces: str | None = None
) -> dict[str, Any]:
    """Fit, evaluate, log and register one model. Returns metrics and the ModelRef."""
    spec, model_cfg, split = config.features, config.model, config.split
    if spec.label is None:
        raise JobFailed("train: features.label is not configured")
    label, date_col = spec.label.name, spec.date_column
    data, ref = read_training_data(ctx, config, version)
    prepared = prepare_training_frame(data, model_cfg, label, ref.name)
    train_df = prepared.where(in_range(date_col, split.train))
    test_df = prepared.where(in_range(date_col, split.test))
    val_df = prepared.where(in_range(date_col, split.validation)) if split.validation else None

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
        tags["mlops.reproduces"] = reproduces
    with registry.start_run(config.mlflow, run_name=f"train-{ctx.run_id}", tags=tags) as run:
        tuned_params: dict[str, Any] = {}
        if model_cfg.tuning is not None and model_cfg.tuning.search_space and val_df is not None:
            from mlops_spark.tuning import tune_spark_pipeline

            tuned_params = tune_spark_pipeline(ctx, config, train_df, val_df, label)
        train_df = train_df.persist()
        pipeline = build_pipeline(model_cfg, label, tuned_params, split.seed)
        model = pipeline.fit(train_df)
        test_metrics = evaluate(model, test_df, model_cfg, label)
        metrics = {f"test_{k}": v for k, v in test_metrics.items()}
        if val_df is not None:
            metrics.update({f"val_{k}": v for k, v in evaluate(model, val_df, model_cfg, label).items()})
        metrics["train_rows"] = float(stats["n"])
        importances = feature_importances(model, test_df)
        train_df.unpersist()

        mlflow.log_params(
            {
                "estimator": model_cfg.estimator,
                **{f"param.{k}": v for k, v in {**model_cfg.params, **tuned_params}.items()},
                "categorical": ",".join(model_cfg.categorical),
                "numeric": ",".join(model_cfg.numeric),
                "train_range": f"{split.train.start}..{split.train.end}",
                "test_range": f"{split.test.start}..{split.test.end}",
                "class_weight": model_cfg.class_weight,
            }
        )
        mlflow.log_metrics(metrics)
        _log_lineage(ctx, config, data, ref, importances)
        model_ref = _log_and_register(config, model, test_df, run.info.run_id)

    metric, _ = primary_metric(model_cfg, config.promotion.metric)
    ctx.say(
        f"{model_cfg.estimator} on {int(stats['n']):,} rows: test {metric} = "
        f"{test_metrics.get(metric, float('nan')):.4f}"
    )
    return {"metrics": metrics, "model": model_ref, "run_id": model_ref.run_id, "importances": importances}


def _log_lineage(
    ctx: JobContext, config: AppConfig, data: DataFrame, ref: TableRef, importances: dict[str, float]
) -> None:
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
    dataset = mlflow.data.from_spark(  # type: ignore[attr-defined]
        data.select(*model_input_columns(config.model), config.features.label.name)  # type: ignore[union-attr]
        if config.features.label
        else data,
        path=ref.path,
        version=str(ref.version),
        name=ref.name,
    )
    mlflow.log_input(dataset, context="training")


def _log_and_register(
    config: AppConfig, model: Any, sample_source: DataFrame, run_id: str
) -> registry.ModelRef:
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
        registered_model_name=config.mlflow.model_name,
    )
    version = info.registered_model_version
    if version is None:
        raise ModelNotFoundError(f"MLflow did not register {config.mlflow.model_name!r}")
    return registry.ModelRef(config.mlflow.model_name, int(version), run_id)


def load_run_for_reproduction(config: AppConfig, run_id: str) -> tuple[AppConfig, int, dict[str, float]]:
    """The config, feature-table version and test metrics a run recorded."""
    registry.configure(config.mlflow)
    client = mlflow.tracking.MlflowClient()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise JobFailed(f"--reproduce: no MLflow run {run_id!r} in {mlflow.get_tracking_uri()}") from None
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=tmp
        )
        recorded = json.loads(Path(local).read_text())
    version = run.data.tags.get(FEATURES_VERSION_TAG)
    if version is None:
        raise JobFailed(f"--reproduce: run {run_id} has no {FEATURES_VERSION_TAG} tag")
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith(("test_", "val_"))}
    return validate_config(recorded, default_origin=f"run {run_id}"), int(version), metrics


__all__ = ["CHALLENGER", "WEIGHT", "fit_and_log", "train"]
