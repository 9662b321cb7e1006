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
import time
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


def live_broadcasts(spark: SparkSession, collect_garbage: bool = True) -> dict[int, int]:
    """Broadcast id -> bytes, of the broadcasts the driver's block manager holds now.

    Spark removes a broadcast (a broadcast join's table, a UDF's pickled function) once the
    driver's JVM has garbage-collected its last reference (the ``ContextCleaner``), so with
    ``collect_garbage`` this asks the JVM to collect first and waits up to a second for the
    cleaner: what is left is what something still holds. Classic Spark only."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None

    def held() -> dict[int, int]:
        entries = jvm.org.apache.spark.SparkEnv.get().blockManager().blockInfoManager().entries()
        sizes: dict[int, int] = {}
        while entries.hasNext():
            entry = entries.next()
            block = entry._1()
            if block.isBroadcast():
                broadcast = int(block.broadcastId())
                sizes[broadcast] = sizes.get(broadcast, 0) + int(entry._2().size())
        return sizes

    if not collect_garbage:
        return held()
    jvm.System.gc()
    before = held()
    for _ in range(10):  # the cleaner runs on its own thread after the collection
        time.sleep(0.2)
        now = held()
        if now == before:
            return now
        before = now
    return before
