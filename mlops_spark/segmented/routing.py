"""Routing rows to their segment's model (pandas), and the per-worker model cache."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_spark.errors import JobFailed
from mlops_spark.outputs import PREDICTION, PROBABILITY
from mlops_spark.segmented.estimators import model_frame, positive_scores, segment_keys
from mlops_spark.segmented.spec import GLOBAL, MODEL_SEGMENT, RouteSpec

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class SegmentModels:
    """Fitted models by segment, and the fallback (None when ``fallback: error``)."""

    models: Mapping[str, Any]
    fallback: Any | None = None

    @classmethod
    def from_blobs(cls, blobs: Mapping[str, bytes]) -> SegmentModels:
        import pickle

        loaded = {k: pickle.loads(v) for k, v in blobs.items()}
        fallback = loaded.pop(GLOBAL, None)
        return cls(models=loaded, fallback=fallback)


def route_predict(models: SegmentModels, pdf: pd.DataFrame, route: RouteSpec) -> pd.DataFrame:
    """Score each row with its segment's model (else the fallback): one output row per
    input row, same order. Columns: prediction, probability (classification) and
    MODEL_SEGMENT. Rows no model can serve raise JobFailed naming their segments."""
    n = len(pdf)
    keys = segment_keys(pdf[route.segment_column]).to_numpy()
    features = model_frame(pdf, route)
    prediction = np.full(n, np.nan)
    probability = np.full(n, np.nan)
    served = np.empty(n, dtype=object)
    known = np.array([k is not None and k in models.models for k in keys], dtype=bool)
    groups: list[tuple[str, np.ndarray, Any]] = []
    for key in pd.unique(keys[known]):
        groups.append((str(key), np.flatnonzero(known & (keys == key)), models.models[key]))
    rest = np.flatnonzero(~known)
    if len(rest):
        if models.fallback is None:
            missing = sorted({"<null>" if k is None else str(k) for k in keys[rest]})
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise JobFailed(
                f"segmented model: {len(rest)} row(s) of segment(s) {shown} have no model of their own "
                f"and the model has no global fallback (fallback: error); retrain with fallback: global "
                f"or filter those rows"
            )
        groups.append((GLOBAL, rest, models.fallback))
    for key, rows, model in groups:
        part = features.iloc[rows]
        if route.task == "binary":
            p = positive_scores(model, part)
            probability[rows] = p
            prediction[rows] = (p > route.threshold).astype("float64")
        else:
            prediction[rows] = np.asarray(model.predict(part), dtype="float64")
        served[rows] = key
    out = {PREDICTION: prediction}
    if route.task == "binary":
        out[PROBABILITY] = probability
    out[MODEL_SEGMENT] = served
    return pd.DataFrame(out, index=pdf.index)


_WORKER_MODELS: dict[str, SegmentModels] = {}
_WORKER_LOCK = threading.Lock()
_WORKER_CACHE_SIZE = 4
WORKER_LOADS: dict[str, int] = {}
"""How many times this process unpickled each model set (tests and benchmarks read it)."""


def models_key(blobs: Mapping[str, bytes]) -> str:
    """A content hash of a model set: the cache key on workers."""
    digest = hashlib.sha256()
    for key in sorted(blobs):
        digest.update(key.encode())
        digest.update(hashlib.sha256(blobs[key]).digest())
    return digest.hexdigest()


def cached_models(key: str, blobs: Mapping[str, bytes]) -> SegmentModels:
    """The unpickled models of ``key``, loaded once per Python worker process."""
    with _WORKER_LOCK:
        models = _WORKER_MODELS.get(key)
        if models is None:
            models = SegmentModels.from_blobs(blobs)
            WORKER_LOADS[key] = WORKER_LOADS.get(key, 0) + 1
            while len(_WORKER_MODELS) >= _WORKER_CACHE_SIZE:
                _WORKER_MODELS.pop(next(iter(_WORKER_MODELS)))
            _WORKER_MODELS[key] = models
    return models


def arrow_scorer(
    blobs: Mapping[str, bytes], route: RouteSpec, segment_key_column: str
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The mapInArrow function: every input column passes through untouched (no pandas
    round trip), the inputs are converted once per batch, and the routed outputs are
    appended."""
    key = models_key(blobs)
    frozen = dict(blobs)
    inputs = list(route.inputs)
    # routing reads the segment as Spark cast it to string (segment_key_column)
    keyed_route = RouteSpec(
        segment_column=segment_key_column,
        categorical=route.categorical,
        numeric=route.numeric,
        task=route.task,
        threshold=route.threshold,
        fallback=route.fallback,
    )

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        models = cached_models(key, frozen)
        for batch in batches:
            pdf = batch.select([segment_key_column, *inputs]).to_pandas()
            out = route_predict(models, pdf, keyed_route)
            batch = batch.append_column(PREDICTION, pa.array(out[PREDICTION].to_numpy(), pa.float64()))
            if route.task == "binary":
                batch = batch.append_column(
                    "__probability", pa.array(out[PROBABILITY].to_numpy(), pa.float64())
                )
            yield batch.append_column(MODEL_SEGMENT, pa.array(out[MODEL_SEGMENT].tolist(), pa.string()))

    return score
