"""validate: bronze partitions -> silver (typed, deduplicated) + quarantine (with reasons).

Two phases (`mlops_spark.validation.plan`): every table is checked first, and any failure
raises before anything is written; then silver and quarantine are written, and a failed
write undoes this run's earlier commits.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from mlops_spark.config import AppConfig, TableValidation
from mlops_spark.errors import ConfigError
from mlops_spark.jobs.args import JobArgs
from mlops_spark.results import ValidateResult
from mlops_spark.runtime import JobContext, JobRun, run_job
from mlops_spark.validation.plan import TablePlan, plan_table, summary_lines, write_plans


def validate(
    config: AppConfig, args: JobArgs = JobArgs(), spark: SparkSession | None = None
) -> JobRun[ValidateResult]:
    """Check bronze against the configured expectations and write silver and quarantine.

    By default only bronze partitions not yet validated (in neither silver nor quarantine)
    are checked; --date or --from/--to re-validate a range. A partition whose bad-row share
    is above the table's ``max_bad_share`` (or that is empty, or breaks a row-count or
    freshness rule), a schema change the policy does not allow, or unreadable bronze data
    fails the job before anything is written.
    """
    unknown = sorted(set(config.validation.tables) - set(config.source.tables))
    if unknown:
        raise ConfigError(
            f"validation.tables: {', '.join(map(repr, unknown))} is not a source table "
            f"(source.tables has: {', '.join(config.source.tables) or 'none'}); its rules would never run"
        )

    def body(ctx: JobContext) -> ValidateResult:
        plans: list[TablePlan] = []
        try:
            for table in config.source.tables:
                policy = config.validation.tables.get(table, TableValidation())
                plan = plan_table(ctx, table, policy, args.date_range, args.date or args.end)
                if plan is not None:
                    plans.append(plan)
            write_plans(ctx, plans)
        finally:
            for plan in plans:
                plan.checked.unpersist()
        for plan in plans:
            ctx.rows_read += plan.counts.read
            for line in summary_lines(plan):
                ctx.say(line)
        return ValidateResult(
            rows={p.table: p.counts for p in plans}, rule_counts={p.table: p.rule_counts for p in plans}
        )

    return run_job("validate", config, args.as_dict(), body, spark)
