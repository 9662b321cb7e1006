"""Batch scoring: pick the fastest exact path for a model, apply it, write predictions once.

* `scorer`: the path (compiled SQL, pyspark.ml transform, Arrow batches) and the model's inputs.
* `transforms`: typed inputs, compiled scores, the predictions table's rows with lineage.
* `arrow`: scikit-learn / pyfunc models over Arrow batches.
* `ab`: A/B routing of a stable share of entities to @challenger.
* `commits`: incremental partitions and exactly-once commits.
"""

from __future__ import annotations

from mlops_spark.scoring.scorer import Method, ModelInputMissingError, Scorer, model_inputs, prepare_scorer
from mlops_spark.scoring.transforms import lineage_rows, typed_inputs, with_compiled_scores

__all__ = [
    "Method",
    "ModelInputMissingError",
    "Scorer",
    "lineage_rows",
    "model_inputs",
    "prepare_scorer",
    "typed_inputs",
    "with_compiled_scores",
]
