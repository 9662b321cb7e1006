"""The segmented model as a pyspark.ml stage: `SegmentRouter` scores through ``mapInArrow``
and saves inside a `PipelineModel` (its params as metadata, the models as Parquet)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import (
    DefaultParamsReader,
    DefaultParamsWriter,
    MLReadable,
    MLReader,
    MLWritable,
    MLWriter,
)
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.errors import JobFailed, MissingColumnError
from mlops_spark.outputs import PREDICTION, PROBABILITY
from mlops_spark.segmented.routing import arrow_scorer
from mlops_spark.segmented.spec import GLOBAL, MODEL_SEGMENT, SEGMENT_KEY, RouteSpec


class _RouterParams(Params):
    segmentCol: Param[str] = Param(
        Params._dummy(), "segmentCol", "the segment column", typeConverter=TypeConverters.toString
    )
    categoricalCols: Param[Any] = Param(
        Params._dummy(), "categoricalCols", "categorical inputs", typeConverter=TypeConverters.toListString
    )
    numericCols: Param[Any] = Param(
        Params._dummy(), "numericCols", "numeric inputs", typeConverter=TypeConverters.toListString
    )
    task: Param[str] = Param(
        Params._dummy(), "task", "classification or regression", typeConverter=TypeConverters.toString
    )
    threshold: Param[float] = Param(
        Params._dummy(), "threshold", "P(1) above which prediction is 1", typeConverter=TypeConverters.toFloat
    )
    fallback: Param[str] = Param(
        Params._dummy(), "fallback", "global or error", typeConverter=TypeConverters.toString
    )


class SegmentRouter(Transformer, _RouterParams, MLReadable["SegmentRouter"], MLWritable):
    """A pyspark.ml Transformer that scores each row with its segment's scikit-learn model.

    Adds ``prediction`` (double), ``probability`` (vector [P(0), P(1)], classification)
    and ``model_segment`` (which model served the row), as a fitted pyspark.ml
    classifier does, so `training.evaluate_model` and `outputs.with_mllib_outputs` take
    its output unchanged. Saved inside a `PipelineModel` (the spark flavour of the logged
    model): its params as metadata, the models as a small Parquet table next to them.
    """

    def __init__(self, route: RouteSpec | None = None, blobs: Mapping[str, bytes] | None = None) -> None:
        super().__init__()
        self._blobs: dict[str, bytes] = dict(blobs or {})
        if route is not None:
            self._set(
                segmentCol=route.segment_column,
                categoricalCols=list(route.categorical),
                numericCols=list(route.numeric),
                task=route.task,
                threshold=float(route.threshold),
                fallback=route.fallback,
            )

    @property
    def route(self) -> RouteSpec:
        task = self.getOrDefault(self.task)
        fallback = self.getOrDefault(self.fallback)
        return RouteSpec(
            segment_column=self.getOrDefault(self.segmentCol),
            categorical=tuple(self.getOrDefault(self.categoricalCols)),
            numeric=tuple(self.getOrDefault(self.numericCols)),
            task="regression" if task == "regression" else "binary",
            threshold=float(self.getOrDefault(self.threshold)),
            fallback="error" if fallback == "error" else "global",
        )

    @property
    def blobs(self) -> dict[str, bytes]:
        """Pickled models by segment (GLOBAL: the fallback)."""
        return dict(self._blobs)

    @property
    def segments(self) -> list[str]:
        return sorted(k for k in self._blobs if k != GLOBAL)

    def global_only(self) -> SegmentRouter:
        """The same stage with only the fallback: every row scored by the global model."""
        if GLOBAL not in self._blobs:
            raise JobFailed("segmented model: there is no global model to score with")
        return SegmentRouter(self.route, {GLOBAL: self._blobs[GLOBAL]})

    def copy(self, extra: Any = None) -> SegmentRouter:
        that = super().copy(extra)
        that._blobs = dict(self._blobs)
        return that

    def _transform(self, dataset: DataFrame) -> DataFrame:
        route = self.route
        for col in [route.segment_column, *route.inputs]:
            if col not in dataset.columns:
                raise MissingColumnError("input of the segmented model", col, dataset.columns)
        taken = {PREDICTION, PROBABILITY, MODEL_SEGMENT, SEGMENT_KEY} & set(dataset.columns)
        if taken:
            raise JobFailed(
                f"segmented model: the input already has column(s) {', '.join(sorted(taken))}; "
                "drop or rename them before scoring"
            )
        keyed = dataset.withColumn(SEGMENT_KEY, F.col(route.segment_column).cast("string"))
        fields = [*keyed.schema.fields, T.StructField(PREDICTION, T.DoubleType())]
        if route.task == "binary":
            fields.append(T.StructField("__probability", T.DoubleType()))
        fields.append(T.StructField(MODEL_SEGMENT, T.StringType()))
        scored = keyed.mapInArrow(arrow_scorer(self._blobs, route, SEGMENT_KEY), T.StructType(fields))
        if route.task == "binary":
            p = F.col("__probability")
            scored = scored.withColumn(PROBABILITY, array_to_vector(F.array(1.0 - p, p))).drop(
                "__probability"
            )
        return scored.drop(SEGMENT_KEY)

    def write(self) -> MLWriter:
        return _RouterWriter(self)

    @classmethod
    def read(cls) -> MLReader[SegmentRouter]:
        return _RouterReader()


_MODELS_DIR = "segment_models"
_BLOB_SCHEMA = T.StructType(
    [T.StructField("segment", T.StringType(), False), T.StructField("model", T.BinaryType(), False)]
)


class _RouterWriter(MLWriter):
    def __init__(self, instance: SegmentRouter) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession)
        rows = sorted(self.instance.blobs.items())
        # one model per task: no single task carries every model (they can be large)
        slices = self.sparkSession.sparkContext.parallelize(rows, max(1, len(rows)))
        self.sparkSession.createDataFrame(slices, _BLOB_SCHEMA).write.parquet(os.path.join(path, _MODELS_DIR))


class _RouterReader(MLReader[SegmentRouter]):
    def load(self, path: str) -> SegmentRouter:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        router = SegmentRouter()
        router._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(router, metadata)
        rows = self.sparkSession.read.parquet(os.path.join(path, _MODELS_DIR)).collect()
        router._blobs = {str(r["segment"]): bytes(r["model"]) for r in rows}
        return router
