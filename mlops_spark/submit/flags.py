"""spark-submit.sh's own options, the job's config, and the Spark flags they become."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from mlops_spark.config import AppConfig, JobResources, config_layers, load_config
from mlops_spark.errors import ConfigError, UsageError
from mlops_spark.session import (
    DELTA_CATALOG,
    DELTA_EXTENSION,
    DELTA_TRANSITIVE_EXCLUDES,
    cached_jars,
    delta_maven_coordinate,
)

MasterKind = Literal["local", "standalone", "yarn", "k8s"]

PROG = "spark-submit.sh"
PACKAGE = "mlops_spark"

# Jobs that never talk to MLflow: the tracking-server check is skipped for them.
JOBS_WITHOUT_MLFLOW = frozenset({"ingest", "validate", "features"})

# Session settings that change results or logs, carried from local mode to every master so
# a job computes the same thing wherever it runs (time zone above all).
SHARED_SESSION_SETTINGS = (
    "spark.sql.session.timeZone",
    "spark.sql.adaptive.enabled",
    "spark.sql.adaptive.coalescePartitions.enabled",
    "spark.sql.execution.arrow.pyspark.enabled",
    "spark.ui.showConsoleProgress",
    "spark.sql.debug.maxToStringFields",
    "spark.databricks.delta.schema.autoMerge.enabled",
    "spark.databricks.delta.properties.defaults.checkpointInterval",
)

EPILOG = """\
Job arguments go after `--` and are the job's own (see `mlops-spark <job> --help`):
  --conf FILE, --env NAME, --set KEY.PATH=VALUE, --date / --from --to, ...
Resources come from the config's `resources:` section (defaults, then per job), and the
flags above override them.

Examples:
  spark-submit.sh train --master spark://127.0.0.1:7077 -- --conf conf/flights.yml --env cluster
  spark-submit.sh score --master yarn --executor-memory 4g -- --env cluster --date 2013-06-01
  spark-submit.sh ingest --dry-run -- --conf conf/flights.yml --from 2013-01-01 --to 2013-01-07

Environment:
  SPARK_MASTER          default for --master (then spark.master from the config)
  SPARK_HOME            Spark to submit with (default: the installed pyspark)
  PYSPARK_PYTHON        default for --python (executors' Python)
  MLFLOW_TRACKING_URI   tracking server; wins over mlflow.tracking_uri
  MLOPS_SPARK_BUILD_DIR where built packages are cached (default: <repo>/.cache/spark-submit)

Exit codes: 0 done, 1 the job failed or a service is unreachable, 2 bad usage or config.
"""


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SubmitOptions:
    """What spark-submit.sh was asked to do."""

    job: str
    master: str | None = None
    deploy_mode: str = "client"
    name: str | None = None
    resources: JobResources = field(default_factory=JobResources)
    """Command-line resource flags (they win over the config's)."""
    spark_conf: dict[str, str] = field(default_factory=dict)
    python: str | None = None
    use_jar_cache: bool = True
    spark_home: str | None = None
    dry_run: bool = False
    job_args: tuple[str, ...] = ()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not KEY=VALUE. --conf before `--` is a Spark setting; the job's config "
            f"file goes after it: {PROG} <job> -- --conf {text}"
        )
    key, value = text.split("=", 1)
    return key.strip(), value


def build_parser(jobs: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        allow_abbrev=False,
        usage=f"{PROG} <job> [options] [-- job arguments]",
        description="Submit an mlops_spark job (jobs/<job>.py) to a Spark master with spark-submit.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("job", choices=list(jobs), metavar="<job>", help="one of: " + ", ".join(jobs))
    where = parser.add_argument_group("where")
    where.add_argument(
        "--master",
        help="local[*] | spark://host:port | yarn | k8s://https://host:port "
        "(default: $SPARK_MASTER, else spark.master from the config)",
    )
    where.add_argument(
        "--deploy-mode",
        default="client",
        choices=["client", "cluster"],
        help="only 'client': the driver runs here and reads the config files here",
    )
    where.add_argument("--name", help="application name (default: mlops-spark-<job>)")
    where.add_argument("--spark-home", help="Spark installation (default: $SPARK_HOME, else pyspark's)")
    where.add_argument(
        "--python", help="Python on the executors (default: $PYSPARK_PYTHON, else this Python)"
    )
    res = parser.add_argument_group("resources (override the config's resources: section)")
    res.add_argument("--driver-memory", metavar="MEM", help="e.g. 2g")
    res.add_argument("--executor-memory", metavar="MEM", help="e.g. 4g")
    res.add_argument("--executor-cores", type=int, metavar="N")
    res.add_argument(
        "--executors",
        "--num-executors",
        dest="executors",
        type=int,
        metavar="N",
        help="executors to start (YARN/K8s; standalone: caps cores at N x executor cores)",
    )
    res.add_argument(
        "--dynamic-allocation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="scale executors with the load (with shuffle tracking)",
    )
    res.add_argument("--min-executors", type=int, metavar="N")
    res.add_argument("--max-executors", type=int, metavar="N")
    res.add_argument("--shuffle-partitions", type=int, metavar="N", help="spark.sql.shuffle.partitions")
    res.add_argument(
        "--conf",
        dest="spark_conf",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="any Spark setting (repeatable); wins over everything else",
    )
    how = parser.add_argument_group("how")
    how.add_argument(
        "--no-jar-cache",
        dest="use_jar_cache",
        action="store_false",
        help="resolve Delta from Maven (--packages) even when its jars are cached locally",
    )
    how.add_argument("--dry-run", action="store_true", help="print the spark-submit command; run nothing")
    return parser


def parse_args(argv: Sequence[str], jobs: Sequence[str]) -> SubmitOptions:
    """Split ``argv`` at the first ``--``: submit options before, job arguments after."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = build_parser(jobs).parse_args(argv[:cut])
    try:
        resources = JobResources(
            driver_memory=ns.driver_memory,
            executor_memory=ns.executor_memory,
            executor_cores=ns.executor_cores,
            executors=ns.executors,
            dynamic_allocation=ns.dynamic_allocation,
            min_executors=ns.min_executors,
            max_executors=ns.max_executors,
            shuffle_partitions=ns.shuffle_partitions,
        )
    except ValidationError as exc:
        detail = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise UsageError(f"bad resource flag: {detail}") from None
    return SubmitOptions(
        job=ns.job,
        master=ns.master,
        deploy_mode=ns.deploy_mode,
        name=ns.name,
        resources=resources,
        spark_conf=dict(ns.spark_conf),
        python=ns.python,
        use_jar_cache=ns.use_jar_cache,
        spark_home=ns.spark_home,
        dry_run=ns.dry_run,
        job_args=tuple(argv[cut + 1 :]),
    )


# --------------------------------------------------------------------------- the job's config


@dataclass(frozen=True)
class JobConfig:
    config: AppConfig
    files: tuple[Path, ...]
    """The YAML files the config was layered from (shipped with --files)."""


def load_job_config(job: str, job_args: Sequence[str]) -> JobConfig:
    """Check the job arguments with the job's own parser and load its config (exit 2 early)."""
    from mlops_spark.cli import build_parser as job_parser

    ns = job_parser().parse_args([job, *job_args])
    config = load_config(ns.conf, ns.env, ns.overrides)
    files = tuple(p.resolve() for p in config_layers(ns.conf, ns.env))
    return JobConfig(config, files)


def master_kind(master: str) -> MasterKind:
    if master == "local" or master.startswith(("local[", "local-cluster[")):
        return "local"
    if master.startswith("spark://"):
        return "standalone"
    if master == "yarn":
        return "yarn"
    if master.startswith("k8s://"):
        return "k8s"
    raise UsageError(
        f"{PROG}: unknown master {master!r} (expected local[*], spark://host:port, yarn or k8s://...)"
    )


def job_resources(config: AppConfig, job: str, flags: JobResources, jobs: Sequence[str]) -> JobResources:
    """resources.defaults < resources.jobs.<job> < command-line flags, with the driver memory
    and shuffle partitions falling back to the spark section (as in local mode)."""
    unknown = sorted(set(config.resources.jobs) - set(jobs))
    if unknown:
        raise ConfigError(f"resources.jobs.{unknown[0]}: no such job (jobs: {', '.join(jobs)})")
    res = config.resources.for_job(job).overlaid(flags)
    fallback = JobResources(
        driver_memory=config.spark.driver_memory, shuffle_partitions=config.spark.shuffle_partitions
    )
    return fallback.overlaid(res)


def resource_flags(res: JobResources, kind: MasterKind) -> tuple[list[str], list[str]]:
    """spark-submit flags for the resources, and notes about settings the master ignores."""
    flags: list[str] = []
    notes: list[str] = []
    if res.driver_memory:
        flags += ["--driver-memory", res.driver_memory]
    if kind == "local":
        ignored = [n for n in ("executor_memory", "executor_cores", "executors") if getattr(res, n)]
        if ignored:
            notes.append(f"local master: {', '.join(ignored)} do not apply (the driver is the executor)")
    else:
        if res.executor_memory:
            flags += ["--executor-memory", res.executor_memory]
        if res.executor_cores:
            flags += ["--executor-cores", str(res.executor_cores)]
        dynamic = bool(res.dynamic_allocation)
        if kind == "standalone":
            count = res.max_executors if dynamic else res.executors
            if count and res.executor_cores:
                flags += ["--total-executor-cores", str(count * res.executor_cores)]
            elif count:
                notes.append("standalone master: executors are capped only when executor_cores is set")
        elif res.executors:
            flags += ["--num-executors", str(res.executors)]
        if res.dynamic_allocation is not None:
            flags += ["--conf", f"spark.dynamicAllocation.enabled={str(dynamic).lower()}"]
        if dynamic:
            flags += ["--conf", "spark.dynamicAllocation.shuffleTracking.enabled=true"]
            if res.min_executors is not None:
                flags += ["--conf", f"spark.dynamicAllocation.minExecutors={res.min_executors}"]
            if res.max_executors is not None:
                flags += ["--conf", f"spark.dynamicAllocation.maxExecutors={res.max_executors}"]
    if res.shuffle_partitions:
        flags += ["--conf", f"spark.sql.shuffle.partitions={res.shuffle_partitions}"]
    return flags, notes


def delta_flags(config: AppConfig, use_cache: bool) -> list[str]:
    """Delta's jars (cached copies when present: faster and offline) and its SQL settings."""
    coordinate = config.spark.delta_package or delta_maven_coordinate()
    jars = cached_jars(coordinate) if use_cache else None
    if jars:
        flags = ["--jars", ",".join(jars)]
    else:
        excludes = ",".join(DELTA_TRANSITIVE_EXCLUDES)
        flags = ["--packages", coordinate, "--exclude-packages", excludes]
    return [
        *flags,
        "--conf",
        f"spark.sql.extensions={DELTA_EXTENSION}",
        "--conf",
        f"spark.sql.catalog.spark_catalog={DELTA_CATALOG}",
    ]
