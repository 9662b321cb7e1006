"""score: the features partitions not yet scored by the model -> predictions (replaceWhere).

* Incremental: without --date / --from --to, only the feature partitions that hold no
  prediction from the chosen model version are scored. Both lists come from Delta's log
  (the features table's partition values, the predictions table's per-file statistics of
  ``model_version``), so finding one new day in a year opens no data file, and the scoring
  query reads only the chosen partitions.
* Exactly once: partitions are written by ``replaceWhere`` in commits of at most
  ``partitions_per_commit`` days. A commit is atomic, so a run killed at any point leaves
  the table at its last commit and the next run scores exactly what is still missing;
  a rerun of a range replaces, never appends.
* Concurrency: writers of different partitions do not conflict (the predicate is on the
  partition column only). When two runs write the same partition, Delta lets one commit;
  the other re-checks what is still unscored and retries, or fails cleanly.
* Fastest path that is exact: a pyspark.ml pipeline compiled to Spark SQL, else its own
  transform; a scikit-learn model compiled to SQL, else (and for any pyfunc model) Arrow
  batches through a model loaded once per Python worker. The summary names the path.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark import canary, lake, registry
from mlops_spark.compile import NotCompilableError, compile_sklearn_model, compile_spark_model
from mlops_spark.config import AppConfig
from mlops_spark.errors import JobFailed, MissingColumnError, TableNotFoundError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.lake import TableRef, WriteResult
from mlops_spark.runtime import JobContext, run_job
from mlops_spark.scoring import (
    PYFUNC,
    SKLEARN,
    lineage_rows,
    typed_inputs,
    with_arrow_scores,
    with_compiled_scores,
    with_mllib_scores,
)

Method = Literal["auto", "compiled", "transform", "arrow"]

CONFLICT_RETRIES = 3
ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"


class ModelInputMissingError(MissingColumnError):
    """The feature table lacks a column that the model's input signature needs."""

    def __init__(self, table: str, column: str, model: str, available: Sequence[str]) -> None:
        super().__init__(table, column, list(available))
        self.args = (
            f"table {table!r} has no column {column!r}, which {model} needs (its input signature); "
            f"add it to the features spec and rerun the features job, or score with a model "
            f"trained without it (the table has: {', '.join(sorted(available))})",
        )


def score(
    config: AppConfig,
    args: JobArgs = JobArgs(),
    spark: SparkSession | None = None,
    *,
    method: Method | None = None,
    partitions_per_commit: int | None = None,
    arrow_batch_rows: int | None = None,
) -> JobContext:
    """Score with the model at ``--alias`` (default: scoring.alias) or ``--model-version``.

    By default only feature partitions without predictions from that model version are
    scored; --date / --from --to rescore a range (an empty range fails: nothing to score).
    ``method``, ``partitions_per_commit`` and ``arrow_batch_rows`` override the scoring
    section of the config (``method`` forces a path; 'auto' takes the fastest exact one).
    """
    method = method or config.scoring.method
    partitions_per_commit = partitions_per_commit or config.scoring.partitions_per_commit
    arrow_batch_rows = arrow_batch_rows or config.scoring.arrow_batch_rows
    if partitions_per_commit < 1:
        raise JobFailed(f"score: partitions_per_commit must be >= 1 (got {partitions_per_commit})")

    def body(ctx: JobContext) -> None:
        client = registry.configure(config.mlflow)
        name = config.mlflow.model_name
        if args.model_version is not None:
            ref = registry.resolve(client, name, version=args.model_version)
        else:
            ref = registry.resolve(client, name, alias=args.alias or config.scoring.alias)
        challenger = ab_challenger(client, config, ref, args)
        spec = config.features
        date_col, entity = spec.date_column, spec.entity_id.name
        feat_path = ctx.table_path("features", spec.name)
        out_path = ctx.table_path("predictions", config.predictions_table)
        out_name = f"predictions.{config.predictions_table}"
        feat_version = lake.current_version(ctx.spark, feat_path)
        if feat_version is None:
            raise TableNotFoundError(f"features.{spec.name}", feat_path, "run the features job first")
        feat_ref = TableRef(f"features.{spec.name}", feat_path, feat_version)
        available = lake.list_partitions(ctx.spark, feat_path, date_col, feat_version)
        if args.date_range is not None:
            lo, hi = args.date_range
            targets = [d for d in available if args.selects(d)]
            if not targets:
                raise JobFailed(
                    f"{feat_ref.name} v{feat_version} has no partitions in {lo}..{hi}: nothing to score "
                    "(check the dates, or run the features job for them first)"
                )
        else:
            done = partitions_scored_by(ctx.spark, out_path, date_col, ref.version)
            if challenger is not None:  # with ab_share 1.0 every row is the challenger's
                done |= partitions_scored_by(ctx.spark, out_path, date_col, challenger.version)
            targets = [d for d in available if d not in done]
        if not targets:
            ctx.say(
                f"nothing new to score: every partition of {feat_ref.name} "
                f"has predictions from {ref.describe()}"
            )
            ctx.result["scored_partitions"] = 0
            return

        features, _ = lake.read_table(ctx.spark, feat_path, feat_ref.name, version=feat_version)
        scorer = prepare_scorer(ctx.spark, config, ref, features, feat_ref.name, method)
        ctx.say(f"scoring path: {scorer.method} ({scorer.detail})")
        ctx.result["method"] = scorer.method
        ctx.read(feat_ref)
        arms = [(ref, scorer)]
        if challenger is not None:
            arms.append(
                (challenger, prepare_scorer(ctx.spark, config, challenger, features, feat_ref.name, method))
            )
            share = config.monitoring.ab_share
            ctx.say(
                f"A/B test: {share:.0%} of {entity} values (stable hash, salt {config.monitoring.ab_salt!r}) "
                f"scored by {challenger.describe()} via {arms[1][1].method}, the rest by {ref.describe()}; "
                f"column {canary.ARM!r} records the arm"
            )
            ctx.result["ab_challenger_version"] = challenger.version

        def rows_for(dates: Sequence[dt.date]) -> DataFrame:
            part, _ = lake.read_table(
                ctx.spark, feat_path, feat_ref.name, version=feat_version, date_column=date_col, dates=dates
            )
            if challenger is None:
                keep = (entity, date_col)
                scored = part.transform(typed_inputs(keep, scorer.inputs)).transform(scorer.scores(keep))
                return lineage_rows(scored, entity, date_col, ref, ctx.run_id)
            return ab_rows(part, config, arms, ctx.run_id)

        lake.ensure_partitioned_table(ctx.spark, out_path, date_col, rows_for(targets[:1]).schema)
        default_mode = args.date_range is None
        written = 0
        commits = 0
        with session_conf(ctx.spark, {ARROW_BATCH_CONF: str(arrow_batch_rows)}):
            for chunk in chunked(targets, partitions_per_commit):
                result = write_with_retry(
                    ctx,
                    chunk,
                    rows_for,
                    out_path,
                    date_col,
                    out_name,
                    ref,
                    default_mode,
                    challenger is not None,
                )
                if result is not None:
                    ctx.wrote(result)
                    written += result.rows_written
                    commits += 1
        ctx.rows_read += written
        ctx.result["scored_partitions"] = len(targets)
        ctx.result["predictions"] = written
        ctx.say(
            f"scored {len(targets)} partition(s) {min(targets)}..{max(targets)} with {ref.describe()} "
            f"via {scorer.method}: {written:,} predictions in {commits} commit(s)"
        )
        if args.maintenance:
            ctx.say(optimize_and_vacuum(ctx.spark, out_path))

    return run_job("score", config, args.as_dict(), body, spark)


# --------------------------------------------------------------------------- A/B routing


def ab_challenger(
    client: Any, config: AppConfig, champion: registry.ModelRef, args: JobArgs
) -> registry.ModelRef | None:
    """@challenger, when monitoring.ab_share routes a share of entities to it: only for runs
    that score with the configured alias (not --alias/--model-version) and only while the
    challenger is another version than the champion."""
    if config.monitoring.ab_share <= 0 or args.model_version is not None or args.alias is not None:
        return None
    challenger = registry.try_resolve(client, config.mlflow.model_name, canary.CHALLENGER_ARM)
    if challenger is None or challenger.version == champion.version:
        return None
    return challenger


def ab_rows(
    part: DataFrame, config: AppConfig, arms: Sequence[tuple[registry.ModelRef, Scorer]], job_run_id: str
) -> DataFrame:
    """Each row scored by the model of its entity's arm (champion first, then challenger),
    with the arm recorded: one prediction per row, whichever arm it falls in."""
    entity, date_col = config.features.entity_id.name, config.features.date_column
    keep = (entity, date_col, canary.ARM)
    routed = part.withColumn(
        canary.ARM, canary.assign_arm(entity, config.monitoring.ab_share, config.monitoring.ab_salt)
    )
    out: DataFrame | None = None
    for (model, scorer), arm in zip(arms, (canary.CHAMPION_ARM, canary.CHALLENGER_ARM), strict=True):
        scored = (
            routed.where(F.col(canary.ARM) == arm)
            .transform(typed_inputs(keep, scorer.inputs))
            .transform(scorer.scores(keep))
        )
        rows = lineage_rows(scored, entity, date_col, model, job_run_id, extra=(canary.ARM,))
        out = rows if out is None else out.unionByName(rows)
    assert out is not None
    return out


# --------------------------------------------------------------------------- choosing the path


@dataclass(frozen=True)
class Scorer:
    """How this run scores: the path, why, the typed inputs and the scoring transform."""

    method: str
    detail: str
    inputs: tuple[tuple[str, T.DataType], ...]
    scores: Callable[[Sequence[str]], Callable[[DataFrame], DataFrame]]


def model_description(ref: registry.ModelRef) -> tuple[dict[str, Any], list[tuple[str, T.DataType]] | None]:
    """The model's MLflow flavours and its signature's (name, Spark type) inputs, if any."""
    from mlflow.models import get_model_info

    info = get_model_info(ref.uri)
    signature = info.signature
    inputs: list[tuple[str, T.DataType]] | None = None
    if signature is not None and signature.inputs is not None:
        specs = [s for s in signature.inputs.inputs if getattr(s, "name", None)]
        if specs:
            inputs = [(str(s.name), _spark_type(s)) for s in specs]
    return dict(info.flavors), inputs


def _spark_type(spec: Any) -> T.DataType:
    try:
        return spec.type.to_spark()  # type: ignore[no-any-return]
    except Exception:
        return T.StringType()


def model_inputs(
    config: AppConfig, signature: list[tuple[str, T.DataType]] | None, spark_flavor: bool
) -> list[tuple[str, T.DataType]]:
    """The columns the model reads, typed as in training: for Spark pipelines the config's
    categorical (string) and numeric (double) inputs; else the signature's types."""
    typed: dict[str, T.DataType] = {c: T.StringType() for c in config.model.categorical}
    typed.update({c: T.DoubleType() for c in config.model.numeric})
    if signature is None:
        return list(typed.items())
    if not spark_flavor:
        return [(n, T.DoubleType() if isinstance(t, T.NumericType) else t) for n, t in signature]
    return [(n, typed.get(n, t)) for n, t in signature]


def prepare_scorer(
    spark: SparkSession,
    config: AppConfig,
    ref: registry.ModelRef,
    features: DataFrame,
    table: str,
    method: Method = "auto",
) -> Scorer:
    """Load the model, check the feature table has its inputs, pick the scoring path."""
    flavors, signature = model_description(ref)
    spark_flavor = "spark" in flavors
    inputs = tuple(model_inputs(config, signature, spark_flavor))
    for column, _ in inputs:
        if column not in features.columns:
            raise ModelInputMissingError(table, column, ref.describe(), features.columns)
    schema = T.StructType([T.StructField(n, t) for n, t in inputs])
    classification = config.model.task == "classification"
    threshold = config.model.threshold
    reason = f"method={method}"
    if spark_flavor:
        if method == "arrow":
            raise JobFailed(
                f"score: {ref.describe()} is a Spark model; use method auto, compiled or transform"
            )
        model = registry.load_spark_model(ref)
        if method in ("auto", "compiled"):
            try:
                compiled = compile_spark_model(model, schema)
                return Scorer(
                    "compiled",
                    f"Spark SQL from {compiled.describe()}",
                    inputs,
                    lambda keep: with_compiled_scores(compiled, keep),
                )
            except NotCompilableError as exc:
                if method == "compiled":
                    raise JobFailed(f"score: {ref.describe()} does not compile to SQL: {exc}") from None
                reason = f"not compilable: {exc}"
        return Scorer(
            "transform",
            f"pyspark.ml transform, {reason}",
            inputs,
            lambda keep: with_mllib_scores(model, keep, classification),
        )
    if method == "transform":
        raise JobFailed(f"score: {ref.describe()} is not a Spark model; use method auto, compiled or arrow")
    flavor = SKLEARN if SKLEARN in flavors else PYFUNC
    if flavor not in flavors:
        raise JobFailed(f"score: {ref.describe()} has neither a spark, sklearn nor python_function flavour")
    if flavor == SKLEARN:
        estimator = load_sklearn_model(ref)
        classification = hasattr(estimator, "classes_")
        if method in ("auto", "compiled"):
            try:
                compiled = compile_sklearn_model(estimator, [n for n, _ in inputs], threshold)
                return Scorer(
                    "compiled",
                    f"Spark SQL from scikit-learn {compiled.describe()}",
                    inputs,
                    lambda keep: with_compiled_scores(compiled, keep),
                )
            except NotCompilableError as exc:
                if method == "compiled":
                    raise JobFailed(f"score: {ref.describe()} does not compile to SQL: {exc}") from None
                reason = f"not compilable: {exc}"
    elif method == "compiled":
        raise JobFailed(f"score: {ref.describe()} is a generic pyfunc model; it cannot be compiled to SQL")
    location = ship_model(spark, ref)
    columns = [n for n, _ in inputs]
    return Scorer(
        "arrow",
        f"{flavor} model loaded once per Python worker, Arrow batches, {reason}",
        inputs,
        lambda keep: with_arrow_scores(location, flavor, columns, keep, classification, threshold),
    )


def load_sklearn_model(ref: registry.ModelRef) -> Any:
    import mlflow.sklearn

    return mlflow.sklearn.load_model(ref.uri)


def ship_model(spark: SparkSession, ref: registry.ModelRef) -> str:
    """Download the model's folder once on the driver; on a cluster, ship it to every executor."""
    import mlflow.artifacts

    root = Path(tempfile.gettempdir()) / "mlops-spark-models"
    target = root / f"{ref.name}-v{ref.version}-{ref.run_id[:12]}"
    if not (target / "MLmodel").exists():
        target.mkdir(parents=True, exist_ok=True)
        local = mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(target))
        if Path(local) != target and (Path(local) / "MLmodel").exists():
            target = Path(local)
    if not (spark.sparkContext.master or "local").startswith("local"):
        spark.sparkContext.addFile(str(target), recursive=True)
    return str(target)


# --------------------------------------------------------------------------- what is scored


def _snapshot_files(spark: SparkSession, path: str) -> DataFrame | None:
    """The latest snapshot's file actions (path, partitionValues, stats) read from the
    Delta log only, or None when this Delta build does not expose them."""
    try:
        jvm: Any = spark._jvm  # type: ignore[attr-defined]
        log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, path)
        none = jvm.scala.Option.empty()
        snapshot = log.update(False, none, none)
        return DataFrame(snapshot.allFiles().toDF(), spark)
    except Exception:
        return None


def partitions_scored_by(spark: SparkSession, path: str, date_col: str, version: int) -> set[dt.date]:
    """Partitions holding predictions from model ``version``.

    Decided from the per-file min/max statistics Delta keeps for ``model_version`` (a file
    whose min or max is the version holds it; one whose range excludes it does not): no
    data file is opened. Only partitions with a file whose range merely straddles the
    version (mixed versions) are checked by a query pruned to those partitions.
    """
    if not lake.is_table(spark, path):
        return set()
    files = _snapshot_files(spark, path)
    if files is None:
        df, _ = lake.read_table(spark, path)
        rows = df.where(F.col("model_version") == version).select(date_col).distinct().collect()
        return {r[0] for r in rows}
    stats = F.from_json(
        "stats", "numRecords long, minValues struct<model_version: int>, maxValues struct<model_version: int>"
    )
    listed = files.select(
        F.col("partitionValues").getItem(date_col).alias("d"),
        stats.getField("numRecords").alias("n"),
        stats.getField("minValues").getField("model_version").alias("lo"),
        stats.getField("maxValues").getField("model_version").alias("hi"),
    ).collect()
    scored: set[dt.date] = set()
    unsure: set[dt.date] = set()
    for row in listed:
        if row["d"] is None:
            continue
        day = dt.date.fromisoformat(row["d"])
        lo, hi = row["lo"], row["hi"]
        if row["n"] == 0:
            continue
        if lo is None or hi is None:
            unsure.add(day)
        elif version in (lo, hi):
            scored.add(day)
        elif lo < version < hi:
            unsure.add(day)
    unsure -= scored
    if unsure:
        df, _ = lake.read_table(spark, path, date_column=date_col, dates=sorted(unsure))
        rows = df.where(F.col("model_version") == version).select(date_col).distinct().collect()
        scored |= {r[0] for r in rows}
    return scored


# --------------------------------------------------------------------------- writing


def chunked(dates: Sequence[dt.date], size: int) -> Iterator[list[dt.date]]:
    ordered = sorted(dates)
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Runtime SQL settings for the duration of a block, restored afterwards."""
    previous: dict[str, str | None] = {k: spark.conf.get(k, None) for k in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def write_with_retry(
    ctx: JobContext,
    chunk: Sequence[dt.date],
    rows_for: Callable[[Sequence[dt.date]], DataFrame],
    path: str,
    date_col: str,
    name: str,
    ref: registry.ModelRef,
    default_mode: bool,
    merge_schema: bool = False,
) -> WriteResult | None:
    """Replace ``chunk``'s partitions in one commit; on a conflict with a concurrent writer,
    re-check what is still unscored (incremental runs) and try again, or fail cleanly."""
    pending = list(chunk)
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            return lake.write_partitions(
                rows_for(pending),
                path,
                date_col,
                pending,
                name,
                f"score {ref.describe()} run {ctx.run_id}",
                merge_schema=merge_schema,
            )
        except Exception as exc:
            if not lake.is_write_conflict(exc):
                raise
            what = lake.describe_error(exc)
            if attempt == CONFLICT_RETRIES:
                raise JobFailed(
                    f"{name}: {len(pending)} partition(s) {min(pending)}..{max(pending)} kept conflicting "
                    f"with concurrent writers ({what}); nothing of them was committed by this run: rerun it"
                ) from None
            if default_mode:
                done = partitions_scored_by(ctx.spark, path, date_col, ref.version)
                pending = [d for d in pending if d not in done]
                if not pending:
                    ctx.say(
                        f"{name}: a concurrent run scored {min(chunk)}..{max(chunk)} first; skipping them"
                    )
                    return None
            ctx.say(f"{name}: concurrent commit ({what}); retrying {len(pending)} partition(s)")
    return None


def optimize_and_vacuum(spark: SparkSession, path: str, retain_hours: int = 168) -> str:
    from delta.tables import DeltaTable

    table = DeltaTable.forPath(spark, path)
    metrics = (
        table.optimize()
        .executeCompaction()
        .select("metrics.numFilesAdded", "metrics.numFilesRemoved")
        .first()
    )
    table.vacuum(retain_hours)
    added, removed = (metrics[0], metrics[1]) if metrics else (0, 0)
    return (
        f"maintenance: OPTIMIZE compacted {removed} file(s) into {added}; "
        f"VACUUM kept {retain_hours}h of history"
    )


def scored_dates(ctx: JobContext, path: str, date_col: str, version: int) -> set[dt.date]:
    """Partitions that already hold predictions from this model version (kept for callers)."""
    return partitions_scored_by(ctx.spark, path, date_col, version)
