"""pyspark.ml feature stages -> symbolic values over Spark SQL columns.

A fitted pipeline's transformers (StringIndexer, OneHotEncoder, Imputer, VectorAssembler,
StandardScaler) are replayed on symbols instead of rows: each input column becomes a
`Scalar`, each assembled vector a `Vector` of slots (a one-hot group stays one `OneHot`
segment, so a dot product over it costs one array lookup, not one term per category).
`mlops_spark.compile.spark` then compiles the pipeline's last stage, the predictor, over
the vector its features column holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DataType, DoubleType, NumericType, StringType

from mlops_spark.compile.common import NAN, NotCompilableError

# --------------------------------------------------------------------------- symbolic values


@dataclass(frozen=True)
class Scalar:
    expr: Column
    dtype: DataType
    sources: frozenset[str]


@dataclass(frozen=True)
class Dense:
    """One vector slot holding ``expr``."""

    expr: Column

    @property
    def size(self) -> int:
        return 1


@dataclass(frozen=True)
class OneHot:
    """``len(values)`` slots of which at most one is non-zero: slot ``position`` holds
    ``values[position]``; a position outside the slots (a dropped or invalid category)
    leaves them all zero."""

    position: Column
    values: tuple[float, ...]

    @property
    def size(self) -> int:
        return len(self.values)

    def slot(self, j: int) -> Column:
        return F.when(self.position == F.lit(j), F.lit(self.values[j])).otherwise(F.lit(0.0))


Segment = Dense | OneHot


@dataclass(frozen=True)
class Vector:
    segments: tuple[Segment, ...]
    sources: frozenset[str]
    _slots: list[Column] = field(default_factory=list, compare=False, repr=False)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.segments)

    def slot(self, index: int) -> Column:
        """The expression of one slot (built once, on first use)."""
        if not self._slots:
            for seg in self.segments:
                if isinstance(seg, Dense):
                    self._slots.append(seg.expr)
                else:
                    self._slots.extend(seg.slot(j) for j in range(seg.size))
        return self._slots[index]


Value = Scalar | Vector


def scalar_input(env: dict[str, Value], name: str, stage: str) -> Scalar:
    value = env.get(name)
    if value is None:
        raise NotCompilableError(f"{stage}: input column {name!r} is not available")
    if not isinstance(value, Scalar):
        raise NotCompilableError(f"{stage}: input column {name!r} is a vector, expected a scalar")
    return value


def vector_input(env: dict[str, Value], name: str, stage: str) -> Vector:
    value = env.get(name)
    if not isinstance(value, Vector):
        raise NotCompilableError(
            f"{stage}: input {name!r} is not a vector assembled by a compilable stage of this pipeline"
        )
    return value


def dot(vector: Vector, coefficients: Sequence[float]) -> Column:
    """sum_i slot_i * coefficient_i, added left to right in slot order as MLlib's dot
    product does (a one-hot group contributes its single hot term, precomputed)."""
    if vector.size != len(coefficients):
        raise NotCompilableError(
            f"the model expects {len(coefficients)} features but the pipeline assembles {vector.size}"
        )
    total: Column = F.lit(0.0)
    offset = 0
    for seg in vector.segments:
        if isinstance(seg, Dense):
            total = total + seg.expr * F.lit(float(coefficients[offset]))
        else:
            terms = [
                v * float(c)
                for v, c in zip(seg.values, coefficients[offset : offset + seg.size], strict=True)
            ]
            hot = F.get(F.array(*[F.lit(t) for t in terms]), seg.position)
            total = total + F.coalesce(hot, F.lit(0.0))
        offset += seg.size
    return total


# --------------------------------------------------------------------------- pyspark.ml stages


def _in_out(stage: Any) -> list[tuple[str, str]]:
    if stage.hasParam("inputCols") and stage.isSet(stage.inputCols):
        return list(zip(stage.getInputCols(), stage.getOutputCols(), strict=True))
    return [(stage.getInputCol(), stage.getOutputCol())]


def _string_indexer(stage: Any, env: dict[str, Value]) -> None:
    invalid = stage.getHandleInvalid()
    if invalid == "skip":
        raise NotCompilableError("StringIndexer(handleInvalid='skip') drops rows")
    for (src, dst), labels in zip(_in_out(stage), stage.labelsArray, strict=True):
        value = scalar_input(env, src, "StringIndexer")
        lookup = F.create_map(*[x for i, label in enumerate(labels) for x in (F.lit(label), F.lit(float(i)))])
        found = F.try_element_at(lookup, value.expr.cast(StringType()))
        if invalid == "keep":
            index = F.coalesce(found, F.lit(float(len(labels))))
        else:
            message = F.lit(f"StringIndexer: unseen label in column {src!r} (handleInvalid='error')")
            index = F.when(found.isNull(), F.raise_error(message)).otherwise(found)
        env[dst] = Scalar(index.cast(DoubleType()), DoubleType(), value.sources)


def _one_hot_encoder(stage: Any, env: dict[str, Value]) -> None:
    keep = stage.getHandleInvalid() == "keep"
    drop_last = stage.getDropLast()
    for (src, dst), categories in zip(_in_out(stage), stage.categorySizes, strict=True):
        value = scalar_input(env, src, "OneHotEncoder")
        label = value.expr.cast(DoubleType())
        size = categories + (1 if keep else 0) - (1 if drop_last else 0)
        valid = (label >= F.lit(0.0)) & (label < F.lit(float(categories)))
        if keep:
            invalid: Column = F.lit(categories)
        else:
            invalid = F.raise_error(F.lit(f"OneHotEncoder: invalid category index in {src!r}")).cast("int")
        position = F.when(valid, label.cast("int")).otherwise(invalid)
        env[dst] = Vector((OneHot(position, (1.0,) * size),), value.sources)


def _imputer(stage: Any, env: dict[str, Value]) -> None:
    row = stage.surrogateDF.first()
    missing = float(stage.getMissingValue())
    for src, dst in _in_out(stage):
        value = scalar_input(env, src, "Imputer")
        surrogate = F.lit(float(row[src]))
        ic = value.expr.cast(DoubleType())
        imputed = F.when(ic.isNull(), surrogate).when(ic == F.lit(missing), surrogate).otherwise(ic)
        env[dst] = Scalar(imputed.cast(value.dtype), value.dtype, value.sources)


def _vector_assembler(stage: Any, env: dict[str, Value]) -> None:
    invalid = stage.getHandleInvalid()
    if invalid == "skip":
        raise NotCompilableError("VectorAssembler(handleInvalid='skip') drops rows")
    segments: list[Segment] = []
    sources: set[str] = set()
    for name in stage.getInputCols():
        value = env.get(name)
        if isinstance(value, Vector):
            segments.extend(value.segments)
        elif isinstance(value, Scalar) and isinstance(value.dtype, NumericType | BooleanType):
            x = value.expr.cast(DoubleType())
            if invalid == "keep":
                x = F.coalesce(x, F.lit(NAN))
            else:
                message = F.lit(f"VectorAssembler: null in column {name!r} (handleInvalid='error')")
                x = F.when(x.isNull(), F.raise_error(message).cast(DoubleType())).otherwise(x)
            segments.append(Dense(x))
        else:
            raise NotCompilableError(
                f"VectorAssembler: input {name!r} is neither numeric nor a compiled vector"
            )
        sources |= value.sources
    env[stage.getOutputCol()] = Vector(tuple(segments), frozenset(sources))


def _standard_scaler(stage: Any, env: dict[str, Value]) -> None:
    vector = vector_input(env, stage.getInputCol(), "StandardScaler")
    with_mean, with_std = stage.getWithMean(), stage.getWithStd()
    mean = [float(v) for v in stage.mean.toArray()]
    scale = [0.0 if v == 0.0 else 1.0 / float(v) for v in stage.std.toArray()]
    segments: list[Segment] = []
    offset = 0
    for seg in vector.segments:
        if isinstance(seg, OneHot) and not with_mean:
            hot = tuple(v * scale[offset + j] if with_std else v for j, v in enumerate(seg.values))
            segments.append(OneHot(seg.position, hot))
        else:
            for j in range(seg.size):
                x = seg.expr if isinstance(seg, Dense) else seg.slot(j)
                if with_mean:
                    x = x - F.lit(mean[offset + j])
                if with_std:
                    x = x * F.lit(scale[offset + j])
                segments.append(Dense(x))
        offset += seg.size
    env[stage.getOutputCol()] = Vector(tuple(segments), vector.sources)


FEATURE_STAGES: dict[str, Callable[[Any, dict[str, Value]], None]] = {
    "StringIndexerModel": _string_indexer,
    "OneHotEncoderModel": _one_hot_encoder,
    "ImputerModel": _imputer,
    "VectorAssembler": _vector_assembler,
    "StandardScalerModel": _standard_scaler,
}
