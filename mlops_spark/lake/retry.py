"""Writers that retry Delta's optimistic-concurrency conflicts."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

from pyspark.sql import DataFrame

from mlops_spark.catalog import Table
from mlops_spark.errors import JobFailed, describe_error
from mlops_spark.lake.conflicts import is_write_conflict
from mlops_spark.lake.tables import WriteResult, write_partitions

log = logging.getLogger(__name__)


def write_partitions_retrying(
    rows_for: Callable[[Sequence[dt.date]], DataFrame],
    table: Table,
    dates: Sequence[dt.date],
    user_metadata: str,
    still_pending: Callable[[list[dt.date]], list[dt.date]] | None = None,
    retries: int = 3,
    merge_schema: bool = False,
    say: Callable[[str], None] = log.info,
) -> WriteResult | None:
    """Replace ``dates`` with ``rows_for(dates)`` in one commit, retrying Delta conflicts.

    On a conflict with a concurrent writer, ``still_pending`` (when given) narrows the dates
    to those still to do, and the write is tried again; None is returned when a concurrent
    writer did them all. After ``retries`` conflicts the job fails cleanly: nothing of these
    dates was committed by this run.
    """
    pending = sorted(dates)
    for attempt in range(retries + 1):
        try:
            return write_partitions(
                rows_for(pending), table, pending, user_metadata, merge_schema=merge_schema
            )
        except Exception as exc:  # only conflicts are retried; everything else is re-raised
            if not is_write_conflict(exc):
                raise
            what = describe_error(exc)
            if attempt == retries:
                raise JobFailed(
                    f"{table.name}: {len(pending)} partition(s) {pending[0]}..{pending[-1]} kept conflicting "
                    f"with concurrent writers ({what}); nothing of them was committed by this run: rerun it"
                ) from None
            if still_pending is not None:
                left = still_pending(pending)
                if not left:
                    say(f"{table.name}: a concurrent run wrote {pending[0]}..{pending[-1]} first; skipped")
                    return None
                pending = left
            say(f"{table.name}: concurrent commit ({what}); retrying {len(pending)} partition(s)")
    return None
