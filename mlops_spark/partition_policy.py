"""One policy for which partitions a job processes: validate, features, score and monitor.

* **Explicit range** (``--date`` / ``--from --to``): every partition of the input inside the
  range, processed again whether or not it was done before (a backfill or a fix). A range
  that selects no partition of the input fails with `NothingInRangeError` (exit 1): the
  scheduler asked for work that cannot be done, usually because an upstream job did not run.
* **Incremental** (no range): the input's partitions that are not done yet. None left is
  not an error: the job says "nothing new" and exits 0.

One refinement, for validate: a single requested day that the input does not have can be
asked for as an *empty partition* (``empty_day=True``); its table rules then decide (an
empty day fails unless the table allows empty partitions, and is written empty if it does).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from mlops_spark.errors import NothingInRangeError


@dataclass(frozen=True)
class Selection:
    """The partitions a job run will process, and why."""

    targets: tuple[dt.date, ...]
    explicit: bool
    """True for an explicit range (reprocess), False for incremental (what is not done yet)."""
    source: str
    """The input table the partitions were chosen from."""

    def __bool__(self) -> bool:
        return bool(self.targets)

    @property
    def first(self) -> dt.date:
        return self.targets[0]

    @property
    def last(self) -> dt.date:
        return self.targets[-1]

    def describe(self) -> str:
        return describe_dates(self.targets)


def describe_dates(dates: Sequence[dt.date]) -> str:
    """'3 partition(s) 2013-01-01..2013-01-03' (or 'no partition')."""
    if not dates:
        return "no partition"
    ordered = sorted(dates)
    return f"{len(ordered)} partition(s) {ordered[0]}..{ordered[-1]}"


def select_partitions(
    source: str,
    available: Iterable[dt.date],
    requested: tuple[dt.date, dt.date] | None,
    done: Callable[[], Iterable[dt.date]],
    hint: str,
    empty_day: bool = False,
) -> Selection:
    """Apply the policy. ``done`` is called only for incremental runs (it may read the
    job's outputs); ``hint`` says which job produces ``source``, for the error message."""
    have = sorted(set(available))
    if requested is not None:
        lo, hi = requested
        targets = [d for d in have if lo <= d <= hi]
        if not targets and empty_day and lo == hi:
            return Selection((lo,), True, source)
        if not targets:
            raise NothingInRangeError(source, lo, hi, hint)
        return Selection(tuple(targets), True, source)
    finished = set(done())
    return Selection(tuple(d for d in have if d not in finished), False, source)


def chunked(dates: Sequence[dt.date], size: int) -> Iterator[list[dt.date]]:
    """Consecutive batches of at most ``size`` dates, oldest first (one Delta commit each)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1 (got {size})")
    ordered = sorted(dates)
    for i in range(0, len(ordered), size):
        yield ordered[i : i + size]


__all__ = ["Selection", "chunked", "describe_dates", "select_partitions"]
