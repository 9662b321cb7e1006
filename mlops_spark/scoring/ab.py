"""A/B routing: a stable share of entities is scored by @challenger in the real predictions
table, with the arm recorded on every row; `mlops_spark.canary.ab_comparison` then
compares the arms' realised quality once labels land."""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mlops_spark.registry import ModelRef
from mlops_spark.scoring.scorer import Scorer
from mlops_spark.scoring.transforms import lineage_rows

ARM = "arm"
CHAMPION_ARM = "champion"
CHALLENGER_ARM = "challenger"
_HASH_BUCKETS = 10_000


def assign_arm(entity_id: str, share: float, salt: str) -> Column:
    """'challenger' for a stable ``share`` of entities, else 'champion'.

    xxhash64 of salt + id is the same on every run, executor and Spark version, so an
    entity stays in its arm; a new salt reshuffles the arms.
    """
    bucket = F.pmod(F.xxhash64(F.lit(salt), F.col(entity_id).cast("string")), F.lit(_HASH_BUCKETS))
    return F.when(bucket < F.lit(round(share * _HASH_BUCKETS)), F.lit(CHALLENGER_ARM)).otherwise(
        F.lit(CHAMPION_ARM)
    )


def routed_rows(
    rows: DataFrame,
    keys: Sequence[str],
    entity_id: str,
    arms: tuple[Scorer, Scorer],
    share: float,
    salt: str,
    job_run_id: str,
) -> DataFrame:
    """Each row scored by the model of its entity's arm (champion first, then challenger),
    with ``arm`` recorded: one prediction per row, whichever arm it falls in."""
    routed = rows.withColumn(ARM, assign_arm(entity_id, share, salt))
    keep = (*keys, ARM)
    parts = []
    for scorer, arm in zip(arms, (CHAMPION_ARM, CHALLENGER_ARM), strict=True):
        scored = routed.where(F.col(ARM) == arm).transform(scorer.score(keep))
        parts.append(lineage_rows(scored, keep, scorer.task, scorer.model, job_run_id))
    return parts[0].unionByName(parts[1])


def describe_split(entity_id: str, share: float, salt: str, champion: ModelRef, challenger: ModelRef) -> str:
    return (
        f"A/B test: {share:.0%} of {entity_id} values (stable hash, salt {salt!r}) scored by "
        f"{challenger.describe()}, the rest by {champion.describe()}; column {ARM!r} records the arm"
    )
