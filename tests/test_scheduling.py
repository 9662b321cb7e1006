"""The scheduling examples: the cron file is valid crontab and the Airflow DAG parses,
chains the jobs in order and submits entry points that exist. When an interpreter with
Airflow is available (this one, or $MLOPS_SPARK_AIRFLOW_PYTHON), the DAG is also loaded by
Airflow's own DagBag."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, child_environ

CRON = ROOT / "scheduling" / "cron.example"
DAG = ROOT / "scheduling" / "airflow_dag.py"
ORDER = ["ingest", "validate", "features", "score", "monitor", "retrain"]
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _field_ok(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            return False
        if base == "*":
            continue
        lo, _, hi = base.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return False
        if not low <= int(lo) <= high or (hi and not int(lo) <= int(hi) <= high):
            return False
    return True


def test_cron_example_is_valid_crontab_running_real_jobs() -> None:
    jobs = []
    for line in CRON.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, line
        for field, (low, high) in zip(fields[:5], RANGES, strict=True):
            assert _field_ok(field, low, high), (field, line)
        command = fields[5]
        assert "%" not in command.replace("\\%", ""), "unescaped % ends a cron command"
        words = shlex.split(command.replace("\\%", "%"))
        job = words[words.index(".venv/bin/mlops-spark") + 1]
        assert importlib.util.find_spec(f"mlops_spark.jobs.{job}") is not None, job
        jobs.append(job)
    assert {"pipeline", "monitor", "retrain"} <= set(jobs)


def _dag_calls() -> tuple[list[str], list[str]]:
    tree = ast.parse(DAG.read_text())
    jobs: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "JOBS" for t in node.targets
        ):
            jobs = [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    operators = [
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.endswith("Operator")
    ]
    return jobs, operators


def test_airflow_dag_parses_and_submits_existing_entry_points() -> None:
    jobs, operators = _dag_calls()
    assert jobs == ORDER
    assert operators == ["SparkSubmitOperator"]
    for job in jobs:
        assert (ROOT / "jobs" / f"{job}.py").exists(), f"jobs/{job}.py (spark-submit entry point) is missing"
        assert importlib.util.find_spec(f"mlops_spark.jobs.{job}") is not None


def _airflow_python() -> str | None:
    if importlib.util.find_spec("airflow") is not None:
        return sys.executable
    candidate = os.environ.get("MLOPS_SPARK_AIRFLOW_PYTHON")
    return candidate if candidate and Path(candidate).exists() else None


_LOAD = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("mlops_spark_flights")
print(json.dumps({
    "errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} if dag else None,
    "kinds": sorted({type(t).__name__ for t in dag.tasks}) if dag else None,
    "apps": sorted(t.application for t in dag.tasks) if dag else None,
}))
"""


def test_airflow_dagbag_imports_the_dag(tmp_path: Path) -> None:
    python = _airflow_python()
    if python is None:
        pytest.skip("Airflow is not installed here; set MLOPS_SPARK_AIRFLOW_PYTHON to a python that has it")
    env = {
        **child_environ(),
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MLOPS_SPARK_HOME": str(ROOT),
    }
    out = subprocess.run(
        [python, "-W", "ignore", "-c", _LOAD, str(DAG)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["kinds"] == ["SparkSubmitOperator"]
    expected = {job: ([ORDER[i - 1]] if i else []) for i, job in enumerate(ORDER)}
    assert result["tasks"] == expected
    assert result["apps"] == sorted(str(ROOT / "jobs" / f"{job}.py") for job in ORDER)
