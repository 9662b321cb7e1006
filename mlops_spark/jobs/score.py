"""score: the features partitions not yet scored by the model -> predictions (replaceWhere).

Incremental by default (only partitions without predictions of the chosen version), or an
explicit --date / --from --to backfill; written exactly once in commits of a few
partitions (`mlops_spark.scoring.commits`), by the fastest exact path for the model
(`mlops_spark.scoring.scorer`). With ``monitoring.ab_share`` a stable share of entities is
scored by @challenger (`mlops_spark.scoring.ab`).
"""

from __future__ import annotations

import datetime as dt

from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from mlops_spark import lake, registry
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed, TableNotFoundError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.partition_policy import select_partitions
from mlops_spark.results import ScoreResult
from mlops_spark.runtime import JobContext, JobRun, run_job
from mlops_spark.scoring import Method, Scorer, lineage_rows, prepare_scorer
from mlops_spark.scoring.ab import describe_split, routed_rows
from mlops_spark.scoring.commits import (
    ARROW_BATCH_CONF,
    commit_batches,
    rows_per_day,
    scored_partitions,
    session_conf,
    write_in_commits,
)
from mlops_spark.tasks import for_model


def score(
    config: AppConfig,
    args: JobArgs = JobArgs(),
    spark: SparkSession | None = None,
    *,
    method: Method | None = None,
    partitions_per_commit: int | None = None,
    arrow_batch_rows: int | None = None,
    job: str = "score",
) -> JobRun[ScoreResult]:
    """Score with the model at ``--alias`` (default: scoring.alias) or ``--model-version``.

    By default only feature partitions without predictions from that model version are
    scored; --date / --from --to rescore a range (a range with no partition fails).
    ``method``, ``partitions_per_commit`` and ``arrow_batch_rows`` override the scoring
    section of the config (``method`` forces a path; 'auto' takes the fastest exact one).
    """
    method = method or config.scoring.method
    days_per_commit = partitions_per_commit or config.scoring.partitions_per_commit
    batch_rows = arrow_batch_rows or config.scoring.arrow_batch_rows
    if days_per_commit is not None and days_per_commit < 1:
        raise JobFailed(f"score: partitions_per_commit must be >= 1 (got {days_per_commit})")

    def body(ctx: JobContext) -> ScoreResult:
        client = registry.configure(config.mlflow)
        name, spec = config.mlflow.model_name, config.features
        if args.model_version is not None:
            champion = registry.resolve(client, name, version=args.model_version)
        else:
            champion = registry.resolve(client, name, alias=args.alias or config.scoring.alias)
        model = for_model(config, client, champion.run_id).model
        challenger = ab_challenger(client, config, champion, args)
        versions = [champion.version, *([challenger.version] if challenger else [])]
        features, predictions = ctx.catalog.features(), ctx.catalog.predictions()
        version = lake.current_version(ctx.spark, features)
        if version is None:
            raise TableNotFoundError(features.name, features.path, "run the features job first")
        selection = select_partitions(
            features.name,
            lake.list_partitions(ctx.spark, features, version),
            args.date_range,
            lambda: scored_partitions(ctx.spark, predictions, versions),
            "run the features job for them first",
        )
        if not selection:
            done = f"every partition of {features.name} has predictions from {champion.describe()}"
            ctx.say(f"nothing new to score: {done}")
            return ScoreResult(0)
        frame, ref = lake.read_table(ctx.spark, features, version=version)
        ctx.read(ref)
        scorers = [
            prepare_scorer(
                ctx.spark, model, m, frame, features.name, method, config.scoring.max_compiled_tree_nodes
            )
            for m in [champion, *([challenger] if challenger else [])]
        ]
        ctx.say(f"scoring path: {scorers[0].method} ({scorers[0].detail})")
        keys = (spec.entity_id.name, spec.date_column)
        mon = config.monitoring
        if challenger is not None:
            ctx.say(
                describe_split(spec.entity_id.name, mon.ab_share, mon.ab_salt, champion, challenger)
                + f" via {scorers[1].method}"
            )

        chosen = frame.where(lake.partition_filter(spec.date_column, dates=selection.targets))
        if challenger is None:
            scored = lineage_rows(
                chosen.transform(scorers[0].score(keys)), keys, scorers[0].task, champion, ctx.run_id
            )
        else:
            pair: tuple[Scorer, Scorer] = (scorers[0], scorers[1])
            scored = routed_rows(
                chosen, keys, spec.entity_id.name, pair, mon.ab_share, mon.ab_salt, ctx.run_id
            )
        day_rows = rows_per_day(frame, spec.date_column, selection.targets)
        batches = commit_batches(day_rows, config.scoring.rows_per_commit, days_per_commit)

        def still_pending(dates: list[dt.date]) -> list[dt.date]:
            if selection.explicit:
                return dates
            done = scored_partitions(ctx.spark, predictions, [champion.version])
            return [d for d in dates if d not in done]

        lake.ensure_partitioned_table(ctx.spark, predictions, scored.schema)
        with session_conf(ctx.spark, {ARROW_BATCH_CONF: str(batch_rows)}):
            results = write_in_commits(
                scored,
                predictions,
                batches,
                f"score {champion.describe()} run {ctx.run_id}",
                still_pending,
                merge_schema=challenger is not None,
                say=ctx.say,
            )
        for result in results:
            ctx.wrote(result)
        written = sum(r.rows_written for r in results)
        ctx.rows_read += written
        ctx.say(
            f"scored {selection.describe()} with {champion.describe()} via {scorers[0].method}: "
            f"{written:,} predictions in {len(results)} commit(s)"
        )
        if args.maintenance:
            ctx.say(lake.optimize_and_vacuum(ctx.spark, predictions))
        return ScoreResult(
            len(selection.targets), written, scorers[0].method, challenger.version if challenger else None
        )

    return run_job(job, config, args.as_dict(), body, spark)


def ab_challenger(
    client: MlflowClient, config: AppConfig, champion: registry.ModelRef, args: JobArgs
) -> registry.ModelRef | None:
    """@challenger, when monitoring.ab_share routes a share of entities to it: only for runs
    that score with the configured alias (not --alias/--model-version) and only while the
    challenger is another version than the champion."""
    if config.monitoring.ab_share <= 0 or args.model_version is not None or args.alias is not None:
        return None
    challenger = registry.try_resolve(client, config.mlflow.model_name, registry.CHALLENGER)
    if challenger is None or challenger.version == champion.version:
        return None
    return challenger
