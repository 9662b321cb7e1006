"""The session factory's JVM options: JIT mode and the class-data-sharing archive (local mode)."""

from __future__ import annotations

from pyspark.sql import SparkSession

from mlops_spark.config import SparkConfig
from mlops_spark.session import class_archive, driver_java_options


def test_local_driver_options_follow_the_config() -> None:
    default = driver_java_options(SparkConfig(master="local[2]"))
    log4j = default[0]
    assert log4j.startswith("-Dlog4j2.configurationFile=file:")
    assert (f"-XX:SharedArchiveFile={class_archive()}" in default) == class_archive().exists()
    assert "-XX:TieredStopAtLevel=1" not in default
    quick = driver_java_options(
        SparkConfig(master="local[2]", jit="quick", class_data_sharing=False, driver_java_options="-Xss4m")
    )
    assert quick == [log4j, "-XX:TieredStopAtLevel=1", "-Xss4m"]
    # a cluster's driver keeps the JVM's own defaults (only the log4j config)
    assert driver_java_options(SparkConfig(master="spark://127.0.0.1:7077", jit="quick")) == [log4j]


def test_the_session_jvm_starts_from_the_archive(spark: SparkSession) -> None:
    """bootstrap made the archive, and this test session's JVM was started with it."""
    assert class_archive().exists(), "bootstrap writes it: python -m mlops_spark.session --archive-classes"
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={class_archive()}" in args
    assert "sharing" in jvm.java.lang.System.getProperty("java.vm.info")
