"""The arguments every job understands (parsed by the CLI, or built in a notebook)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from mlops_spark.errors import UsageError


@dataclass(frozen=True)
class JobArgs:
    date: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    reproduce: str | None = None
    to_version: int | None = None
    approve: int | None = None
    reject: int | None = None
    dry_run: bool = False
    model_version: int | None = None
    alias: str | None = None
    approver: str | None = None
    maintenance: bool = False

    def __post_init__(self) -> None:
        if self.date and (self.start or self.end):
            raise UsageError("use --date or --from/--to, not both")
        if (self.start is None) != (self.end is None):
            raise UsageError("--from and --to go together")
        if self.start and self.end and self.end < self.start:
            raise UsageError(f"--to {self.end} is before --from {self.start}")

    @property
    def date_range(self) -> tuple[dt.date, dt.date] | None:
        if self.date:
            return (self.date, self.date)
        if self.start and self.end:
            return (self.start, self.end)
        return None

    def selects(self, day: dt.date) -> bool:
        rng = self.date_range
        return rng is None or rng[0] <= day <= rng[1]

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}
