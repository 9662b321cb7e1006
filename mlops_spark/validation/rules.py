"""Expectations -> (valid, quarantine) DataFrames, and the schema policy.

Row rules (not_null, type, range, allowed_values, regex, unique, expression) mark each
row with the names of every rule it fails; failing rows go to quarantine with those names,
the original row (as JSON, so the quarantine schema survives source changes) and the job
run id. Exact duplicate rows keep one copy in silver and send the others to quarantine as
``duplicate_row``, so rows in = silver + quarantine, always.

Columns with a `type` rule are cast (``try_cast``) before the other rules run, so rules
and silver see typed values while quarantine keeps the original text. No rule raises on a
malformed value: a string where a number belongs fails `range` / `allowed_values` instead
of stopping the job (only a user's SQL `expression` can still raise, and is then named).

Table rules (row_count, freshness, an empty partition, the bad-row share) fail the job
before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mlops_spark.config import Expectation, TableValidation
from mlops_spark.errors import (
    SPARK_ERRORS,
    ConfigError,
    MissingColumnError,
    SchemaChangeError,
    describe_error,
)

FAILED_RULES = "failed_rules"
RAW = "__raw"
DUPLICATE_ROW = "duplicate_row"
ROW_RULES = {"not_null", "type", "range", "allowed_values", "regex", "unique", "expression"}

Transform = Callable[[DataFrame], DataFrame]


# ----------------------------------------------------------------------------- schema policy

# (new bronze type, silver type) pairs where casting to silver's type loses nothing: bronze
# now sends a narrower type, and the policy casts it up instead of failing.
_WIDENINGS = {
    ("int", "bigint"),
    ("int", "double"),
    ("bigint", "double"),
    ("float", "double"),
    ("smallint", "int"),
    ("smallint", "bigint"),
    ("tinyint", "int"),
    ("tinyint", "bigint"),
    ("int", "float"),
    ("date", "timestamp"),
}


@dataclass(frozen=True)
class SchemaChange:
    kind: str  # added | removed | retyped | narrowed (bronze narrower than silver: cast up)
    column: str
    detail: str = ""


def compare_schemas(expected: T.StructType, actual: T.StructType) -> list[SchemaChange]:
    """How `actual` (new bronze) differs from `expected` (what silver holds)."""
    exp = {f.name: f.dataType.simpleString() for f in expected.fields}
    act = {f.name: f.dataType.simpleString() for f in actual.fields}
    changes: list[SchemaChange] = []
    for name, dtype in act.items():
        if name not in exp:
            changes.append(SchemaChange("added", name, dtype))
        elif exp[name] != dtype:
            kind = "narrowed" if (dtype, exp[name]) in _WIDENINGS else "retyped"
            changes.append(SchemaChange(kind, name, f"{exp[name]} -> {dtype}"))
    for name in exp:
        if name not in act:
            changes.append(SchemaChange("removed", name, exp[name]))
    return changes


def enforce_schema_policy(
    table: str,
    expected: T.StructType | None,
    df: DataFrame,
    policy: TableValidation,
    system_columns: Sequence[str] = (),
) -> tuple[DataFrame, list[SchemaChange]]:
    """Adapt `df` to the silver schema or fail naming table, column and change.

    * a new column: carried as nullable (``on_new_column: adapt``) or an error;
    * a removed, renamed or retyped column: an error (a rename shows as both);
    * a narrower type than silver holds (int where silver has bigint): cast up, losing nothing;
    * a column with a `type` rule is compared as cast to that type (its bronze type may change).
    """
    if expected is None:
        return df, []
    expected = T.StructType([f for f in expected.fields if f.name not in system_columns])
    check_type_rules(table, policy, df)
    # columns with a `type` rule are compared as silver holds them (cast to that type)
    changes = compare_schemas(expected, df.transform(typed(policy)).schema)
    added = [c for c in changes if c.kind == "added"]
    removed = [c for c in changes if c.kind == "removed"]
    retyped = [c for c in changes if c.kind == "retyped"]
    problems = []
    if removed and added:
        problems.append(
            "column(s) "
            + ", ".join(repr(c.column) for c in removed)
            + " missing and "
            + ", ".join(repr(c.column) for c in added)
            + " new: renamed? map the new name in the source or update the expectations"
        )
    elif removed:
        problems.append(
            "column(s) "
            + ", ".join(f"{c.column!r} ({c.detail})" for c in removed)
            + " missing from the new data"
        )
    if retyped:
        problems.append("column(s) " + ", ".join(f"{c.column!r} changed type {c.detail}" for c in retyped))
    if added and not removed and policy.on_new_column == "fail":
        problems.append(
            "new column(s) "
            + ", ".join(f"{c.column!r} ({c.detail})" for c in added)
            + " and on_new_column is 'fail'"
        )
    if problems:
        raise SchemaChangeError(f"table {table!r}: " + "; ".join(problems))
    widened = {c.column for c in changes if c.kind == "narrowed"}
    if widened:
        types = {f.name: f.dataType for f in expected.fields}
        df = df.select(*[F.col(c).cast(types[c]).alias(c) if c in widened else F.col(c) for c in df.columns])
    return df, changes


# ----------------------------------------------------------------------------- row rules


def _require(available: Sequence[str], table: str, columns: Sequence[str]) -> None:
    for c in columns:
        if c not in available:
            raise MissingColumnError(table, c, list(available))


def type_casts(policy: TableValidation) -> dict[str, str]:
    """{column: SQL type} of the table's `type` rules (the types silver holds)."""
    return {e.column: e.dtype for e in policy.expectations if e.rule == "type" and e.column and e.dtype}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rule_passes(exp: Expectation, raw: Column | None = None) -> Column:
    """A column that is true when a row passes a (non-unique) row rule.

    Value rules see the row as silver will hold it (columns with a `type` rule already
    cast); ``raw`` is the original row as a struct (defaults to the columns themselves),
    which `not_null` and `type` inspect. Null handling follows SQL CHECK constraints: only
    `not_null` fails a null, and `type` fails a value that does not cast. Comparisons never
    raise on a malformed value (a string where a number belongs fails the rule instead).
    """
    if exp.rule == "expression":
        assert exp.expr
        return F.coalesce(F.expr(exp.expr), F.lit(True))
    return F.coalesce(_value_rule_passes(exp, raw), F.lit(False))


def _value_rule_passes(exp: Expectation, raw: Column | None) -> Column:
    v = F.col(exp.column) if exp.column else None
    original = raw.getField(exp.column) if (raw is not None and exp.column) else v
    if exp.rule == "not_null":
        assert original is not None
        return original.isNotNull()
    if exp.rule == "type":
        assert original is not None and exp.dtype
        return original.isNull() | original.try_cast(exp.dtype).isNotNull()
    if exp.rule == "range":
        assert v is not None
        d = v.try_cast("double")
        ok = d.isNotNull() & ~F.isnan(d)
        if exp.min is not None:
            ok = ok & (d >= F.lit(float(exp.min)))
        if exp.max is not None:
            ok = ok & (d <= F.lit(float(exp.max)))
        return v.isNull() | ok
    if exp.rule == "allowed_values":
        assert v is not None
        if all(_is_number(x) for x in exp.values):
            return v.isNull() | v.try_cast("double").isin([float(x) for x in exp.values])
        texts = [str(x).lower() if isinstance(x, bool) else str(x) for x in exp.values]
        return v.isNull() | v.cast("string").isin(texts)
    if exp.rule == "regex":
        assert v is not None and exp.pattern
        return v.isNull() | v.cast("string").rlike(exp.pattern)
    raise ConfigError(f"rule {exp.rule!r} is not a row rule")


def with_raw_row(policy: TableValidation) -> Transform:
    """Curried: keep the original row in ``__raw`` and cast `type`-ruled columns (try_cast)."""
    casts = type_casts(policy)

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            *[F.col(c).try_cast(casts[c]).alias(c) if c in casts else F.col(c) for c in df.columns],
            F.struct(*[F.col(c) for c in df.columns]).alias(RAW),
        )

    return transform


def _analysed(table: str, exp: Expectation, df: DataFrame, build: Callable[[], Column]) -> Column:
    """Build and resolve a rule against the data now, so a bad rule names itself before Spark runs."""
    try:
        check = build()
        _ = df.select(check).schema
    except MissingColumnError:
        raise
    except SPARK_ERRORS as exc:
        raise ConfigError(
            f"table {table!r}: rule {exp.rule_name!r} cannot be applied: {describe_error(exc)} "
            "(fix it under validation.tables)"
        ) from None
    return check


def check_type_rules(table: str, policy: TableValidation, df: DataFrame) -> None:
    """Every `type` rule names an existing column and a type Spark knows (else a clear error)."""
    _require(df.columns, table, list(type_casts(policy)))
    for exp in policy.expectations:
        if exp.rule == "type":
            _analysed(table, exp, df, partial(rule_passes, exp))


def row_rule_checks(table: str, policy: TableValidation, df: DataFrame) -> list[tuple[str, Column]]:
    """(rule name, column that is the name when the row fails, else null) per row rule.

    ``df`` is the output of `with_raw_row`. Exact duplicates (on ``dedupe_on``, or the whole
    row) keep their first copy; the others fail ``duplicate_row``. Key duplicates that
    differ in content all fail ``unique:<key>``: which copy is right cannot be known.
    """
    raw = F.col(RAW)
    data_cols = [c for c in df.columns if c not in (RAW, FAILED_RULES)]
    checks: list[tuple[str, Column]] = []
    for exp in policy.expectations:
        if exp.rule not in ROW_RULES:
            continue
        _require(data_cols, table, [c for c in [exp.column, *exp.columns] if c])
        if exp.rule == "unique":
            w = Window.partitionBy(*[raw.getField(k) for k in exp.columns])
            distinct_rows = F.size(F.collect_set(F.to_json(raw)).over(w))
            checks.append((exp.rule_name, F.when(distinct_rows > 1, F.lit(exp.rule_name))))
        else:
            passes = _analysed(table, exp, df, partial(rule_passes, exp, raw))
            checks.append((exp.rule_name, F.when(~passes, F.lit(exp.rule_name))))
    dedupe = policy.dedupe_on or data_cols
    _require(data_cols, table, dedupe)
    order = [raw.getField(c).asc_nulls_last() for c in data_cols]
    first_copy = F.row_number().over(Window.partitionBy(*[raw.getField(c) for c in dedupe]).orderBy(*order))
    checks.append((DUPLICATE_ROW, F.when(first_copy > 1, F.lit(DUPLICATE_ROW))))
    return checks


def with_failed_rules(table: str, policy: TableValidation, date_column: str | None) -> Transform:
    """Curried: type the row, keep the original in ``__raw`` and add ``failed_rules``.

    ``failed_rules`` is the array of the names of every rule the row fails (empty when the
    row is clean); see `row_rule_checks`.
    """

    def transform(df: DataFrame) -> DataFrame:
        check_type_rules(table, policy, df)
        prepared = df.transform(with_raw_row(policy))
        checks = [c for _, c in row_rule_checks(table, policy, prepared)]
        failed = F.filter(F.array(*checks), lambda x: x.isNotNull())
        return prepared.withColumn(FAILED_RULES, failed)

    return transform


def failing_rule(table: str, policy: TableValidation, df: DataFrame) -> str | None:
    """The first row rule whose evaluation raises on ``df``'s data (None when none does).

    Used after a validation run failed inside Spark, to name the rule (e.g. an expression
    that divides by zero under ANSI SQL) instead of showing a stack trace.
    """
    prepared = df.transform(with_raw_row(policy))
    for name, check in row_rule_checks(table, policy, prepared):
        try:
            prepared.select(check.alias("r")).where(F.col("r").isNotNull()).limit(1).collect()
        except SPARK_ERRORS:
            return name
    return None


def typed(policy: TableValidation) -> Transform:
    """Curried: cast columns that have a `type` rule to that type (silver is typed)."""
    casts = type_casts(policy)

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            *[F.col(c).try_cast(casts[c]).alias(c) if c in casts else F.col(c) for c in df.columns]
        )

    return transform


def split_valid(checked: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(rows that passed every rule, typed; rows that failed at least one)."""
    valid = checked.where(F.size(FAILED_RULES) == 0).drop(FAILED_RULES, RAW)
    bad = checked.where(F.size(FAILED_RULES) > 0)
    return valid, bad


def to_quarantine(bad: DataFrame, date_column: str | None, job_run_id: str) -> DataFrame:
    """Quarantine rows: partition date, the original row as JSON, rules failed, run id.

    The JSON keeps null fields, so the row is exactly what bronze held (values that failed
    a `type` rule included, as their original text).
    """
    data_cols = [c for c in bad.columns if c not in (FAILED_RULES, RAW)]
    original = F.col(RAW) if RAW in bad.columns else F.struct(*[F.col(c) for c in data_cols])
    date = F.col(date_column) if date_column else F.lit(None).cast("date")
    return bad.select(
        date.alias(date_column or "date"),
        F.to_json(original, {"ignoreNullFields": "false"}).alias("row"),
        F.col(FAILED_RULES),
        F.lit(job_run_id).alias("job_run_id"),
    )
