# Databricks notebook source
# MAGIC %md
# MAGIC # 01 · Explore the data
# MAGIC
# MAGIC Plays back the chosen days of the use case's source into bronze, validates them into
# MAGIC silver (bad rows go to quarantine with the rules they failed) and builds the feature
# MAGIC table, then looks at what landed: rows per day, the label rate, why rows were
# MAGIC quarantined and how the features are distributed.
# MAGIC
# MAGIC Every step is a job function from `mlops_spark.jobs`, the same code the CLI and
# MAGIC `spark-submit.sh` run. Widgets: `conf`, `env`, `sets` (config overrides), `from`/`to`
# MAGIC (days to play back), `output_dir` (charts and tables). Locally the widgets are the
# MAGIC environment variables `MLOPS_NB_<NAME>`:
# MAGIC `MLOPS_NB_FROM=2013-01-01 MLOPS_NB_TO=2013-01-14 python notebooks/01_explore_data.py`.

# COMMAND ----------

from notebook_support import notebook_context, save_figure, show

from mlops_spark import lake
from mlops_spark.catalog import Catalog
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.features import features
from mlops_spark.jobs.ingest import ingest
from mlops_spark.jobs.validate import validate
from mlops_spark.validation import FAILED_RULES

ctx = notebook_context()
config, spark = ctx.config, ctx.spark
print(f"use case {config.project}: lake {config.lake.root}, days {ctx.start}..{ctx.end}")

# COMMAND ----------

# MAGIC %md ## Land, validate and featurise the chosen days (idempotent: reruns change nothing)

# COMMAND ----------

ingest(config, JobArgs(start=ctx.start, end=ctx.end), spark)
validate(config, JobArgs(), spark)
features(config, JobArgs(), spark)

# COMMAND ----------

# MAGIC %md ## Rows per day: bronze, silver and quarantine

# COMMAND ----------

from pyspark.sql import functions as F

base = config.features.base_table
date_col = config.lake.date_column


def rows_per_day(layer: str):
    df, _ = lake.read_table(spark, Catalog(config).table(f"{layer}.{base}"))
    return df.groupBy(date_col).agg(F.count(F.lit(1)).alias(f"{layer}_rows"))


daily = (
    rows_per_day("bronze")
    .join(rows_per_day("silver"), date_col, "left")
    .join(rows_per_day("quarantine"), date_col, "left")
    .fillna(0)
    .orderBy(date_col)
)
daily_pdf = daily.toPandas()
daily_pdf.to_csv(ctx.output("01_rows_per_day.csv"), index=False)
show(daily_pdf)

# COMMAND ----------

# MAGIC %md ## Why rows were quarantined

# COMMAND ----------

quarantine, _ = lake.read_table(spark, Catalog(config).quarantine(base))
reasons = (
    quarantine.select(F.explode(FAILED_RULES).alias("rule")).groupBy("rule").count().orderBy(F.desc("count"))
)
reasons_pdf = reasons.toPandas()
reasons_pdf.to_csv(ctx.output("01_quarantine_reasons.csv"), index=False)
show(reasons_pdf if len(reasons_pdf) else "no quarantined rows in these days")

# COMMAND ----------

# MAGIC %md ## The label and the features

# COMMAND ----------

import matplotlib.pyplot as plt

spec = config.features
feats, feats_ref = lake.read_table(spark, Catalog(config).features())
label = spec.label.name if spec.label else None
numeric = [c for c in config.model.numeric if c in feats.columns]

summary = feats.select(*numeric).summary("count", "mean", "stddev", "min", "50%", "max").toPandas()
summary.to_csv(ctx.output("01_feature_summary.csv"), index=False)
show(summary)

if label:
    label_rate = (
        feats.groupBy(spec.date_column)
        .agg(F.avg(label).alias("label_rate"), F.count(F.lit(1)).alias("rows"))
        .orderBy(spec.date_column)
        .toPandas()
    )
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(label_rate[spec.date_column].astype(str), label_rate["label_rate"], color="#4c72b0")
    ax.set_title(f"{label}: share of positive labels per day ({feats_ref.name} v{feats_ref.version})")
    ax.set_ylabel("share")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    save_figure(ctx, fig, "01_label_rate_by_day.png")

# COMMAND ----------

# Distributions of the first numeric features (a sample: the driver only sees a few thousand rows)
sample = feats.select(*numeric[:6]).sample(fraction=min(1.0, 5000 / max(1, feats.count())), seed=1).toPandas()
fig, axes = plt.subplots(2, 3, figsize=(10, 5.5))
for ax, column in zip(axes.flat, numeric[:6], strict=False):
    ax.hist(sample[column].dropna(), bins=30, color="#55a868")
    ax.set_title(column, fontsize=9)
save_figure(ctx, fig, "01_feature_histograms.png")
