# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Train, compare runs, promote
# MAGIC
# MAGIC Trains the configured model (the baseline) and a candidate with other settings
# MAGIC (widget `candidate_sets`), each as an MLflow run registered as `@challenger`, and runs
# MAGIC the promotion gate after each: the candidate becomes `@champion` only if it beats the
# MAGIC baseline on the same holdout. Then compares every training run of the experiment.
# MAGIC
# MAGIC Needs the feature table: run `01_explore_data` first.

# COMMAND ----------

from notebook_support import notebook_context, save_figure, show, widget

from mlops_spark import lake, registry
from mlops_spark.catalog import Catalog
from mlops_spark.jobs.args import JobArgs
from mlops_spark.jobs.promote import promote
from mlops_spark.jobs.train import train
from mlops_spark.metrics import primary_metric

ctx = notebook_context()
config, spark = ctx.config, ctx.spark
candidate_sets = widget(
    "candidate_sets",
    "model.params.regParam=0.05; model.params.elasticNetParam=0.5",
    "candidate's overrides, ; separated",
)
features_table = Catalog(config).features()
if not lake.exists(spark, features_table):
    raise RuntimeError(f"no feature table at {features_table.path}: run 01_explore_data first")
metric, higher_is_better = primary_metric(config.model.resolved_task, config.promotion.metric)
print(f"experiment {config.mlflow.experiment}, model {config.mlflow.model_name}, gate metric {metric}")

# COMMAND ----------

# MAGIC %md ## The baseline: train, register as @challenger, gate

# COMMAND ----------

baseline = train(config, JobArgs(), spark)
baseline_gate = promote(config, JobArgs(), spark)
print("baseline:", baseline.result.model.describe(), "->", baseline_gate.result.decision)

# COMMAND ----------

# MAGIC %md ## A candidate with other settings, gated against the champion

# COMMAND ----------

candidate_config = ctx.with_overrides(*[s.strip() for s in candidate_sets.split(";") if s.strip()])
candidate = train(candidate_config, JobArgs(), spark)
candidate_gate = promote(candidate_config, JobArgs(), spark)
print("candidate:", candidate.result.model.describe(), "->", candidate_gate.result.decision)

# COMMAND ----------

# MAGIC %md ## Compare the training runs of the experiment

# COMMAND ----------

import matplotlib.pyplot as plt
import mlflow

client = registry.configure(config.mlflow)
runs = mlflow.search_runs(
    experiment_names=[config.mlflow.experiment], order_by=["attributes.start_time DESC"]
)
test_metric = f"metrics.test_{metric}"
runs = runs[runs[test_metric].notna()] if test_metric in runs else runs.iloc[0:0]
columns = ["run_id", "tags.mlflow.runName", "params.estimator", test_metric]
columns += [c for c in runs.columns if c.startswith("params.param.")]
table = runs[[c for c in columns if c in runs.columns]].sort_values(
    test_metric, ascending=not higher_is_better
)
table.to_csv(ctx.output("02_runs.csv"), index=False)
show(table)

champion = registry.resolve(client, config.mlflow.model_name, alias="champion")
ctx.output("02_champion.txt").write_text(f"{champion.name} v{champion.version} run {champion.run_id}\n")
print(f"@champion is {champion.describe()} (run {champion.run_id})")

fig, ax = plt.subplots(figsize=(8, 3.5))
labels = [str(name) for name in table.get("tags.mlflow.runName", table["run_id"])]
colors = ["#c44e52" if r == champion.run_id else "#8c8c8c" for r in table["run_id"]]
ax.barh(labels, table[test_metric], color=colors)
ax.set_xlabel(f"test {metric} (red: @champion)")
ax.set_title(f"{config.mlflow.experiment}: training runs")
save_figure(ctx, fig, "02_compare_runs.png")
