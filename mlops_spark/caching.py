"""Cached DataFrames that are released however the block ends.

A job that caches a frame and raises before its ``unpersist`` leaves the blocks in the
executors' memory for the rest of the session; in a long pipeline or notebook session
those add up (issue: one session running years of partitions). Every job-path cache goes
through :func:`persisted`, so a failure cannot leak one.

Delta caches one snapshot state per table it has read (its ``DeltaLog`` cache, replaced
when the table moves on to a new version); :func:`session_caches` tells those apart from
the frames a job cached, so a test can check that jobs leave none of their own behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession

_DELTA_STATE = re.compile(r"^Delta Table State(?: with Stats)? #(\d+) - (.+)$")


@contextmanager
def persisted(df: DataFrame) -> Iterator[DataFrame]:
    """``df.persist()`` for the block, ``unpersist()`` when it ends (also on an error)."""
    cached = df.persist()
    try:
        yield cached
    finally:
        cached.unpersist()


@dataclass(frozen=True)
class SessionCaches:
    """The RDDs a session holds persisted: Delta's snapshot states, and everything else."""

    delta_snapshots: dict[str, set[int]] = field(default_factory=dict)
    """Delta log path -> the table versions whose snapshot state is cached."""
    other: tuple[str, ...] = ()
    """Every other persisted RDD (a cached DataFrame), as 'id: name (where it was created)'."""


def session_caches(spark: SparkSession) -> SessionCaches:
    """What is persisted in the session now. Classic Spark only (it asks the JVM)."""
    persistent = spark.sparkContext._jsc.sc().getPersistentRDDs()
    snapshots: dict[str, set[int]] = {}
    other: list[str] = []
    values = persistent.values().iterator()
    while values.hasNext():
        rdd = values.next()
        name = str(rdd.name())
        if match := _DELTA_STATE.match(name):
            snapshots.setdefault(match.group(2), set()).add(int(match.group(1)))
        else:
            other.append(f"{rdd.id()}: {name} ({rdd.creationSite().shortForm()})")
    return SessionCaches(snapshots, tuple(sorted(other)))
