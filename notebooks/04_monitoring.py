# Databricks notebook source
# MAGIC %md
# MAGIC # 04 · Monitoring and drift
# MAGIC
# MAGIC Runs the monitor job over the prediction partitions not monitored yet: drift of every
# MAGIC model input against the model's training data (PSI, Jensen-Shannon, KS, ...) and the
# MAGIC realised quality once labels are there, each with a status (ok / warn / alert) from
# MAGIC the configured thresholds. Then charts the monitoring table.
# MAGIC
# MAGIC Needs predictions: run `03_batch_score` first.

# COMMAND ----------

from notebook_support import notebook_context, save_figure, show

from mlops_spark import lake
from mlops_spark.catalog import Catalog
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.monitor import monitor
from mlops_spark.monitoring.frames import ALL, COLUMN, METRIC, SLICE, VALUE

ctx = notebook_context()
config, spark = ctx.config, ctx.spark
date_col = config.features.date_column

# COMMAND ----------

# MAGIC %md ## Monitor what is new

# COMMAND ----------

monitored = monitor(config, JobArgs(), spark)
print(monitored.result)

# COMMAND ----------

# MAGIC %md ## Status per day: how many metrics are ok, warn, alert

# COMMAND ----------

from pyspark.sql import functions as F

table, table_ref = lake.read_table(spark, Catalog(config).monitoring())
daily = table.where(F.col("window_days") == 1)
status = (
    daily.groupBy(date_col, "kind")
    .pivot("status", ["ok", "warn", "alert"])
    .count()
    .fillna(0)
    .orderBy(date_col, "kind")
    .toPandas()
)
status.to_csv(ctx.output("04_status_per_day.csv"), index=False)
show(status)

# COMMAND ----------

# MAGIC %md ## Drift per feature over time (PSI; the dashed lines are the warn and alert thresholds)

# COMMAND ----------

import matplotlib.pyplot as plt

drift_metric = "psi"
psi = (
    daily.where((F.col("kind") == "drift") & (F.col(METRIC) == drift_metric))
    .groupBy(date_col, COLUMN)
    .agg(F.max(VALUE).alias(VALUE))
    .toPandas()
)
wide = psi.pivot(index=date_col, columns=COLUMN, values=VALUE).sort_index()
wide.to_csv(ctx.output("04_psi_by_feature.csv"))
threshold = config.monitoring.thresholds.get(drift_metric)

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
for column in wide.columns:
    left.plot(wide.index.astype(str), wide[column], marker=".", label=column)
if threshold is not None:
    for level, colour in ((threshold.warn, "#dd8452"), (threshold.alert, "#c44e52")):
        if level is not None:
            left.axhline(level, linestyle="--", color=colour)
left.set_title(f"{drift_metric} per feature and day vs the training data")
left.tick_params(axis="x", rotation=60, labelsize=7)
left.legend(fontsize=6, ncol=2)
worst = wide.max().sort_values()
right.barh(worst.index, worst.values, color="#4c72b0")
right.set_title(f"worst daily {drift_metric}")
save_figure(ctx, fig, "04_drift.png")

# COMMAND ----------

# MAGIC %md ## Realised quality once labels have landed

# COMMAND ----------

quality = (
    daily.where((F.col("kind") == "quality") & (F.col(SLICE) == ALL))
    .groupBy(date_col, METRIC)
    .agg(F.max(VALUE).alias(VALUE))
    .toPandas()
)
if len(quality):
    wide_quality = quality.pivot(index=date_col, columns=METRIC, values=VALUE).sort_index()
    wide_quality.to_csv(ctx.output("04_quality_by_day.csv"))
    shown = [
        m for m in ("areaUnderROC", "accuracy", "precision", "recall", "rmse") if m in wide_quality.columns
    ]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for metric in shown or list(wide_quality.columns[:3]):
        ax.plot(wide_quality.index.astype(str), wide_quality[metric], marker="o", label=metric)
    ax.set_title("realised quality per day")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    ax.legend()
    save_figure(ctx, fig, "04_quality.png")
else:
    print("no labelled predictions yet: quality appears once labels land")
