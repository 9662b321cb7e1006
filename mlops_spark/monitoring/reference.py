"""What monitoring compares against: the columns it watches and the reference profile.

The reference is the champion's own training rows (the features version and train range
its MLflow run recorded) or a fixed baseline window, scored by the same model through the
score job's own path, so prediction drift compares like with like.
"""

from __future__ import annotations

from collections.abc import Callable

from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed
from mlops_spark.lake import TableRef
from mlops_spark.monitoring.profile import ReferenceProfile, profile_reference
from mlops_spark.outputs import PREDICTION, PROBABILITY
from mlops_spark.registry import ModelRef
from mlops_spark.scoring import prepare_scorer


def monitored_columns(config: AppConfig, schema: T.StructType) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns: monitoring.columns or the model's inputs."""
    model = config.model
    if not config.monitoring.columns:
        return list(model.numeric), list(model.categorical)
    numeric: list[str] = []
    categorical: list[str] = []
    types = {f.name: f.dataType for f in schema.fields}
    for column in config.monitoring.columns:
        if column not in types:
            raise JobFailed(
                f"monitoring.columns: features.{config.features.name} has no column {column!r} "
                f"(it has: {', '.join(sorted(types))})"
            )
        is_number = isinstance(types[column], T.NumericType) and column not in model.categorical
        (numeric if is_number else categorical).append(column)
    return numeric, categorical


def prediction_columns(config: AppConfig) -> tuple[list[str], list[str]]:
    """(numeric, categorical) prediction columns whose drift is watched."""
    if config.model.resolved_task == "binary":
        return [PROBABILITY], [PREDICTION]
    if config.model.resolved_task == "multiclass":
        return [], [PREDICTION]
    return [PREDICTION], []


def reference_profile(
    spark: SparkSession,
    config: AppConfig,
    client: MlflowClient,
    ref: ModelRef,
    numeric: list[str],
    categorical: list[str],
    say: Callable[[str], None],
) -> tuple[ReferenceProfile, TableRef]:
    """Profile the reference rows of model version ``ref`` (see the module docstring)."""
    mon, spec = config.monitoring, config.features
    version: int | None = None
    if mon.reference == "baseline":
        assert mon.baseline is not None
        rng = (mon.baseline.start, mon.baseline.end)
    else:
        record = registry.training_record(client, ref)
        version = record.features_version
        rng = record.train_range or (config.split.train.start, config.split.train.end)
        if version is None:
            say(f"{ref.describe()}: its run recorded no features version; using the latest")
    features = Catalog(config).features()
    df, table_ref = lake.read_table(spark, features, version=version, date_range=rng)
    keys = [spec.entity_id.name, spec.date_column]
    scorer = prepare_scorer(
        spark, config.model, ref, df, table_ref.name, "auto", config.scoring.max_compiled_tree_nodes
    )
    scored = df.transform(scorer.score(keys)).join(
        df.select(*keys, *[c for c in {*numeric, *categorical} if c in df.columns]), keys
    )
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
    return profile, table_ref
