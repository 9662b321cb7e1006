"""Write two real data sets as Delta tables *with another tool* (delta-rs, the `deltalake`
package), the way a user's lake arrives: daily partitions under a string column.

    python scripts/example_lakes.py [--out ./example-lakes] [--first-day 2012-01-01 --last-day 2015-12-31]

* ``seattle_weather``: the daily Seattle weather of 2012-2015 (vega_datasets): one row per
  day, partitioned by ``day`` = 'YYYY-MM-DD'. Multiclass: the day's weather (sun, fog, rain,
  drizzle, snow) from its precipitation, temperatures and wind.
* ``sf_temps``: the hourly San Francisco temperatures of 2010 (vega_datasets): 24 rows a day,
  partitioned by ``ymd`` = 'yyyyMMdd'. Regression: the temperature of an hour.

Both ship inside the `vega_datasets` wheel, so nothing is downloaded. conf/examples/*.yml drive
the whole pipeline over them (see docs/your-own-lake.md); nothing about them is special code.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pandas as pd

TABLES = ("seattle_weather", "sf_temps")


def seattle_weather() -> pd.DataFrame:
    from vega_datasets import local_data

    df = local_data.seattle_weather()
    return pd.DataFrame(
        {
            "day": df["date"].dt.strftime("%Y-%m-%d"),
            "precipitation": df["precipitation"].astype("float64"),
            "temp_max": df["temp_max"].astype("float64"),
            "temp_min": df["temp_min"].astype("float64"),
            "wind": df["wind"].astype("float64"),
            "weather": df["weather"].astype(str),
        }
    )


def sf_temps() -> pd.DataFrame:
    from vega_datasets import local_data

    df = local_data.sf_temps()
    return pd.DataFrame(
        {
            "ymd": df["date"].dt.strftime("%Y%m%d"),
            "observed_at": df["date"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "hour": df["date"].dt.hour.astype("int32"),
            "temp": df["temp"].astype("float64"),
        }
    )


PARTITION = {"seattle_weather": "day", "sf_temps": "ymd"}
DAY_FORMAT = {"seattle_weather": "%Y-%m-%d", "sf_temps": "%Y%m%d"}


def frame(table: str, first: dt.date | None = None, last: dt.date | None = None) -> pd.DataFrame:
    df = {"seattle_weather": seattle_weather, "sf_temps": sf_temps}[table]()
    days = pd.to_datetime(df[PARTITION[table]], format=DAY_FORMAT[table]).dt.date
    keep = pd.Series(True, index=df.index)
    if first is not None:
        keep &= days >= first
    if last is not None:
        keep &= days <= last
    return df[keep].reset_index(drop=True)


def write_example_lake(
    out: str | Path,
    tables: tuple[str, ...] = TABLES,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> dict[str, str]:
    """Write the tables with delta-rs under ``out``; returns {table: path}."""
    from deltalake import write_deltalake

    paths = {}
    for table in tables:
        path = Path(out) / table
        write_deltalake(
            str(path), frame(table, first, last), partition_by=[PARTITION[table]], mode="overwrite"
        )
        paths[table] = str(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="./example-lakes")
    parser.add_argument("--first-day", type=dt.date.fromisoformat)
    parser.add_argument("--last-day", type=dt.date.fromisoformat)
    args = parser.parse_args()
    for table, path in write_example_lake(args.out, first=args.first_day, last=args.last_day).items():
        print(f"{table}: {path}")


if __name__ == "__main__":
    main()
