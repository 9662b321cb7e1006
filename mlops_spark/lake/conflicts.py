"""Delta's optimistic-concurrency conflicts: another writer committed first."""

from __future__ import annotations

CONFLICT_MARKERS = (
    "DELTA_CONCURRENT",
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "DELTA_PROTOCOL_CHANGED",
    "DELTA_METADATA_CHANGED",
)


def is_write_conflict(exc: BaseException) -> bool:
    """True for Delta's optimistic-concurrency conflicts (another writer committed first)."""
    from delta.exceptions import DeltaConcurrentModificationException

    if isinstance(exc, DeltaConcurrentModificationException):
        return True
    text = str(exc)
    return any(marker in text for marker in CONFLICT_MARKERS)
