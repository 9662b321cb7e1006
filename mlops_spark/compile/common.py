"""What every model compiler shares: the compiled result, the refusal, exact sums."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

DEFAULT_MAX_TREE_NODES = 20_000
"""Tree ensembles larger than this stay on transform: huge CASE expressions make Spark's
optimiser and Java code generation slower than the model's own vectorised loop."""

NAN = float("nan")


class NotCompilableError(Exception):
    """The model has a stage or a setting without an exact SQL equivalent (the reason says which)."""


@dataclass(frozen=True)
class CompiledModel:
    """A model as SQL: ``prediction`` (double); for binary classifiers ``probability`` of the
    positive class (double), for multiclass ones ``probabilities`` (an array, index = class);
    ``inputs`` are the columns the expressions read."""

    prediction: Column
    probability: Column | None
    inputs: tuple[str, ...]
    stages: tuple[str, ...]
    probabilities: Column | None = None
    layers: tuple[tuple[tuple[str, Column], ...], ...] = ()
    """Intermediate columns computed first, layer by layer (the vector slots a forest's trees
    test, each tree's leaf, the per-class sums): the outputs reference them by name, so each
    is evaluated once per row instead of once per reference (Spark does not collapse a
    projection whose expensive expressions the next one uses more than once)."""

    def describe(self) -> str:
        return " -> ".join(self.stages)

    def with_layers(self, df: DataFrame) -> DataFrame:
        """``df`` plus the intermediate columns the outputs read."""
        for layer in self.layers:
            df = df.select("*", *[expr.alias(name) for name, expr in layer])
        return df


def first_argmax(values: Sequence[Column]) -> Column:
    """The index of the first largest value (as a double), as MLlib's ``Vector.argmax``."""
    return (F.array_position(F.array(*values), F.array_max(F.array(*values))) - 1).cast("double")


def sequential_sum(terms: Sequence[Column]) -> Column:
    total: Column = F.lit(0.0)
    for term in terms:
        total = total + term
    return total
