"""Many models: one scikit-learn model per segment, fitted in parallel on Spark, served as one.

* `spec`: what a segmented model is, and the config views the generic jobs use.
* `estimators`: importing, shipping, checking and building the per-segment estimator.
* `fitting`: fitting every segment (and the global fallback) in one Spark stage.
* `routing`: rows to their segment's model (pandas), the per-worker model cache.
* `router`: the pyspark.ml stage that scores through ``mapInArrow``.
* `serving`: ONE MLflow model with a pyfunc and a spark flavour.
* `evaluation`: per-segment metrics; `training`: one whole training run.
"""

from __future__ import annotations

from mlops_spark.segmented.estimators import build_estimator, check_estimator, import_estimator, ship_by_value
from mlops_spark.segmented.evaluation import segment_metrics
from mlops_spark.segmented.fitting import SegmentFits, SegmentTuning, fit_segment, fit_segments
from mlops_spark.segmented.router import SegmentRouter
from mlops_spark.segmented.routing import WORKER_LOADS, SegmentModels, route_predict
from mlops_spark.segmented.serving import SegmentedModel, log_segmented_model
from mlops_spark.segmented.spec import (
    GLOBAL,
    MISSING,
    MODEL_SEGMENT,
    FitSpec,
    RouteSpec,
    fit_spec,
    route_spec,
    segmented_app_config,
)

__all__ = [
    "GLOBAL",
    "MISSING",
    "MODEL_SEGMENT",
    "WORKER_LOADS",
    "FitSpec",
    "RouteSpec",
    "SegmentFits",
    "SegmentModels",
    "SegmentRouter",
    "SegmentTuning",
    "SegmentedModel",
    "build_estimator",
    "check_estimator",
    "fit_segment",
    "fit_segments",
    "fit_spec",
    "import_estimator",
    "log_segmented_model",
    "route_predict",
    "route_spec",
    "segment_metrics",
    "segmented_app_config",
    "ship_by_value",
]
