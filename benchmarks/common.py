"""Helpers shared by the benchmark scripts (timing, single-process pandas paths)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of ``fn()``."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def local_files(files: Sequence[str]) -> list[str]:
    """Spark's ``inputFiles()`` URIs as local paths."""
    return [f.removeprefix("file://").removeprefix("file:") for f in files]


def read_matrix(files: Sequence[str], names: Sequence[str], label: str | None = None) -> tuple[Any, Any]:
    """The ``names`` columns of Parquet files as one float64 matrix (and the label vector)."""
    import pyarrow.parquet as pq

    xs, ys = [], []
    for file in files:
        table = pq.read_table(file, columns=[*names, *([label] if label else [])])
        xs.append(np.column_stack([table.column(c).to_numpy() for c in names]).astype("float64"))
        if label:
            ys.append(table.column(label).to_numpy())
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    return x, (np.concatenate(ys) if label else None)


def score_files_single_process(
    files: Sequence[str],
    model: Any,
    names: Sequence[str],
    key: str,
    out_dir: Path,
    lineage: dict[str, Any],
) -> int:
    """pyarrow reads each Parquet file, one ``predict_proba``, pyarrow writes the predictions
    with constant lineage columns (``lineage``: name -> value) and a ``scored_at``: the
    single-process pandas + scikit-learn baseline. Returns the rows scored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir.mkdir(parents=True, exist_ok=True)
    scored_at = pd.Timestamp.now(tz="UTC").to_datetime64()
    rows = 0
    for i, file in enumerate(files):
        table = pq.read_table(file, columns=[key, *names])
        x = np.column_stack([table.column(c).to_numpy() for c in names])
        proba = model.predict_proba(x)[:, 1]
        n = len(proba)
        columns: dict[str, Any] = {
            key: table.column(key),
            "prediction": (proba > 0.5).astype("float64"),
            "probability": proba,
        }
        for name, value in lineage.items():
            columns[name] = (
                pa.array(np.full(n, value)) if not isinstance(value, str) else pa.array([value] * n)
            )
        columns["scored_at"] = pa.array(np.full(n, scored_at))
        pq.write_table(pa.table(columns), out_dir / f"part-{i:05d}.parquet")
        rows += n
    return rows
