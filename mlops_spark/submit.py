"""The logic behind ``spark-submit.sh``: submit a job to any Spark master.

    spark-submit.sh <job> [submit options] [-- job arguments]

1. The job arguments (``--conf``, ``--env``, ``--set``, dates...) are checked with the job's
   own parser and its config is loaded: a bad argument or config fails here (exit 2).
2. The job's Spark resources are ``resources.defaults`` < ``resources.jobs.<job>`` < flags.
3. The master and, for jobs that use MLflow, the tracking server must answer (else exit 1),
   so nothing starts and nothing is written against a dead endpoint.
4. mlops_spark is built as a wheel (cached by a hash of its sources) and shipped to the
   driver and executors with ``--py-files``, so executors never need the driver's files.
5. ``$SPARK_HOME/bin/spark-submit jobs/<job>.py`` runs with Delta's jars (``--jars`` from the
   local cache when present, else ``--packages``), the config files (``--files``) and the
   job arguments; ``--dry-run`` prints that exact command instead.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from mlops_spark.config import AppConfig, JobResources, config_layers, load_config
from mlops_spark.errors import ConfigError, JobFailed, MlopsError, UsageError
from mlops_spark.session import (
    DELTA_CATALOG,
    DELTA_EXTENSION,
    DELTA_TRANSITIVE_EXCLUDES,
    cached_jars,
    delta_maven_coordinate,
    local_defaults,
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


# --------------------------------------------------------------------------- the package


def repo_root() -> Path:
    """The checkout that holds jobs/ and the package (spark-submit.sh sets MLOPS_SPARK_ROOT)."""
    env = os.environ.get("MLOPS_SPARK_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[1]


def available_jobs(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "jobs").glob("*.py") if not p.name.startswith("_"))


def source_digest(root: Path) -> str:
    """A hash of everything that goes into the package: rebuild only when it changes."""
    digest = hashlib.sha256()
    files = [root / "setup.py", *sorted((root / PACKAGE).rglob("*"))]
    for path in files:
        if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_dir(root: Path) -> Path:
    return Path(os.environ.get("MLOPS_SPARK_BUILD_DIR", root / ".cache" / "spark-submit"))


def package_path(root: Path, out: Path | None = None) -> Path:
    """Where the package of the current sources is (or will be) kept.

    Spark puts only .zip/.egg/.py files on the Python path, so the wheel is shipped under a
    .zip name (a pure-Python wheel is a zip of the importable package)."""
    digest = source_digest(root)[:16]
    return (out or build_dir(root)) / digest / f"{PACKAGE}-{digest}.zip"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_package(root: Path, out: Path | None = None, keep: int = 3) -> tuple[Path, bool]:
    """Build mlops_spark's wheel with pip unless the current sources were built already.

    Returns the .zip to ship and whether it was built now (False: from the cache)."""
    target = package_path(root, out)
    base = target.parent.parent
    if target.exists():
        return target, False
    with _locked(base / ".lock"):
        if target.exists():
            return target, False
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
        try:
            pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet"]
            if _can_build_offline():
                pip.append("--no-build-isolation")
            done = subprocess.run(
                [*pip, "--wheel-dir", str(work), str(root)],
                capture_output=True,
                text=True,
                timeout=600,
            )
            wheels = list(work.glob("*.whl"))
            if done.returncode != 0 or len(wheels) != 1:
                tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
                raise JobFailed(f"building the {PACKAGE} wheel with pip failed:\n{tail}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                if f"{PACKAGE}/__init__.py" not in wheel.namelist():
                    raise JobFailed(f"the built wheel {wheels[0].name} does not contain {PACKAGE}/")
            shutil.copy2(wheels[0], work / target.name)
            os.replace(work, target.parent)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        _prune(base, keep)
    return target, True


def _can_build_offline() -> bool:
    """setuptools can build wheels without downloading anything (bdist_wheel built in since
    setuptools 70.1, or the `wheel` package installed); else pip builds in isolation."""
    from importlib import metadata

    try:
        major, minor = (int(x) for x in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    if (major, minor) >= (70, 1):
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return True


def _prune(base: Path, keep: int) -> None:
    builds = sorted(
        (p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- checks


def check_master(master: str, timeout: float = 5.0) -> None:
    """A standalone master must accept connections (any of a comma-separated HA list)."""
    if master_kind(master) != "standalone":
        return
    hosts = master.removeprefix("spark://").split(",")
    reasons = []
    for host_port in hosts:
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"bad master URL {master!r} (expected spark://host:port)")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except OSError as exc:
            reasons.append(f"{host_port}: {exc.strerror or exc}")
    raise JobFailed(
        f"Spark master {master} is unreachable ({'; '.join(reasons)}); start it "
        "(scripts/local-cluster.sh start for a local one) or fix --master / $SPARK_MASTER"
    )


def tracking_uri(config: AppConfig) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or config.mlflow.tracking_uri


def check_tracking_server(job: str, config: AppConfig) -> None:
    uri = tracking_uri(config)
    if job in JOBS_WITHOUT_MLFLOW or not uri.startswith(("http://", "https://")):
        return
    from mlops_spark.registry import check_server

    check_server(uri)


def cluster_warnings(config: AppConfig, kind: MasterKind) -> list[str]:
    """Settings that only work while every worker shares this machine's disks."""
    if kind == "local":
        return []
    notes = []
    if "://" not in config.lake.root:
        notes.append(
            f"lake.root {config.lake.root} is a local path: every worker must see it at the same path "
            "(a shared mount), else use hdfs://, s3a://, abfss://..."
        )
    if not tracking_uri(config).startswith(("http://", "https://", "databricks")):
        notes.append(f"MLflow store {tracking_uri(config)} is local to this machine: use an MLflow server")
    return notes


# --------------------------------------------------------------------------- the command


def spark_home(opts: SubmitOptions) -> Path:
    if opts.spark_home:
        return Path(opts.spark_home)
    if os.environ.get("SPARK_HOME"):
        return Path(os.environ["SPARK_HOME"])
    import pyspark

    return Path(pyspark.__file__).parent


def build_command(
    opts: SubmitOptions, job_config: JobConfig, root: Path, package: Path, home: Path
) -> tuple[list[str], list[str]]:
    """The spark-submit command line, and notes for the user."""
    config = job_config.config
    master = opts.master or os.environ.get("SPARK_MASTER") or config.spark.master
    kind = master_kind(master)
    if opts.deploy_mode != "client":
        raise UsageError(
            f"{PROG}: --deploy-mode {opts.deploy_mode} is not supported: jobs run their driver where "
            "they are submitted (client mode), reading the config files and the tracking URI there"
        )
    res = job_resources(config, opts.job, opts.resources, available_jobs(root))
    res_flags, notes = resource_flags(res, kind)
    shared = local_defaults(config.spark)
    session = {k: shared[k] for k in SHARED_SESSION_SETTINGS if k in shared}
    log4j = root / PACKAGE / "log4j2.properties"
    if log4j.exists():
        session["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile=file:{log4j}"
    driver_python = sys.executable
    executor_python = opts.python or os.environ.get("PYSPARK_PYTHON") or driver_python
    session["spark.pyspark.driver.python"] = driver_python
    session["spark.pyspark.python"] = executor_python
    settings = {**session, **config.spark.conf, **res.conf}

    cmd = [
        str(home / "bin" / "spark-submit"),
        "--master",
        master,
        "--deploy-mode",
        "client",
        "--name",
        opts.name or f"mlops-spark-{opts.job}",
        *res_flags,
        *delta_flags(config, opts.use_jar_cache),
    ]
    for key, value in {**settings, **opts.spark_conf}.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd += ["--py-files", str(package), "--files", ",".join(str(f) for f in job_config.files)]
    job_args = list(opts.job_args)
    if res.shuffle_partitions and res.shuffle_partitions != config.spark.shuffle_partitions:
        # the session re-applies spark.shuffle_partitions at start: keep it equal to the flag
        job_args += ["--set", f"spark.shuffle_partitions={res.shuffle_partitions}"]
    cmd += [str(root / "jobs" / f"{opts.job}.py"), *job_args]
    return cmd, notes + cluster_warnings(config, kind)


def child_environment(root: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["SPARK_HOME"] = str(home)
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a job's log is not a terminal
    # spark-submit.sh put the checkout on PYTHONPATH to run this module; the job must import
    # the shipped package instead, exactly as the executors do.
    kept = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != root]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    else:
        env.pop("PYTHONPATH", None)
    return env


def say(line: str) -> None:
    print(f"[{PROG}] {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    root = repo_root()
    jobs = available_jobs(root)
    try:
        opts = parse_args(argv, jobs)
        job_config = load_job_config(opts.job, opts.job_args)
        home = spark_home(opts)
        package = package_path(root)
        cmd, notes = build_command(opts, job_config, root, package, home)
        if not (home / "bin" / "spark-submit").exists():
            raise UsageError(f"{home}/bin/spark-submit not found: fix --spark-home or $SPARK_HOME")
    except UsageError as exc:
        print(f"{PROG}: error: {str(exc).removeprefix(PROG + ': ')}", file=sys.stderr)
        return 2
    for note in notes:
        say(f"note: {note}")
    if opts.dry_run:
        if not package.exists():
            say(f"dry run: {package.name} is not built yet (a real run builds it)")
        print(shlex.join(cmd))
        return 0
    master = cmd[cmd.index("--master") + 1]
    try:
        check_master(master)
        check_tracking_server(opts.job, job_config.config)
        package, built = build_package(root)
    except MlopsError as exc:
        print(f"{PROG}: failed: {exc}", file=sys.stderr)
        return 1
    say(f"{'built' if built else 'cached'} package {package}")
    say(f"$ {shlex.join(cmd)}")
    env = child_environment(root, home)
    os.execve(cmd[0], cmd, env)
    return 1  # not reached: exec replaced this process


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
