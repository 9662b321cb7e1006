"""Canary (shadow) scoring shared by the monitor and retrain jobs: @challenger scores
partitions into its own table (``predictions.<model>_shadow``), champion predictions are
never touched, and the rows are read back for comparison."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame

from mlops_spark import lake
from mlops_spark.config import ModelConfig
from mlops_spark.registry import ModelRef
from mlops_spark.runtime import JobContext
from mlops_spark.scoring import lineage_rows, prepare_scorer


def shadow_score(
    ctx: JobContext, model: ModelConfig, features: DataFrame, challenger: ModelRef, dates: Sequence[dt.date]
) -> DataFrame:
    """Score ``dates`` of ``features`` with the challenger through the score job's own path,
    replace exactly those partitions of the shadow table (one commit, so reruns do not
    duplicate), and return the shadow rows of those dates."""
    spec, shadow = ctx.config.features, ctx.catalog.shadow()
    keys = (spec.entity_id.name, spec.date_column)
    selected = features.where(lake.partition_filter(spec.date_column, dates=dates))
    nodes = ctx.config.scoring.max_compiled_tree_nodes
    scorer = prepare_scorer(
        ctx.spark, model, challenger, selected, ctx.catalog.features().name, "auto", nodes
    )
    rows = lineage_rows(selected.transform(scorer.score(keys)), keys, scorer.task, challenger, ctx.run_id)
    ctx.wrote(
        lake.write_partitions(rows, shadow, dates, f"shadow score {challenger.describe()} run {ctx.run_id}")
    )
    scored, ref = lake.read_table(ctx.spark, shadow, dates=dates)
    ctx.read(ref)
    ctx.say(f"canary: {challenger.describe()} shadow-scored {len(dates)} partition(s) into {shadow.name}")
    return scored
