"""Fitted models -> plain Spark SQL expressions: no vectors, no UDFs, no Python workers.

`spark` compiles pyspark.ml pipelines, `sklearn` scikit-learn estimators; each refuses
(`NotCompilableError`, with the reason) anything it cannot reproduce exactly, and the
scorer then falls back to the model's own transform or Arrow batches.
"""

from __future__ import annotations

from mlops_spark.compile.common import DEFAULT_MAX_TREE_NODES, CompiledModel, NotCompilableError
from mlops_spark.compile.sklearn import compile_sklearn_model, sklearn_tree_nodes
from mlops_spark.compile.spark import compile_spark_model, tree_nodes

__all__ = [
    "DEFAULT_MAX_TREE_NODES",
    "CompiledModel",
    "NotCompilableError",
    "compile_sklearn_model",
    "compile_spark_model",
    "sklearn_tree_nodes",
    "tree_nodes",
]
