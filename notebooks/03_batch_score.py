# Databricks notebook source
# MAGIC %md
# MAGIC # 03 · Batch scoring
# MAGIC
# MAGIC Scores the feature partitions that `@champion` has not scored yet (incremental), looks
# MAGIC at the predictions next to the realised labels, and re-scores the last day as a
# MAGIC backfill to show that a rerun replaces partitions instead of appending to them.
# MAGIC
# MAGIC Needs a `@champion`: run `02_train_and_compare` first.

# COMMAND ----------

from notebook_support import notebook_context, save_figure, show

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.score import score

ctx = notebook_context()
config, spark = ctx.config, ctx.spark
spec = config.features
client = registry.configure(config.mlflow)
champion = registry.resolve(client, config.mlflow.model_name, alias=config.scoring.alias)
print(f"scoring with {champion.describe()} (run {champion.run_id})")

# COMMAND ----------

# MAGIC %md ## Score what is new

# COMMAND ----------

scored = score(config, JobArgs(), spark)
print(f"scored {scored.result.scored_partitions} new partition(s)")

# COMMAND ----------

# MAGIC %md ## Predictions per day and model version

# COMMAND ----------

from pyspark.sql import functions as F

predictions_table = Catalog(config).predictions()
predictions, predictions_ref = lake.read_table(spark, predictions_table)
per_day = (
    predictions.groupBy(spec.date_column, "model_version")
    .agg(
        F.count(F.lit(1)).alias("predictions"),
        F.avg("probability").alias("mean_probability"),
        F.avg("prediction").alias("predicted_positive_rate"),
    )
    .orderBy(spec.date_column)
)
per_day_pdf = per_day.toPandas()
per_day_pdf.to_csv(ctx.output("03_predictions_per_day.csv"), index=False)
show(per_day_pdf)

# COMMAND ----------

# MAGIC %md ## Predictions next to the realised labels

# COMMAND ----------

import matplotlib.pyplot as plt

label = spec.label.name if spec.label else None
if label:
    feats, _ = lake.read_table(spark, Catalog(config).features())
    joined = predictions.join(
        feats.select(spec.entity_id.name, spec.date_column, label), [spec.entity_id.name, spec.date_column]
    ).where(F.col(label).isNotNull())
    by_day = (
        joined.groupBy(spec.date_column)
        .agg(F.avg(label).alias("realised_rate"), F.avg("probability").alias("mean_probability"))
        .orderBy(spec.date_column)
        .toPandas()
    )
    sample = joined.select("probability", label).sample(fraction=0.5, seed=1).limit(20000).toPandas()

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for value, colour in ((0.0, "#4c72b0"), (1.0, "#c44e52")):
        left.hist(
            sample.loc[sample[label] == value, "probability"],
            bins=30,
            alpha=0.6,
            color=colour,
            label=f"{label} = {int(value)}",
            density=True,
        )
    left.set_title("predicted probability by realised label")
    left.legend()
    days = by_day[spec.date_column].astype(str)
    right.plot(days, by_day["realised_rate"], marker="o", label="realised")
    right.plot(days, by_day["mean_probability"], marker="x", label="mean predicted")
    right.set_title("per day: realised rate vs mean prediction")
    right.tick_params(axis="x", rotation=60, labelsize=7)
    right.legend()
    save_figure(ctx, fig, "03_predictions_vs_labels.png")

# COMMAND ----------

# MAGIC %md ## Backfill: re-scoring a day replaces its partition (no duplicates)

# COMMAND ----------

last_day = per_day_pdf[spec.date_column].max()
before = predictions_ref.version
score(config, JobArgs(date=last_day), spark)
after, after_ref = lake.read_table(spark, predictions_table)
rows_before = int(per_day_pdf["predictions"].sum())
rows_after = after.count()
print(f"{predictions_table.name}: v{before} -> v{after_ref.version}, rows {rows_before:,} -> {rows_after:,}")
ctx.output("03_backfill.txt").write_text(
    f"day={last_day} version_before={before} version_after={after_ref.version} "
    f"rows_before={rows_before} rows_after={rows_after}\n"
)
