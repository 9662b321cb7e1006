"""pipeline: the whole flow in one process and one Spark session (the README's main job)."""

from __future__ import annotations

import time

from pyspark.sql import SparkSession

from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.features import features
from mlops_spark.jobs.ingest import ingest
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.score import score
from mlops_spark.jobs.train import train
from mlops_spark.jobs.validate import validate
from mlops_spark.runtime import JobContext, pipeline_summary, progress
from mlops_spark.session import get_spark


def pipeline(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> list[JobContext]:
    """ingest -> validate -> features -> train -> promote -> score, each a full job with its
    own audit row. Training runs only when the train job's inputs are new (no @challenger
    trained on the current feature version) so a rerun only scores what is new."""
    spark = spark or get_spark(config.spark, app_name="mlops-spark-pipeline")
    started = time.time()
    done: list[JobContext] = []
    # The date range says which days to play back from the source; every later stage is
    # incremental, so it only picks up partitions it has not processed yet.
    steps = [
        ("ingest", lambda: ingest(config, args, spark)),
        ("validate", lambda: validate(config, JobArgs(), spark)),
        ("features", lambda: features(config, JobArgs(), spark)),
    ]
    for name, step in steps:
        progress(f"== {name}")
        done.append(step())
    if any(w.name.startswith("features.") for w in done[-1].writes) or not _has_champion(config):
        progress("== train")
        done.append(train(config, JobArgs(), spark))
        progress("== promote")
        done.append(promote(config, JobArgs(), spark))
    else:
        progress("== train: features unchanged since the last model; skipped")
    progress("== score")
    done.append(score(config, JobArgs(maintenance=args.maintenance), spark))
    took = time.time() - started
    print(pipeline_summary(done, took), flush=True)
    progress(f"== pipeline done in {took:.0f}s: " + " -> ".join(c.job for c in done))
    return done


def _has_champion(config: AppConfig) -> bool:
    from mlops_spark import registry

    client = registry.configure(config.mlflow)
    return registry.try_resolve(client, config.mlflow.model_name, "champion") is not None
