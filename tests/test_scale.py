"""mlops_spark.scale: N-times larger tables with new ids, shifted dates and seeded noise."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark.scale import ScaleSpec, scale_up

SCHEMA = "flight_id string, plane int, date date, distance double, seats int, label double"
D1, D2 = dt.date(2013, 1, 1), dt.date(2013, 1, 2)
ROWS = [
    ("a", 10, D1, 100.0, 50, 1.0),
    ("b", 11, D1, 200.0, None, 0.0),
    ("c", 12, D2, None, 70, 0.0),
    ("d", 13, D2, 400.0, 80, 1.0),
]
SPEC = ScaleSpec(
    numeric=("distance", "seats"),
    entity=("flight_id", "plane"),
    dates=("date",),
    shift_days=7,
    noise=0.0,
    id_stride=1000,
)


@pytest.fixture()
def base(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ROWS, SCHEMA)


def test_factor_three_gives_new_ids_and_shifted_dates(spark: SparkSession, base: DataFrame) -> None:
    expected = [
        (fid + (f"~{k}" if k else ""), plane + 1000 * k, day + dt.timedelta(days=7 * k), dist, seats, y)
        for k in range(3)
        for fid, plane, day, dist, seats, y in ROWS
    ]
    assertDataFrameEqual(scale_up(base, 3, SPEC), spark.createDataFrame(expected, SCHEMA))


def test_factor_one_is_the_identity(base: DataFrame) -> None:
    assertDataFrameEqual(scale_up(base, 1, SPEC), base)


def test_noise_is_seeded_and_independent_of_partitioning(base: DataFrame) -> None:
    noisy = ScaleSpec(**{**SPEC.__dict__, "noise": 0.1, "seed": 7})
    first = scale_up(base, 3, noisy)
    again = scale_up(base.repartition(3).sortWithinPartitions(F.desc("flight_id")), 3, noisy)
    assertDataFrameEqual(first, again)
    assert first.schema == base.schema
    # copy 0 is the base row; later copies are noised, nulls stay null, ints stay ints
    assertDataFrameEqual(first.where(~F.col("flight_id").contains("~")), base)
    copies = {r["flight_id"]: r for r in first.collect()}
    assert copies["c~1"]["distance"] is None and copies["b~2"]["seats"] is None
    assert copies["a~1"]["distance"] != 100.0 and copies["a~1"]["distance"] != copies["a~2"]["distance"]
    assert 50.0 < copies["a~1"]["distance"] < 150.0
    other = scale_up(base, 3, ScaleSpec(**{**noisy.__dict__, "seed": 8})).collect()
    assert {r["flight_id"]: r["distance"] for r in other} != {k: r["distance"] for k, r in copies.items()}


def test_same_dates_mode_and_bad_input(base: DataFrame) -> None:
    same_days = ScaleSpec(entity=("flight_id",), dates=("date",), shift_days=0)
    out = scale_up(base, 2, same_days)
    assert sorted(r["date"] for r in out.collect()) == [D1] * 4 + [D2] * 4
    with pytest.raises(ValueError, match="id_stride"):
        scale_up(base, 2, ScaleSpec(entity=("plane",)))
    with pytest.raises(ValueError, match="no column 'nope'"):
        scale_up(base, 2, ScaleSpec(numeric=("nope",)))
    with pytest.raises(ValueError, match=">= 1"):
        scale_up(base, 0, SPEC)
