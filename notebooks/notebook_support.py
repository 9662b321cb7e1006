"""What every notebook in this folder shares (a plain module, not a notebook).

The notebooks are Databricks source notebooks that also run as plain Python
(``python notebooks/01_explore_data.py``). This module gives them:

* ``widget(name, default)``: a Databricks text widget, or locally ``$MLOPS_NB_<NAME>``;
* ``show(obj)``: Databricks' ``display``, or a printed table locally;
* ``notebook_context()``: the config (conf file, environment overlay and ``--set``-style
  overrides from widgets), the SparkSession, the date range to play back and the folder
  charts and tables are written to.
"""

from __future__ import annotations

import builtins
import datetime as dt
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parent
ROOT = NOTEBOOKS.parent
if str(ROOT) not in sys.path:  # a checkout (Databricks Repos, git clone) without pip install
    sys.path.insert(0, str(ROOT))

from pyspark.sql import DataFrame, SparkSession

from mlops_spark.config import AppConfig, Override, load_config
from mlops_spark.session import get_spark


def _dbutils() -> Any:
    """Databricks' dbutils when running there, else None."""
    main = sys.modules.get("__main__")
    found = getattr(main, "dbutils", None) or getattr(builtins, "dbutils", None)
    if found is not None:
        return found
    if "DATABRICKS_RUNTIME_VERSION" not in os.environ:
        return None
    try:
        from databricks.sdk.runtime import dbutils  # type: ignore[import-not-found]
    except ImportError:
        return None
    return dbutils


if _dbutils() is None:
    os.environ.setdefault("MPLBACKEND", "Agg")  # charts are files when no notebook UI shows them


def widget(name: str, default: str, label: str | None = None) -> str:
    """A text widget on Databricks; locally the environment variable MLOPS_NB_<NAME>."""
    dbutils = _dbutils()
    if dbutils is not None:
        dbutils.widgets.text(name, default, label or name)
        return str(dbutils.widgets.get(name))
    return os.environ.get(f"MLOPS_NB_{name.upper()}", default)


def show(obj: Any, rows: int = 20) -> None:
    """Databricks' display() there; locally a printed table (DataFrames, pandas, figures)."""
    main = sys.modules.get("__main__")
    display = getattr(main, "display", None) or getattr(builtins, "display", None)
    if display is not None:
        display(obj)
        return
    if isinstance(obj, DataFrame):
        obj = obj.limit(rows).toPandas()
    if hasattr(obj, "to_string"):
        print(obj.head(rows).to_string(index=False) if hasattr(obj, "head") else obj.to_string())
    else:
        print(obj)


@dataclass(frozen=True)
class NotebookContext:
    config: AppConfig
    spark: SparkSession
    start: dt.date
    end: dt.date
    output_dir: Path
    conf_path: Path
    env: str | None
    overrides: tuple[str, ...]

    def output(self, name: str) -> Path:
        """A file in the output folder (created on first use)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir / name

    def with_overrides(self, *extra: str | Override) -> AppConfig:
        """The same config with more key.path=value overrides: strings merge as --set does;
        another estimator needs its own params, e.g. ``Override("model.params={numTrees: 50}",
        replace=True)`` (as --set-replace)."""
        return load_config(self.conf_path, self.env, [*self.overrides, *extra])


def _resolve(path: str) -> Path:
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return ROOT / candidate  # relative to the checkout (Databricks runs in the notebook's folder)


def notebook_context() -> NotebookContext:
    """Read the widgets every notebook shares and start (or reuse) the SparkSession."""
    conf = widget("conf", "conf/flights.yml", "use-case config")
    env = widget("env", "local", "environment overlay") or None
    sets = widget("sets", "", "overrides key.path=value; separated")
    start = widget("from", "2013-01-01", "first day to play back")
    end = widget("to", "2013-06-30", "last day to play back")
    out = widget("output_dir", "reports/notebooks", "folder for charts and tables")
    overrides = tuple(s.strip() for s in sets.replace("\n", ";").split(";") if s.strip())
    conf_path = _resolve(conf)
    config = load_config(conf_path, env, overrides)
    spark = get_spark(config.spark, app_name="mlops-spark-notebook")
    output_dir = Path(out) if Path(out).is_absolute() else Path.cwd() / out
    return NotebookContext(
        config=config,
        spark=spark,
        start=dt.date.fromisoformat(start),
        end=dt.date.fromisoformat(end),
        output_dir=output_dir,
        conf_path=conf_path,
        env=env,
        overrides=overrides,
    )


def save_figure(ctx: NotebookContext, fig: Any, name: str) -> Path:
    """Save a matplotlib figure into the output folder and show it."""
    import matplotlib.pyplot as plt

    path = ctx.output(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    show(fig)
    plt.close(fig)
    return path
