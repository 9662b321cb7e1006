"""pipeline: the whole flow in one process and one Spark session (the README's main job)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pyspark.sql import SparkSession

from mlops_spark import registry
from mlops_spark.config import AppConfig
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.features import features
from mlops_spark.jobs.ingest import ingest
from mlops_spark.jobs.monitor import monitor
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.retrain import retrain
from mlops_spark.jobs.score import score
from mlops_spark.jobs.train import train
from mlops_spark.jobs.validate import validate
from mlops_spark.runtime import JobRun, pipeline_summary, progress
from mlops_spark.session import get_spark

Hook = Callable[[JobRun[Any]], None]


def pipeline(
    config: AppConfig,
    args: JobArgs = JobArgs(),
    spark: SparkSession | None = None,
    after_each: Hook | None = None,
) -> list[JobRun[Any]]:
    """ingest -> validate -> features -> train -> promote -> score (-> the segmented model's
    train, promote and score when configured) -> monitor -> retrain, each a full job with
    its own audit row. Training runs when there is no champion yet; later, the retrain job
    retrains when monitoring says so. A rerun with nothing new only says that nothing is new.

    ``after_each`` is called with each finished job's run before the next job starts (a
    notebook's progress display; a test's check of what the session holds between stages)."""
    spark = spark or get_spark(config.spark, app_name="mlops-spark-pipeline")
    started = time.time()
    done: list[JobRun[Any]] = []
    run = _runner(done, after_each)

    # The date range says which days to play back from the source; every later stage is
    # incremental, so it only picks up partitions it has not processed yet.
    steps: list[tuple[str, Callable[[], JobRun[Any]]]] = [
        ("ingest", lambda: ingest(config, args, spark)),
        ("validate", lambda: validate(config, JobArgs(), spark)),
        ("features", lambda: features(config, JobArgs(), spark)),
    ]
    for name, step in steps:
        progress(f"== {name}")
        run(step)
    # The first run trains and promotes; after that, models change only when the retrain
    # job (driven by monitoring) says so, as in production.
    if not _has_champion(config, config.mlflow.model_name):
        progress("== train")
        run(lambda: train(config, JobArgs(), spark))
        progress("== promote")
        run(lambda: promote(config, JobArgs(), spark))
    else:
        progress("== train: a champion exists; retraining is the retrain job's call (below)")
    progress("== score")
    run(lambda: score(config, JobArgs(maintenance=args.maintenance), spark))
    done += segmented_steps(config, spark, after_each)
    progress("== monitor")
    run(lambda: monitor(config, JobArgs(), spark))
    progress("== retrain")
    run(lambda: retrain(config, JobArgs(), spark))
    took = time.time() - started
    print(pipeline_summary(done, took), flush=True)
    progress(f"== pipeline done in {took:.0f}s: " + " -> ".join(c.job for c in done))
    return done


def segmented_steps(
    config: AppConfig, spark: SparkSession, after_each: Hook | None = None
) -> list[JobRun[Any]]:
    """The segmented model's train and promote (when it has no champion yet) and score; its
    score is skipped, with a line that says so, when the gate refused its first model."""
    if config.segmented is None:
        return []
    from mlops_spark.jobs.promote_segmented import promote_segmented
    from mlops_spark.jobs.score_segmented import score_segmented
    from mlops_spark.jobs.train_segmented import train_segmented

    done: list[JobRun[Any]] = []
    run = _runner(done, after_each)

    name = config.segmented.model_name
    has_champion = _has_champion(config, name)
    if not has_champion:
        progress("== train_segmented")
        run(lambda: train_segmented(config, JobArgs(), spark))
        progress("== promote_segmented")
        run(lambda: promote_segmented(config, JobArgs(), spark))
        has_champion = _has_champion(config, name)  # the gate may refuse, or wait for approval
    if has_champion:
        progress("== score_segmented")
        run(lambda: score_segmented(config, JobArgs(), spark))
    else:  # its gate refused the first model: nothing to score with; the flow goes on
        progress(f"== score_segmented: skipped, {name} has no @{config.scoring.alias} (its gate refused it)")
    return done


def _runner(done: list[JobRun[Any]], after_each: Hook | None) -> Callable[[Callable[[], JobRun[Any]]], None]:
    """Runs a step, keeps its run in ``done`` and hands it to the hook."""

    def run(step: Callable[[], JobRun[Any]]) -> None:
        finished = step()
        done.append(finished)
        if after_each is not None:
            after_each(finished)

    return run


def _has_champion(config: AppConfig, name: str) -> bool:
    client = registry.configure(config.mlflow)
    return registry.try_resolve(client, name, config.scoring.alias) is not None
