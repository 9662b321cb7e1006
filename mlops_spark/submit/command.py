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

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from mlops_spark.errors import MlopsError, UsageError
from mlops_spark.session import local_defaults
from mlops_spark.submit.checks import check_master, check_tracking_server, cluster_warnings
from mlops_spark.submit.flags import (
    PACKAGE,
    PROG,
    SHARED_SESSION_SETTINGS,
    JobConfig,
    SubmitOptions,
    delta_flags,
    job_resources,
    load_job_config,
    master_kind,
    parse_args,
    resource_flags,
)
from mlops_spark.submit.packaging import available_jobs, build_package, package_path, repo_root

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
