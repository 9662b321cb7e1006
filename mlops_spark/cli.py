"""`mlops-spark <job>`: argument parsing only, then a job function.

Exit codes: 0 done (or nothing to do), 1 the job failed, 2 bad usage or config.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

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
Exit codes: 0 done or nothing to do, 1 job failed, 2 bad usage or config.
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlops-spark",
        description="Production ML jobs on Apache Spark and Delta Lake, tracked in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    try:
        ns = parser.parse_args(argv)
        if not ns.job:
            parser.print_help()
            return 2
        from mlops_spark.config import load_config
        from mlops_spark.jobs.args import JobArgs

        overrides = list(ns.overrides)
        if getattr(ns, "method", None):
            overrides.append(f"scoring.method={ns.method}")
        config = load_config(ns.conf, ns.env, overrides)
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
        print(f"mlops-spark: error: {exc}", file=sys.stderr)
        return 2
    try:
        _job_function(ns.job)(config, args)
    except UsageError as exc:
        print(f"mlops-spark {ns.job}: error: {exc}", file=sys.stderr)
        return 2
    except MlopsError as exc:
        print(f"mlops-spark {ns.job}: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mlops-spark {ns.job}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"mlops-spark {ns.job}: failed: {root_cause(exc)}", file=sys.stderr)
        return 1
    return 0


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
