"""The one SparkSession factory.

* Local (plain ``python`` / ``mlops-spark``): starts Spark with the configured master,
  Delta Lake's SQL extension and catalog, Delta's jar resolved from Maven Central through
  ``spark.jars.packages`` (cached by Ivy under ~/.ivy2*), and defaults sized for a small
  machine.
* Under spark-submit, a notebook or any process that already has a Spark context: the
  cluster's settings win. Only runtime SQL settings (shuffle partitions, extra conf) are
  applied; master, memory and jars are left alone, as spark-submit set them.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib import metadata
from pathlib import Path

from pyspark.sql import SparkSession

from mlops_spark.config import SparkConfig
from mlops_spark.errors import SPARK_ERRORS, describe_error

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

# Delta's POM pulls older copies of jars that Spark already ships (Hadoop client, Jackson,
# Parquet, log4j...). Putting both on the classpath invites NoSuchMethodError at run time,
# so only Delta's own artifacts are taken from Maven; the rest come from Spark.
DELTA_TRANSITIVE_EXCLUDES = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.datatype:jackson-datatype-jdk8",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims",
    "commons-logging:commons-logging",
)

_LOG4J = Path(__file__).with_name("log4j2.properties")
_QUIET_CDS = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
"""The JVM's class-data-sharing messages (classes it skips, a stale archive) stay out of job logs."""


def delta_maven_coordinate() -> str:
    """``io.delta:delta-spark_<spark major.minor>_2.13:<delta-spark version>``."""
    import pyspark

    spark_mm = ".".join(pyspark.__version__.split(".")[:2])
    delta_version = metadata.version("delta-spark")
    return f"io.delta:delta-spark_{spark_mm}_2.13:{delta_version}"


def inside_spark_submit() -> bool:
    """True when a JVM was started for us (spark-submit, pyspark shell, notebooks)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def delta_submit_conf(config: SparkConfig) -> dict[str, str]:
    """The settings that turn Delta on; spark-submit.sh passes the same ones as --conf."""
    return {
        "spark.jars.packages": config.delta_package or delta_maven_coordinate(),
        "spark.jars.excludes": ",".join(DELTA_TRANSITIVE_EXCLUDES),
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
    }


def jars_cache_dir(coordinate: str) -> Path:
    """Where the resolved jars of one Maven coordinate are kept between runs."""
    base = Path(os.environ.get("MLOPS_SPARK_JARS_CACHE", Path.home() / ".cache" / "mlops-spark" / "jars"))
    return base / coordinate.replace(":", "_")


def cached_jars(coordinate: str) -> list[str] | None:
    """The cached jar paths, when a previous run resolved them; else None."""
    manifest = jars_cache_dir(coordinate) / "MANIFEST"
    if not manifest.exists():
        return None
    jars = [line for line in manifest.read_text().splitlines() if line]
    return jars if jars and all(Path(j).exists() for j in jars) else None


def remember_jars(coordinate: str, spark: SparkSession) -> None:
    """Copy the jars Ivy just resolved into the cache, so later starts skip resolution
    (Ivy re-checks Maven Central on every start; a cached list starts ~2-5 s faster)."""
    import shutil

    urls = spark.sparkContext.getConf().get("spark.jars", "") or ""
    paths = [u.removeprefix("file://") for u in urls.split(",") if u.endswith(".jar")]
    if not paths or not all(Path(p).exists() for p in paths):
        return
    target = jars_cache_dir(coordinate)
    target.mkdir(parents=True, exist_ok=True)
    kept = []
    for path in paths:
        dest = target / Path(path).name
        if not dest.exists():
            shutil.copy2(path, dest)
        kept.append(str(dest))
    (target / "MANIFEST").write_text("\n".join(kept) + "\n")


def local_defaults(config: SparkConfig) -> dict[str, str]:
    """Settings for a small machine; every one can be overridden by ``spark.conf``."""
    defaults = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(config.shuffle_partitions),
        "spark.default.parallelism": str(config.shuffle_partitions),
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.memory": config.driver_memory,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.debug.maxToStringFields": "500",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.databricks.delta.properties.defaults.checkpointInterval": "20",
    }
    if opts := driver_java_options(config):
        defaults["spark.driver.extraJavaOptions"] = " ".join(opts)
    if config.master.startswith("local"):
        # This machine's hostname resolves to loopback; bind there instead of guessing.
        defaults["spark.driver.host"] = "127.0.0.1"
        defaults["spark.driver.bindAddress"] = "127.0.0.1"
    return defaults


def driver_java_options(config: SparkConfig, archive: bool = True) -> list[str]:
    """The driver JVM's options: the log4j config; in local mode (where the driver is also
    the only executor) the JIT mode and the class-data-sharing archive, when one exists."""
    opts = [f"-Dlog4j2.configurationFile=file:{_LOG4J}"] if _LOG4J.exists() else []
    if config.master.startswith("local"):
        if config.jit == "quick":
            opts.append("-XX:TieredStopAtLevel=1")
        jsa = class_archive()
        if archive and config.class_data_sharing and jsa.exists():
            # a stale archive (another JDK or Spark) is skipped by the JVM; say nothing of it
            opts += [f"-XX:SharedArchiveFile={jsa}", *_QUIET_CDS]
    if config.driver_java_options.strip():
        opts.append(config.driver_java_options.strip())
    return opts


def class_archive() -> Path:
    """The class-data-sharing archive of this Spark, JDK and venv (a JVM refuses an archive
    made by another JDK or for another class path, so each combination has its own)."""
    import hashlib

    import pyspark

    key = "|".join([pyspark.__version__, os.environ.get("JAVA_HOME", ""), sys.prefix, str(_LOG4J)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = jars_cache_dir(delta_maven_coordinate()).parent / "cds"
    return folder / f"spark-{pyspark.__version__}-{digest}.jsa"


def get_spark(config: SparkConfig | None = None, app_name: str | None = None) -> SparkSession:
    """Return the process's SparkSession with Delta enabled, creating it if needed."""
    config = config or SparkConfig()
    active = SparkSession.getActiveSession()
    if active is not None or inside_spark_submit():
        spark = active or SparkSession.builder.appName(app_name or config.app_name).getOrCreate()
        _apply_runtime_conf(spark, config)
        return spark

    # Python workers must run the interpreter that has this package and its stack (a venv),
    # not whatever `python3` comes first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    master = os.environ.get("MLOPS_SPARK_MASTER", config.master)
    builder = SparkSession.builder.appName(app_name or config.app_name).master(master)
    delta = delta_submit_conf(config)
    coordinate = delta["spark.jars.packages"]
    jars = cached_jars(coordinate)
    if jars:
        del delta["spark.jars.packages"], delta["spark.jars.excludes"]
        delta["spark.jars"] = ",".join(jars)
    settings = {**local_defaults(config), **delta, **config.conf}
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not jars:
        remember_jars(coordinate, spark)
    spark.sparkContext.setLogLevel(os.environ.get("MLOPS_SPARK_LOG_LEVEL", "WARN"))
    return spark


def _apply_runtime_conf(spark: SparkSession, config: SparkConfig) -> None:
    runtime = {"spark.sql.shuffle.partitions": str(config.shuffle_partitions), **config.conf}
    for key, value in runtime.items():
        try:
            if spark.conf.isModifiable(key):
                spark.conf.set(key, value)
            else:
                log.info("spark conf %s is fixed once Spark runs (set by spark-submit); kept as it is", key)
        except SPARK_ERRORS as exc:
            log.warning("spark conf %s=%s not applied: %s", key, value, describe_error(exc))


def _archive_classes() -> None:
    """``python -m mlops_spark.session --archive-classes``: run a small job that loads what
    every job loads (Spark SQL, Delta's log and writer, MLlib, Arrow) with the JVM told to
    write the classes it loaded to an archive at exit; later local starts map it instead of
    loading and verifying those classes again (bootstrap runs this once)."""
    import tempfile

    target = class_archive()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    config = SparkConfig(master="local[1]", shuffle_partitions=1)
    opts = [*driver_java_options(config, archive=False), f"-XX:ArchiveClassesAtExit={partial}", *_QUIET_CDS]
    config = config.model_copy(update={"conf": {"spark.driver.extraJavaOptions": " ".join(opts)}})
    spark = get_spark(config, app_name="mlops-spark-archive-classes")
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    with tempfile.TemporaryDirectory() as work:
        df = spark.range(200).selectExpr("id", "CAST(id % 2 AS DOUBLE) AS label", "DATE'2024-01-01' AS date")
        df.write.format("delta").partitionBy("date").save(f"{work}/t")
        back = spark.read.format("delta").load(f"{work}/t")
        back.groupBy("date").count().toPandas()
        features = VectorAssembler(inputCols=["id"], outputCol="features").transform(back)
        LogisticRegression(maxIter=2).fit(features)
    spark.stop()
    # the JVM writes the archive as it exits, after this process lets it go
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        proc = getattr(gateway, "proc", None)
        if proc is not None:
            proc.stdin.close()
            proc.wait(timeout=300)
    if partial.exists():
        partial.replace(target)
        print(f"class-data-sharing archive: {target} ({target.stat().st_size // 2**20} MiB)")
    else:
        print("the JVM wrote no class-data-sharing archive; jobs start without one")


def _resolve_jars() -> None:
    """``python -m mlops_spark.session --resolve-jars``: warm Ivy's cache (bootstrap)."""
    spark = get_spark(SparkConfig(master="local[1]"), app_name="mlops-spark-resolve-jars")
    spark.range(1).write.format("delta").mode("overwrite").save(
        str(Path(os.environ.get("TMPDIR", "/tmp")) / "mlops-spark-delta-check")
    )
    spark.stop()


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--resolve-jars"]:
        _resolve_jars()
    elif sys.argv[1:] == ["--archive-classes"]:
        _archive_classes()
