"""`mlops-spark <job>`: argument parsing only, then a job function.

Exit codes: 0 done (or nothing to do), 1 the job failed, 2 bad usage or config,
3 ``monitor --fail-on-alert`` found an alert on the newest partition it monitored.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mlops_spark import logs
from mlops_spark.errors import MlopsError, UsageError, root_cause

if TYPE_CHECKING:
    from mlops_spark.config import AppConfig

DEFAULT_CONF = "conf/flights.yml"

JOBS: dict[str, str] = {
    "ingest": "Land the source's tables in bronze Delta tables (--date plays back one day).",
    "validate": "Check bronze partitions against expectations; write silver and quarantine.",
    "features": "Compute the feature table for new silver partitions (point-in-time joins).",
    "train": "Fit the model on the train range, log to MLflow, register it as @challenger.",
    "promote": "Gate @challenger against @champion on the holdout; move @champion if it wins.",
    "score": "Score feature partitions not yet scored by the model; write predictions.",
    "monitor": "Drift, realised quality and canary metrics per scored partition; HTML report.",
    "retrain": "Retrain and run the gate when monitoring says so (else: nothing to do).",
    "train_segmented": "Fit one scikit-learn model per segment in parallel; register them as one model.",
    "promote_segmented": "The promotion gate for the segmented model.",
    "score_segmented": "Score new partitions with the segmented model (Arrow batches).",
    "pipeline": "Run ingest -> validate -> features -> train -> promote -> score -> monitor -> retrain.",
}

ENV_OVERRIDES = {"MLFLOW_TRACKING_URI": "mlflow.tracking_uri", "MLOPS_SPARK_MASTER": "spark.master"}
"""Environment variables that win over a config key at run time (--print-config says so)."""

STATUS_HELP = "The latest job runs from the jobs audit table; a run whose process died shows as lost."
STATUS_DETAIL = """\
A run is 'running' from its start (ops/job_starts) until it records its outcome (ops/jobs).
When its process is gone from this host before that, it shows as 'lost', with the run id
and each table's version committed since it started. Runs started on other hosts cannot
be checked from here.
"""

EPILOG = """\
Every job reads its settings from a use-case YAML file layered as
  <conf dir>/base.yml < --conf FILE < <conf dir>/<env>.yml < --set / --set-replace
records its start in <lake.root>/ops/job_starts and its outcome as its one row in the
jobs audit table <lake.root>/ops/jobs ('mlops-spark status' shows a run whose process
died before its outcome as 'lost').
Overrides apply in command-line order; values are YAML. Mappings merge key by key,
lists and scalars replace:
  --set model.params={maxIter: 50}          maxIter becomes 50, the file's other params stay
  --set-replace model.params={maxIter: 50}  model.params is exactly {maxIter: 50}
Exit codes: 0 done or nothing to do, 1 job failed, 2 bad usage or config,
3 monitor --fail-on-alert: the newest monitored partition has an alert.
Example: mlops-spark pipeline --conf conf/flights.yml --env local
"""


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


class _AppendOverride(argparse.Action):
    """--set and --set-replace share one list, so overrides apply in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        from mlops_spark.config import Override

        items = list(getattr(namespace, self.dest, None) or [])
        items.append(Override(str(values), replace=option_string == "--set-replace"))
        setattr(namespace, self.dest, items)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


def _config_arguments(p: argparse.ArgumentParser) -> None:
    """--conf, --env, --set and --set-replace: what every command's config is made of."""
    p.add_argument(
        "--conf",
        default=os.environ.get("MLOPS_SPARK_CONF", DEFAULT_CONF),
        help=f"use-case config file (default: $MLOPS_SPARK_CONF or {DEFAULT_CONF})",
    )
    p.add_argument(
        "--env",
        default=os.environ.get("MLOPS_SPARK_ENV"),
        help="environment overlay: <conf dir>/<env>.yml, e.g. local or cluster",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action=_AppendOverride,
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one config value, merging a mapping into the one below (repeatable), "
        "e.g. --set model.params.maxIter=20",
    )
    p.add_argument(
        "--set-replace",
        dest="overrides",
        action=_AppendOverride,
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one config value whole, dropping what the layers below set there "
        "(repeatable), e.g. --set-replace 'model.params={maxIter: 20}'",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config, each value with the file or override that set it, and exit",
    )
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="the jobs' log on stderr (default: $MLOPS_LOG_LEVEL or INFO); "
        "Spark's own is $MLOPS_SPARK_LOG_LEVEL",
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text lines, or one JSON object per line with job and run_id "
        "(default: $MLOPS_LOG_FORMAT or text)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlops-spark",
        description="Production ML jobs on Apache Spark and Delta Lake, tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mlops-spark {_version()}")
    sub = parser.add_subparsers(dest="job", metavar="<job>", parser_class=_Parser)
    for job, help_text in JOBS.items():
        p = sub.add_parser(
            job,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _config_arguments(p)
        dates = p.add_argument_group("partitions")
        dates.add_argument("--date", type=_date, help="only this partition date (YYYY-MM-DD)")
        dates.add_argument("--from", dest="start", type=_date, help="first partition date of a range")
        dates.add_argument("--to", dest="end", type=_date, help="last partition date of a range")
        if job in ("train", "train_segmented"):
            p.add_argument(
                "--reproduce",
                metavar="RUN_ID",
                help="retrain from a run's recorded config and feature-table version",
            )
        if job == "retrain":
            p.add_argument("--dry-run", action="store_true", help="decide and report; move nothing")
        if job == "monitor":
            p.add_argument(
                "--fail-on-alert",
                action="store_true",
                help="exit 3 when the newest partition this run monitored has an alert (for schedulers)",
            )
        if job in ("promote", "promote_segmented"):
            g = p.add_mutually_exclusive_group()
            g.add_argument(
                "--to-version",
                type=_positive_int,
                metavar="N",
                help="roll @champion back (or forward) to version N",
            )
            g.add_argument(
                "--approve", type=_positive_int, metavar="N", help="approve pending version N (approval mode)"
            )
            g.add_argument(
                "--reject", type=_positive_int, metavar="N", help="reject pending version N (approval mode)"
            )
            p.add_argument("--dry-run", action="store_true", help="decide and report; move nothing")
            p.add_argument(
                "--approver", help="name recorded with --approve/--reject/--to-version (default: $USER)"
            )
        if job in ("score", "score_segmented", "pipeline"):
            p.add_argument(
                "--maintenance",
                action="store_true",
                help="OPTIMIZE and VACUUM the predictions table after scoring",
            )
        if job in ("score", "score_segmented"):
            g = p.add_mutually_exclusive_group()
            g.add_argument("--alias", help="score with the model at this alias (default: scoring.alias)")
            g.add_argument("--model-version", type=_positive_int, metavar="N", help="score with version N")
        if job == "score":
            p.add_argument(
                "--method",
                choices=["auto", "compiled", "transform", "arrow"],
                help="scoring path (default: scoring.method; same as --set scoring.method=...)",
            )
    p = sub.add_parser(
        "status",
        help=STATUS_HELP,
        description=f"{STATUS_HELP}\n\n{STATUS_DETAIL}",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_arguments(p)
    p.add_argument(
        "--limit", type=_positive_int, default=20, metavar="N", help="show the N latest runs (default: 20)"
    )
    return parser


def _status(config: AppConfig, limit: int) -> int:
    """`mlops-spark status`: the latest runs, lost ones with what was committed since."""
    from mlops_spark.catalog import Catalog
    from mlops_spark.runs import job_status, render_status

    print(render_status(job_status(config, limit), Catalog(config).jobs().path), flush=True)
    return 0


def _job_function(job: str) -> Callable[..., Any]:
    from mlops_spark import jobs as _  # noqa: F401 - import errors surface here, after parsing

    module = __import__(f"mlops_spark.jobs.{job}", fromlist=[job])
    return getattr(module, job)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    log = logging.getLogger(logs.LOGGER)
    try:
        logs.configure()  # $MLOPS_LOG_LEVEL / $MLOPS_LOG_FORMAT until the flags are parsed
        ns = parser.parse_args(argv)
        if not ns.job:
            parser.print_help()
            return 2
        logs.configure(ns.log_level, ns.log_format)
        from mlops_spark.config import load_config_with_origins, render_with_origins
        from mlops_spark.jobs.args import JobArgs

        overrides = list(ns.overrides)
        if getattr(ns, "method", None):
            overrides.append(f"scoring.method={ns.method}")
        config, origins = load_config_with_origins(ns.conf, ns.env, overrides)
        if ns.print_config:
            print(render_with_origins(config, origins), flush=True)
            for var, key in ENV_OVERRIDES.items():
                if os.environ.get(var):
                    print(f"# at run time ${var}={os.environ[var]} wins over {key}", flush=True)
            return 0
        if ns.job == "status":
            return _status(config, ns.limit)
        args = JobArgs(
            date=ns.date,
            start=ns.start,
            end=ns.end,
            reproduce=getattr(ns, "reproduce", None),
            to_version=getattr(ns, "to_version", None),
            approve=getattr(ns, "approve", None),
            reject=getattr(ns, "reject", None),
            dry_run=getattr(ns, "dry_run", False),
            model_version=getattr(ns, "model_version", None),
            alias=getattr(ns, "alias", None),
            approver=getattr(ns, "approver", None),
            maintenance=getattr(ns, "maintenance", False),
        )
    except UsageError as exc:
        log.error(f"mlops-spark: error: {exc}")
        return 2
    try:
        run = _job_function(ns.job)(config, args)
    except UsageError as exc:
        log.error(f"mlops-spark {ns.job}: error: {exc}")
        return 2
    except MlopsError as exc:
        log.error(f"mlops-spark {ns.job}: failed: {exc}")
        return 1
    except KeyboardInterrupt:
        log.error(f"mlops-spark {ns.job}: interrupted")
        return 130
    except Exception as exc:
        log.error(f"mlops-spark {ns.job}: failed: {root_cause(exc)}")
        return 1
    if getattr(ns, "fail_on_alert", False) and run.result.newest_alerts:
        result = run.result
        log.error(
            f"mlops-spark monitor: {result.newest_alerts} alert(s) on {result.newest} "
            "(--fail-on-alert: exit 3)"
        )
        return 3
    return 0


def _version() -> str:
    """This package's version and the stack's it runs on (read from the installed
    distributions: nothing is imported, no JVM starts)."""
    from importlib import metadata

    from mlops_spark import __version__

    stack = []
    for dist in ("pyspark", "delta-spark", "mlflow"):
        try:
            stack.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            stack.append(f"{dist} not installed")
    return f"{__version__} ({', '.join(stack)})"


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
