"""Training: the pyspark.ml pipeline a config describes (`pipeline`), fitting, evaluating,
logging and registering it (`fit`), and reproducing a recorded run (`reproduce`)."""

from __future__ import annotations

from mlops_spark.training.pipeline import (
    FEATURES_VECTOR,
    WEIGHT,
    TimeSplit,
    build_pipeline,
    check_estimator_params,
    evaluate_model,
    feature_importances,
    featurizer_stages,
    fit_on_cores,
    in_range,
    make_estimator,
    model_input_columns,
    prepare_training_frame,
    time_split,
    with_balanced_weights,
    with_stable_layout,
)

__all__ = [
    "FEATURES_VECTOR",
    "WEIGHT",
    "TimeSplit",
    "build_pipeline",
    "check_estimator_params",
    "evaluate_model",
    "feature_importances",
    "featurizer_stages",
    "fit_on_cores",
    "in_range",
    "make_estimator",
    "model_input_columns",
    "prepare_training_frame",
    "time_split",
    "with_balanced_weights",
    "with_stable_layout",
]
