"""validate: every kind of bad input ends as a quarantine row with its reason or a clear error.

Bronze tables are written from small inline DataFrames; the job runs for real on Delta. The
same invariants are checked throughout: rows in = silver + quarantine, and a failed run
leaves silver and quarantine exactly as they were (same Delta versions).
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from mlops_spark import lake
from mlops_spark.catalog import Catalog, Table
from mlops_spark.config import (
    AppConfig,
    DateRange,
    DerivedColumn,
    FeatureSpec,
    LakeConfig,
    ModelConfig,
    SourceConfig,
    SourceTable,
    SplitConfig,
    TableValidation,
    ValidationConfig,
)
from mlops_spark.errors import (
    ConfigError,
    DataQualityError,
    JobFailed,
    MissingColumnError,
    SchemaChangeError,
    TableNotFoundError,
)
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.validate import validate
from mlops_spark.results import TableCounts
from mlops_spark.validation import compare_schemas

D1, D2, D3 = dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(2020, 1, 3)


# ----------------------------------------------------------------------------- helpers


def app_config(
    lake_root: str,
    validation: dict[str, dict[str, Any]],
    dated: Sequence[str] = ("t",),
    undated: Sequence[str] = (),
) -> AppConfig:
    """A use case whose source tables are `dated` (partitioned by date) and `undated`."""
    tables = {name: SourceTable(date_expr="date") for name in dated}
    tables.update({name: SourceTable() for name in undated})
    return AppConfig(
        lake=LakeConfig(root=lake_root),
        source=SourceConfig(tables=tables),
        validation=ValidationConfig(
            tables={k: TableValidation.model_validate(v) for k, v in validation.items()}
        ),
        features=FeatureSpec(
            base_table="t", entity_id=DerivedColumn(name="id", expr="id"), event_time="current_timestamp()"
        ),
        model=ModelConfig(numeric=["x"]),
        split=SplitConfig(
            train=DateRange(start=dt.date(2020, 1, 1), end=dt.date(2020, 1, 31)),
            test=DateRange(start=dt.date(2020, 2, 1), end=dt.date(2020, 2, 10)),
        ),
    )


def table(config: AppConfig, layer: str, name: str = "t") -> Table:
    return Catalog(config).table(f"{layer}.{name}")


def path(config: AppConfig, layer: str, name: str = "t") -> str:
    return table(config, layer, name).path


def write_bronze(spark: SparkSession, config: AppConfig, df: DataFrame, name: str = "t") -> None:
    """Land rows in bronze as ingest does (replace exactly their dates)."""
    if config.source.tables[name].date_expr is None:
        lake.overwrite_table(df, table(config, "bronze", name))
        return
    dates = sorted({r[0] for r in df.select("date").distinct().collect()})
    lake.write_partitions(df, table(config, "bronze", name), dates)


def replace_bronze(spark: SparkSession, config: AppConfig, df: DataFrame, name: str = "t") -> None:
    """Rewrite bronze with a new schema (a source that changed shape)."""
    (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .partitionBy("date")
        .save(path(config, "bronze", name))
    )


def read(spark: SparkSession, config: AppConfig, layer: str, name: str = "t") -> DataFrame:
    return spark.read.format("delta").load(path(config, layer, name))


def versions(spark: SparkSession, config: AppConfig, name: str = "t") -> tuple[int | None, int | None]:
    return (
        lake.current_version(spark, table(config, "silver", name)),
        lake.current_version(spark, table(config, "quarantine", name)),
    )


def quarantined(spark: SparkSession, config: AppConfig, name: str = "t") -> DataFrame:
    """(id, failed_rules) of every quarantine row, the id read back from the original row."""
    return read(spark, config, "quarantine", name).select(
        F.get_json_object("row", "$.id").alias("id"), "failed_rules"
    )


def assert_nothing_lost(spark: SparkSession, config: AppConfig, name: str = "t") -> None:
    """rows in = silver + quarantine, per partition."""
    bronze = read(spark, config, "bronze", name).groupBy("date").count()
    silver = read(spark, config, "silver", name).groupBy("date").agg(F.count(F.lit(1)).alias("s"))
    quar = read(spark, config, "quarantine", name).groupBy("date").agg(F.count(F.lit(1)).alias("q"))
    done = silver.select("date").union(quar.select("date")).distinct()
    got = (
        bronze.join(done, "date")
        .join(silver, "date", "left")
        .join(quar, "date", "left")
        .select("date", "count", (F.coalesce("s", F.lit(0)) + F.coalesce("q", F.lit(0))).alias("count"))
    )
    assert got.count() > 0
    for row in got.collect():
        assert row[1] == row[2], f"partition {row[0]}: {row[1]} rows in bronze, {row[2]} out"


# ----------------------------------------------------------------------------- row-level bad input

ROWS_SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType()),
        T.StructField("date", T.DateType()),
        T.StructField("cat", T.StringType()),
        T.StructField("amount", T.StringType()),
        T.StructField("qty", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("code", T.StringType()),
        T.StructField("day_str", T.StringType()),
        T.StructField("ts_str", T.StringType()),
        T.StructField("start", T.IntegerType()),
        T.StructField("stop", T.IntegerType()),
    ]
)
GOOD: dict[str, Any] = {
    "date": D1,
    "cat": "A",
    "amount": "10.5",
    "qty": "5",
    "score": 0.5,
    "code": "AB12",
    "day_str": "2020-01-01",
    "ts_str": "2020-01-01 10:00:00",
    "start": 1,
    "stop": 2,
}
ROW_RULES: dict[str, Any] = {
    "max_bad_share": 1.0,
    "expectations": [
        {"rule": "not_null", "column": "id"},
        {"rule": "not_null", "column": "cat"},
        {"rule": "type", "column": "amount", "dtype": "double"},
        {"rule": "type", "column": "day_str", "dtype": "date"},
        {"rule": "type", "column": "ts_str", "dtype": "timestamp"},
        {"rule": "range", "column": "amount", "min": 0, "max": 1000},
        {"rule": "range", "column": "qty", "min": 0, "max": 100},
        {"rule": "range", "column": "score", "min": 0, "max": 1},
        {"rule": "allowed_values", "column": "cat", "values": ["A", "B"]},
        {"rule": "regex", "column": "code", "pattern": "^[A-Z]{2}[0-9]{2}$"},
        {"rule": "unique", "columns": ["id"]},
        {"name": "start_before_stop", "rule": "expression", "expr": "start <= stop"},
    ],
}

# (kind of bad input, id, overrides of a good row, the rules it must fail)
BAD_ROWS: list[tuple[str, str | None, dict[str, Any], list[str]]] = [
    ("null key", None, {}, ["not_null:id"]),
    ("null in a required column", "nullcat", {"cat": None}, ["not_null:cat"]),
    ("wrong type (text where a number belongs)", "badtype", {"amount": "abc"}, ["type:amount"]),
    ("non-numeric text in a range column", "textqty", {"qty": "lots"}, ["range:qty"]),
    ("value above the range", "high", {"qty": "500"}, ["range:qty"]),
    ("value below the range", "low", {"amount": "-5"}, ["range:amount"]),
    ("NaN", "nan", {"score": math.nan}, ["range:score"]),
    ("infinity", "inf", {"score": math.inf}, ["range:score"]),
    ("unknown category", "unknowncat", {"cat": "Z"}, ["allowed_values:cat"]),
    ("malformed code", "badcode", {"code": "x1"}, ["regex:code"]),
    ("blank string", "blank", {"code": ""}, ["regex:code"]),
    ("impossible date", "feb30", {"day_str": "2020-02-30"}, ["type:day_str"]),
    ("date in the wrong format", "dmy", {"day_str": "31/01/2020"}, ["type:day_str"]),
    ("malformed timestamp", "badts", {"ts_str": "2020-01-01 25:61:00"}, ["type:ts_str"]),
    ("cross-column rule broken", "backwards", {"start": 5, "stop": 2}, ["start_before_stop"]),
    (
        "several problems in one row",
        "multi",
        {"cat": "Z", "qty": "-1", "code": "bad"},
        ["range:qty", "allowed_values:cat", "regex:code"],
    ),
]


def make_rows(spark: SparkSession, rows: list[dict[str, Any]]) -> DataFrame:
    return spark.createDataFrame(
        [tuple({**GOOD, **r}.get(f.name) for f in ROWS_SCHEMA.fields) for r in rows], ROWS_SCHEMA
    )


def test_each_bad_row_is_quarantined_with_every_rule_it_fails(
    spark: SparkSession, lake_root: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = app_config(lake_root, {"t": ROW_RULES})
    good = [{"id": "g1"}, {"id": "g2", "cat": "B", "qty": None}, {"id": "g3", "date": D2}]
    dup_key = [{"id": "k1", "qty": "1"}, {"id": "k1", "qty": "2"}]  # same key, different rows
    exact = [{"id": "d1"}, {"id": "d1"}]  # exact duplicates: one survives
    bad = [{"id": i, **o} for _, i, o, _ in BAD_ROWS]
    bad_d2 = [{"id": "nullcat2", "date": D2, "cat": None}]
    write_bronze(spark, config, make_rows(spark, good + dup_key + exact + bad + bad_d2))

    ctx = validate(config, spark=spark)

    expected_quarantine = [(i, rules) for _, i, _, rules in BAD_ROWS]
    expected_quarantine += [("k1", ["unique:id"]), ("k1", ["unique:id"]), ("d1", ["duplicate_row"])]
    expected_quarantine += [("nullcat2", ["not_null:cat"])]
    assertDataFrameEqual(
        quarantined(spark, config),
        spark.createDataFrame(expected_quarantine, "id string, failed_rules array<string>"),
    )
    # silver: the clean rows, typed as the `type` rules say, one copy of the exact duplicate
    silver_schema = (
        "id string, date date, cat string, amount double, qty string, score double, code string, "
        "day_str date, ts_str timestamp, start int, stop int"
    )
    clean = {"amount": 10.5, "day_str": D1, "ts_str": dt.datetime(2020, 1, 1, 10)}
    expected_silver = [
        {**GOOD, **clean, "id": "g1"},
        {**GOOD, **clean, "id": "g2", "cat": "B", "qty": None},
        {**GOOD, **clean, "id": "g3", "date": D2},
        {**GOOD, **clean, "id": "d1"},
    ]
    names = [f.name for f in ROWS_SCHEMA.fields]
    assertDataFrameEqual(
        read(spark, config, "silver").select(*names),
        spark.createDataFrame([tuple(r[n] for n in names) for r in expected_silver], silver_schema),
    )
    assert_nothing_lost(spark, config)

    q = read(spark, config, "quarantine")
    # the original row, nulls and malformed values included, and the run that quarantined it
    original = json.loads(q.where(F.get_json_object("row", "$.id") == "badtype").first()["row"])  # type: ignore[index]
    assert original["amount"] == "abc" and original["start"] == 1 and set(original) == set(names)
    null_key = json.loads(q.where(F.get_json_object("row", "$.id").isNull()).first()["row"])  # type: ignore[index]
    assert "id" in null_key and null_key["id"] is None
    assert {r[0] for r in q.select("job_run_id").distinct().collect()} == {ctx.run_id}

    # per-rule counts: returned, printed and kept in the audit table's summary
    counts = ctx.result.rule_counts["t"]
    assert counts["range:qty"] == 3 and counts["type:day_str"] == 2 and counts["unique:id"] == 2
    assert counts["not_null:cat"] == 2 and counts["duplicate_row"] == 1
    assert ctx.result.rows["t"] == TableCounts(read=24, silver=4, quarantine=20)
    err = capsys.readouterr().err
    assert "bronze.t: 4 of 24 rows passed; quarantined 20 (range:qty=3, regex:code=3, " in err
    audit = spark.read.format("delta").load(f"{lake_root}/ops/jobs").where(F.col("run_id") == ctx.run_id)
    assert "range:qty=3" in audit.first()["summary"]  # type: ignore[index]


def test_rules_see_typed_values_and_quarantine_keeps_the_original(
    spark: SparkSession, lake_root: str
) -> None:
    """An expression over a `type`-ruled text column compares numbers, not strings."""
    config = app_config(
        lake_root,
        {
            "t": {
                "max_bad_share": 1.0,
                "expectations": [
                    {"rule": "type", "column": "amount", "dtype": "double"},
                    {"name": "amount_above_qty", "rule": "expression", "expr": "amount > 9"},
                    {"rule": "allowed_values", "column": "qty", "values": [1, 5]},
                ],
            }
        },
    )
    rows = [{"id": "a", "amount": "10.5"}, {"id": "b", "amount": "9.0"}, {"id": "c", "qty": "1.0"}]
    rows += [{"id": "d", "qty": "7"}, {"id": "e", "qty": "x"}]
    write_bronze(spark, config, make_rows(spark, rows))
    validate(config, spark=spark)
    assertDataFrameEqual(
        quarantined(spark, config),
        spark.createDataFrame(
            [("b", ["amount_above_qty"]), ("d", ["allowed_values:qty"]), ("e", ["allowed_values:qty"])],
            "id string, failed_rules array<string>",
        ),
    )
    assert sorted(r[0] for r in read(spark, config, "silver").select("id").collect()) == ["a", "c"]


# ----------------------------------------------------------------------------- table rules

SIMPLE = T.StructType(
    [
        T.StructField("id", T.StringType()),
        T.StructField("date", T.DateType()),
        T.StructField("x", T.IntegerType()),
        T.StructField("seen_at", T.TimestampType()),
    ]
)


def simple_rows(spark: SparkSession, rows: list[tuple[Any, ...]]) -> DataFrame:
    return spark.createDataFrame(rows, SIMPLE)


def day_rows(day: dt.date, n: int, bad: int = 0, start: int = 0) -> list[tuple[Any, ...]]:
    """n rows on `day`, the first `bad` of them with a null key."""
    at = dt.datetime.combine(day, dt.time(12))
    return [(None if i < bad else f"r{start + i}", day, i, at) for i in range(n)]


def base_rules(**extra: Any) -> dict[str, Any]:
    return {"expectations": [{"rule": "not_null", "column": "id"}], **extra}


def test_bad_share_above_threshold_fails_and_writes_nothing(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules(max_bad_share=0.25)})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 4, bad=1)))  # 25%: allowed
    validate(config, spark=spark)
    before = versions(spark, config)
    silver_before = read(spark, config, "silver")
    write_bronze(spark, config, simple_rows(spark, day_rows(D2, 4, bad=2)))  # 50%: too many
    with pytest.raises(DataQualityError) as err:
        validate(config, spark=spark)
    message = str(err.value)
    assert "'bronze.t'" in message and "partition 2020-01-02: 2/4 rows (50.0%)" in message
    assert (
        "max_bad_share 25.0%" in message and "not_null:id=2" in message and "Nothing was written" in message
    )
    assert versions(spark, config) == before
    assertDataFrameEqual(read(spark, config, "silver"), silver_before)
    assert lake.list_partitions(spark, table(config, "quarantine")) == [D1]


def test_empty_partition_fails_unless_allowed(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules()})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 2)))
    validate(config, spark=spark)
    before = versions(spark, config)
    with pytest.raises(DataQualityError, match=r"'bronze.t': empty partition\(s\) 2020-01-02 .*allow_empty"):
        validate(config, JobArgs(date=D2), spark=spark)
    assert versions(spark, config) == before

    allowing = app_config(lake_root, {"t": base_rules(allow_empty=True)})
    ctx = validate(allowing, JobArgs(date=D2), spark=spark)
    assert [w.partitions for w in ctx.writes] == [(D2,), (D2,)]
    assert read(spark, config, "silver").where(F.col("date") == D2).count() == 0


def test_row_count_bounds(spark: SparkSession, lake_root: str) -> None:
    rules = base_rules(expectations=[{"rule": "row_count", "min": 2, "max": 4}])
    config = app_config(lake_root, {"t": rules})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 1) + day_rows(D2, 5, start=10)))
    with pytest.raises(DataQualityError) as err:
        validate(config, spark=spark)
    assert "partition 2020-01-01 has 1 rows, outside [2.0, 4.0] (row_count:row)" in str(err.value)
    assert "partition 2020-01-02 has 5 rows, outside [2.0, 4.0]" in str(err.value)
    assert versions(spark, config) == (None, None)


def test_freshness_is_checked_per_partition(spark: SparkSession, lake_root: str) -> None:
    rules = base_rules(expectations=[{"rule": "freshness", "column": "seen_at", "max_age_days": 1}])
    config = app_config(lake_root, {"t": rules})
    fresh = day_rows(D1, 2)
    stale = [(f"s{i}", D3, i, dt.datetime(2020, 1, 1, 8)) for i in range(2)]  # 2 days old on Jan 3
    never = [("n0", dt.date(2020, 1, 5), 0, None)]
    write_bronze(spark, config, simple_rows(spark, fresh + stale + never))
    with pytest.raises(DataQualityError) as err:
        validate(config, spark=spark)
    message = str(err.value)
    assert (
        "freshness:seen_at: partition 2020-01-03: newest seen_at is 2020-01-01, more than 1 day(s)" in message
    )
    assert "partition 2020-01-05: newest seen_at is null" in message
    assert "partition 2020-01-01" not in message
    assert versions(spark, config) == (None, None)
    validate(config, JobArgs(date=D1), spark=spark)  # the fresh day alone passes
    assert read(spark, config, "silver").count() == 2


def test_rows_without_a_partition_date_are_a_clear_error(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules()})
    replace_bronze(spark, config, simple_rows(spark, [*day_rows(D1, 2), ("nodate", None, 1, None)]))
    with pytest.raises(DataQualityError, match=r"'bronze.t': 1 row\(s\) have no 'date'.*malformed date"):
        validate(config, spark=spark)
    assert versions(spark, config) == (None, None)


# ----------------------------------------------------------------------------- schema policy

SCHEMA_RULES = {
    "expectations": [
        {"rule": "not_null", "column": "id"},
        {"rule": "type", "column": "amount", "dtype": "double"},
    ]
}
V1 = "id string, date date, x int, amount string"


@pytest.fixture(scope="module")
def validated_lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A lake whose bronze day 1 is validated into silver (copied by each schema test)."""
    root = str(tmp_path_factory.mktemp("schema") / "lake")
    config = app_config(root, {"t": SCHEMA_RULES})
    write_bronze(spark, config, spark.createDataFrame([("a", D1, 1, "1.5"), ("b", D1, 2, "2")], V1))
    validate(config, spark=spark)
    return root


def copy_lake(validated_lake: str, tmp_path: Path, **policy: Any) -> AppConfig:
    root = str(tmp_path / "copy")
    shutil.copytree(validated_lake, root)
    return app_config(root, {"t": {**SCHEMA_RULES, **policy}})


@pytest.mark.parametrize(
    ("kind", "bronze_schema", "rows", "message"),
    [
        (
            "missing column",
            "id string, date date, amount string",
            [("c", D1, "1"), ("d", D2, "2")],
            r"'bronze.t': column\(s\) 'x' \(int\) missing from the new data",
        ),
        (
            "renamed column",
            "id string, date date, x_renamed int, amount string",
            [("c", D1, 1, "1"), ("d", D2, 2, "2")],
            r"'bronze.t': column\(s\) 'x' missing and 'x_renamed' new: renamed\?",
        ),
        (
            "column retyped to a wider type",
            "id string, date date, x bigint, amount string",
            [("c", D1, 1, "1"), ("d", D2, 2**40, "2")],
            r"'bronze.t': column\(s\) 'x' changed type int -> bigint",
        ),
        (
            "retyped column",
            "id string, date date, x string, amount string",
            [("c", D1, "1", "1"), ("d", D2, "two", "2")],
            r"'bronze.t': column\(s\) 'x' changed type int -> string",
        ),
    ],
)
def test_schema_change_fails_naming_table_column_and_change(
    spark: SparkSession,
    validated_lake: str,
    tmp_path: Path,
    kind: str,
    bronze_schema: str,
    rows: list[tuple[Any, ...]],
    message: str,
) -> None:
    config = copy_lake(validated_lake, tmp_path)
    replace_bronze(spark, config, spark.createDataFrame(rows, bronze_schema))
    before = versions(spark, config)
    with pytest.raises(SchemaChangeError, match=message):
        validate(config, spark=spark)
    assert versions(spark, config) == before, kind


def test_new_column_fails_when_the_policy_says_so(
    spark: SparkSession, validated_lake: str, tmp_path: Path
) -> None:
    config = copy_lake(validated_lake, tmp_path, on_new_column="fail")
    replace_bronze(
        spark,
        config,
        spark.createDataFrame(
            [("d", D2, 2, "2", "red")], "id string, date date, x int, amount string, color string"
        ),
    )
    before = versions(spark, config)
    with pytest.raises(
        SchemaChangeError, match=r"new column\(s\) 'color' \(string\) and on_new_column is 'fail'"
    ):
        validate(config, spark=spark)
    assert versions(spark, config) == before


def test_new_column_is_carried_as_nullable(spark: SparkSession, validated_lake: str, tmp_path: Path) -> None:
    config = copy_lake(validated_lake, tmp_path)
    schema = "id string, date date, x int, amount string, color string"
    replace_bronze(
        spark, config, spark.createDataFrame([("a", D1, 1, "1.5", None), ("d", D2, 2, "2", "red")], schema)
    )
    ctx = validate(config, spark=spark)
    assert "silver.t: schema added column 'color' (string)" in ctx.lines
    assertDataFrameEqual(
        read(spark, config, "silver").select("id", "date", "x", "amount", "color"),
        spark.createDataFrame(
            [("a", D1, 1, 1.5, None), ("b", D1, 2, 2.0, None), ("d", D2, 2, 2.0, "red")],
            "id string, date date, x int, amount double, color string",
        ),
    )


def test_narrower_and_type_ruled_columns_adapt(
    spark: SparkSession, validated_lake: str, tmp_path: Path
) -> None:
    """smallint where silver has int is cast up; a `type`-ruled column may change its bronze type."""
    config = copy_lake(validated_lake, tmp_path)
    schema = "id string, date date, x smallint, amount double"
    replace_bronze(spark, config, spark.createDataFrame([("a", D1, 1, 1.5), ("d", D2, 7, 3.0)], schema))
    ctx = validate(config, spark=spark)
    assert "silver.t: schema narrowed column 'x' (int -> smallint)" in ctx.lines
    silver = read(spark, config, "silver")
    assert dict(silver.dtypes)["x"] == "int" and dict(silver.dtypes)["amount"] == "double"
    assert sorted(tuple(r) for r in silver.select("id", "x", "amount").collect()) == [
        ("a", 1, 1.5),
        ("b", 2, 2.0),
        ("d", 7, 3.0),
    ]


def test_schema_compare_lists_every_change() -> None:
    old = T.StructType.fromDDL("a int, b string, c double")  # type: ignore[attr-defined]
    new = T.StructType.fromDDL("a smallint, b int, d string")  # type: ignore[attr-defined]
    changes = {(c.kind, c.column, c.detail) for c in compare_schemas(old, new)}
    assert changes == {
        ("narrowed", "a", "int -> smallint"),
        ("retyped", "b", "string -> int"),
        ("added", "d", "string"),
        ("removed", "c", "double"),
    }


def test_a_failing_table_stops_every_table_before_any_write(spark: SparkSession, lake_root: str) -> None:
    """Two tables: the good one is not written when the other one fails its checks."""
    config = app_config(lake_root, {"t": base_rules(), "u": base_rules(max_bad_share=0.0)}, dated=("t", "u"))
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3)), "t")
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3, bad=1)), "u")
    with pytest.raises(DataQualityError, match=r"'bronze\.u'"):
        validate(config, spark=spark)
    assert versions(spark, config, "t") == (None, None)
    assert versions(spark, config, "u") == (None, None)


# ----------------------------------------------------------------------------- unreadable input


def test_corrupt_data_file_is_a_clear_error(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules()})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3)))
    [data_file] = glob.glob(f"{path(config, 'bronze')}/date=2020-01-01/*.parquet")
    Path(data_file).write_bytes(b"this is not parquet" * 10)
    with pytest.raises(JobFailed) as err:
        validate(config, spark=spark)
    message = str(err.value)
    assert message.startswith("table 'bronze.t': its data cannot be read ([FAILED_READ_FILE")
    assert "corrupt or missing" in message and "Nothing was written" in message
    assert "\n" not in message and "at org.apache" not in message
    assert versions(spark, config) == (None, None)


def test_missing_data_file_is_a_clear_error(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules()})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3)))
    for data_file in glob.glob(f"{path(config, 'bronze')}/date=2020-01-01/*.parquet"):
        os.remove(data_file)
    with pytest.raises(
        JobFailed, match=r"'bronze.t': its data cannot be read \(\[FAILED_READ_FILE.FILE_NOT_EXIST"
    ):
        validate(config, spark=spark)
    assert versions(spark, config) == (None, None)


def test_corrupt_delta_log_is_a_clear_error(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules()})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3)))
    [commit] = glob.glob(f"{path(config, 'bronze')}/_delta_log/*.json")
    Path(commit).write_text("{not json")
    with pytest.raises(JobFailed, match=r"table 'bronze.t' at .* cannot be read: .*restore the table"):
        validate(config, spark=spark)
    assert versions(spark, config) == (None, None)


def test_missing_bronze_table_names_it(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules()})
    with pytest.raises(TableNotFoundError, match=r"table 'bronze.t' does not exist at .*run the job"):
        validate(config, spark=spark)


# ----------------------------------------------------------------------------- rules that cannot run


@pytest.mark.parametrize(
    ("rule", "error", "message"),
    [
        (
            {"rule": "not_null", "column": "nope"},
            MissingColumnError,
            r"table 'bronze.t' has no column 'nope' \(it has: date, id, seen_at, x\)",
        ),
        (
            {"name": "broken_sql", "rule": "expression", "expr": "x >>> 1 AND"},
            ConfigError,
            r"table 'bronze.t': rule 'broken_sql' cannot be applied: .*fix it under validation.tables",
        ),
        (
            {"rule": "type", "column": "x", "dtype": "doubel"},
            ConfigError,
            r"rule 'type:x' cannot be applied: .*DOUBEL",
        ),
    ],
)
def test_a_rule_that_does_not_fit_the_table_is_a_clear_error(
    spark: SparkSession, lake_root: str, rule: dict[str, Any], error: type[Exception], message: str
) -> None:
    config = app_config(lake_root, {"t": {"expectations": [rule]}})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 2)))
    with pytest.raises(error, match=message):
        validate(config, spark=spark)
    assert versions(spark, config) == (None, None)


def test_a_rule_that_raises_on_the_data_is_named(spark: SparkSession, lake_root: str) -> None:
    """Under ANSI SQL 1/0 raises: the error names the rule instead of showing a stack trace."""
    rules = {"expectations": [{"name": "ratio_small", "rule": "expression", "expr": "10 / x < 100"}]}
    config = app_config(lake_root, {"t": rules})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3)))  # x = 0 in the first row
    with pytest.raises(JobFailed) as err:
        validate(config, spark=spark)
    assert str(err.value).startswith(
        "table 'bronze.t': rule 'ratio_small' raised an error on the data ([DIVIDE_BY_ZERO]"
    )
    assert "try_divide" in str(err.value)
    assert versions(spark, config) == (None, None)


# ----------------------------------------------------------------------------- writes


def test_a_failed_write_undoes_the_other_table(spark: SparkSession, lake_root: str) -> None:
    """Quarantine cannot be written: silver is restored, so the two never disagree."""
    config = app_config(lake_root, {"t": base_rules(max_bad_share=0.5)})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3, bad=1)))
    validate(config, spark=spark)
    silver_before = read(spark, config, "silver").collect()
    # someone broke the quarantine table: `row` is now a number
    q = read(spark, config, "quarantine").withColumn("row", F.lit(1))
    q.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
        path(config, "quarantine")
    )
    write_bronze(spark, config, simple_rows(spark, day_rows(D2, 3, bad=1, start=5)))
    silver_version = lake.current_version(spark, table(config, "silver"))
    with pytest.raises(JobFailed) as err:
        validate(config, spark=spark)
    message = str(err.value)
    assert message.startswith("validate: writing quarantine.t failed (")
    assert "undid this run's writes to silver.t" in message and "\n" not in message
    assertDataFrameEqual(
        read(spark, config, "silver"),
        spark.createDataFrame(silver_before, read(spark, config, "silver").schema),
    )
    history = lake.history(spark, table(config, "silver")).orderBy("version").collect()
    assert [h["operation"] for h in history][-2:] == ["WRITE", "RESTORE"]
    assert history[-1]["version"] == silver_version + 2  # type: ignore[operator]


def test_first_write_is_undone_by_deleting_its_partitions(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules(max_bad_share=0.5)})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3, bad=1)))
    Path(path(config, "quarantine")).parent.mkdir(parents=True, exist_ok=True)
    Path(path(config, "quarantine")).write_text("a file where the quarantine table should be")
    with pytest.raises(JobFailed, match=r"writing quarantine.t failed .*undid this run's writes to silver.t"):
        validate(config, spark=spark)
    assert read(spark, config, "silver").count() == 0
    assert lake.list_partitions(spark, table(config, "silver")) == []


def test_validate_twice_gives_identical_tables(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": ROW_RULES})
    rows = [{"id": "g1"}, {"id": "g1"}, {"id": None}, {"id": "x", "qty": "900"}, {"id": "g2", "date": D2}]
    write_bronze(spark, config, make_rows(spark, rows))
    first = validate(config, spark=spark)
    silver1, quar1 = read(spark, config, "silver").collect(), read(spark, config, "quarantine").collect()
    second = validate(config, JobArgs(start=D1, end=D2), spark=spark)
    assert first.run_id != second.run_id
    silver = read(spark, config, "silver")
    assertDataFrameEqual(silver, spark.createDataFrame(silver1, silver.schema))
    # quarantine: the same rows and reasons; only the run id says which run put them there
    quar = read(spark, config, "quarantine")
    assert {r["job_run_id"] for r in quar.collect()} == {second.run_id}
    assertDataFrameEqual(
        quar.drop("job_run_id"), spark.createDataFrame(quar1, quar.schema).drop("job_run_id")
    )
    assert_nothing_lost(spark, config)


def test_incremental_run_touches_only_new_partitions(spark: SparkSession, lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules(max_bad_share=0.5)})
    write_bronze(spark, config, simple_rows(spark, day_rows(D1, 3, bad=1) + day_rows(D2, 3, start=3)))
    validate(config, spark=spark)
    silver_files = set(read(spark, config, "silver").inputFiles())
    quarantine_files = set(read(spark, config, "quarantine").inputFiles())

    again = validate(config, spark=spark)
    assert again.writes == () and "silver.t: nothing new to validate" in again.lines

    write_bronze(spark, config, simple_rows(spark, day_rows(D3, 4, bad=1, start=6)))
    ctx = validate(config, spark=spark)
    by_name = {w.name: w for w in ctx.writes}
    silver_w, quarantine_w = by_name["silver.t"], by_name["quarantine.t"]
    assert silver_w.partitions == quarantine_w.partitions == (D3,)
    assert (silver_w.rows_written, silver_w.files_added, silver_w.files_removed) == (3, 1, 0)
    assert (quarantine_w.rows_written, quarantine_w.files_added, quarantine_w.files_removed) == (1, 1, 0)
    assert silver_files < set(read(spark, config, "silver").inputFiles())
    assert quarantine_files < set(read(spark, config, "quarantine").inputFiles())
    assert_nothing_lost(spark, config)


def test_unpartitioned_table_is_replaced_whole_and_skipped_when_unchanged(
    spark: SparkSession, lake_root: str
) -> None:
    rules = {
        "expectations": [{"rule": "unique", "columns": ["code"]}, {"rule": "not_null", "column": "code"}]
    }
    config = app_config(lake_root, {"dim": {**rules, "max_bad_share": 0.8}}, dated=(), undated=("dim",))
    dim = spark.createDataFrame([("A", 1), ("B", 2), ("B", 3), (None, 4)], "code string, n int")
    write_bronze(spark, config, dim, "dim")
    validate(config, spark=spark)
    assertDataFrameEqual(
        read(spark, config, "silver", "dim"), spark.createDataFrame([("A", 1)], "code string, n int")
    )
    assertDataFrameEqual(
        read(spark, config, "quarantine", "dim").select(
            F.get_json_object("row", "$.n").alias("n"), "failed_rules"
        ),
        spark.createDataFrame(
            [("2", ["unique:code"]), ("3", ["unique:code"]), ("4", ["not_null:code"])],
            "n string, failed_rules array<string>",
        ),
    )
    ctx = validate(config, spark=spark)
    assert ctx.writes == () and "silver.dim: up to date with bronze v0" in ctx.lines


def test_rules_for_a_table_that_is_not_a_source_are_refused(lake_root: str) -> None:
    config = app_config(lake_root, {"t": base_rules(), "flihgts": base_rules()})
    with pytest.raises(
        ConfigError, match=r"validation.tables: 'flihgts' is not a source table \(source.tables has: t\)"
    ):
        validate(config)
