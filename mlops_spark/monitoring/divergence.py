"""Drift metrics from histograms, on the driver (pandas): the histograms are small, the data is not.

Executors bucket the current rows and count them per (group, column, bucket); those counts
(days x columns x grid buckets: about a million rows for a year of 25 columns) are all
that reaches the driver. Every metric is a function of them, computed here with vectorised
pandas: one pass of Spark, then no Spark stage per metric and window (as window functions
over the same histograms, the metrics cost seconds per part even on a few thousand rows).

The definitions are those of `mlops_spark.monitoring.drift` (its docstring has the
approximations); ``leave_out`` compares each group with the reference *without* its own
rows (calibration, where the current rows are the reference).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlops_spark.monitoring.frames import BIN, BUCKET, COLUMN, METRIC, NEW, PSI_EPSILON, TOTAL, VALUE, N
from mlops_spark.monitoring.profile import ReferenceProfile


def _ratio(num: pd.Series | np.ndarray, den: pd.Series | np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 or missing (Spark's try_divide)."""
    n = np.asarray(num, dtype=float)
    d = np.asarray(den, dtype=float)
    out = np.full(n.shape, np.nan)
    ok = (d != 0) & ~np.isnan(d)
    np.divide(n, d, out=out, where=ok)
    return out


def _long(
    frame: pd.DataFrame, keys: Sequence[str], metrics: dict[str, pd.Series | np.ndarray]
) -> pd.DataFrame:
    """(keys..., metric, value) rows, one per key row and metric."""
    parts = []
    for name, values in metrics.items():
        part = frame[list(keys)].copy()
        part[METRIC] = name
        part[VALUE] = np.asarray(values, dtype=float)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*keys, METRIC, VALUE])
    return pd.concat(parts, ignore_index=True)


def _sum(frame: pd.DataFrame, keys: Sequence[str], column: str) -> pd.Series:
    """Per-row sum of ``column`` over the rows of its key (a window sum)."""
    return frame.groupby(list(keys), dropna=False, sort=False)[column].transform("sum")


def binned_divergences(
    bins: pd.DataFrame, group_cols: Sequence[str], epsilon: float = PSI_EPSILON
) -> pd.DataFrame:
    """PSI, Jensen-Shannon distance (base 2) and the chi-square test of homogeneity from
    (group..., column, bin, ref_n, cur_n), every reference bin present; groups with no
    current rows are left out."""
    from scipy.stats import chi2

    keys = [*group_cols, COLUMN]
    b = bins.copy()
    b["ref_n"] = b["ref_n"].astype(float)
    b["cur_n"] = b["cur_n"].astype(float)
    nr, nc = _sum(b, keys, "ref_n").to_numpy(), _sum(b, keys, "cur_n").to_numpy()
    keep = nc > 0
    b, nr, nc = b[keep], nr[keep], nc[keep]
    rn, cn = b["ref_n"].to_numpy(), b["cur_n"].to_numpy()
    pr, pc = _ratio(rn, nr), _ratio(cn, nc)
    pr_f, pc_f = np.fmax(pr, epsilon), np.fmax(pc, epsilon)
    m = (pr + pc) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        js_r = np.where(pr > 0, pr * np.log2(_ratio(pr, m)), 0.0)
        js_c = np.where(pc > 0, pc * np.log2(_ratio(pc, m)), 0.0)
        total = rn + cn
        er, ec = _ratio(nr * total, nr + nc), _ratio(nc * total, nr + nc)
        chi = np.where(total > 0, _ratio((rn - er) ** 2, er) + _ratio((cn - ec) ** 2, ec), 0.0)
    terms = b[keys].copy()
    terms["psi"] = (pc_f - pr_f) * np.log(pc_f / pr_f)
    terms["js"] = 0.5 * js_r + 0.5 * js_c
    terms["chi"] = chi
    terms["nonzero"] = (total > 0).astype(int)
    grouped = terms.groupby(keys, dropna=False, sort=False)
    sums = grouped[["psi", "js", "chi"]].sum(min_count=1).rename(columns={"chi": "chi2"})
    sums["nonzero"] = grouped["nonzero"].sum()
    sums = sums.reset_index()
    dof = sums["nonzero"].to_numpy() - 1
    statistic = sums["chi2"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        pvalue = np.where(dof <= 0, 1.0, chi2.sf(statistic, np.maximum(dof, 1).astype(float)))
    return _long(
        sums,
        keys,
        {
            "psi": sums["psi"],
            "js_distance": np.sqrt(np.fmax(sums["js"].to_numpy(float), 0.0)),
            "chi2": statistic,
            "chi2_pvalue": pvalue,
        },
    )


def _stats(profile: ReferenceProfile) -> pd.DataFrame:
    rows: list[tuple[str, float, float, int, int]] = [
        (p.column, p.null_rate, p.std, p.nulls, p.rows + p.nulls) for p in profile.numeric.values()
    ]
    rows += [(p.column, p.null_rate, np.nan, p.nulls, p.rows + p.nulls) for p in profile.categorical.values()]
    return pd.DataFrame(rows, columns=[COLUMN, "ref_null_rate", "ref_std", "ref_nulls", "ref_all"])


def null_rates(
    hist: pd.DataFrame,
    profile: ReferenceProfile,
    group_cols: Sequence[str],
    key: str,
    leave_out: bool = False,
) -> pd.DataFrame:
    """null_rate of the current data and its absolute change from the reference (from the
    rest of the reference with ``leave_out``)."""
    keys = [*group_cols, COLUMN]
    h = hist.assign(__nulls=np.where(hist[key].isna(), hist[N], 0))
    rates = h.groupby(keys, dropna=False, sort=False).agg(cur_nulls=("__nulls", "sum"), cur_all=(N, "sum"))
    joined = rates.reset_index().merge(_stats(profile), on=COLUMN)
    ref_rate = (
        _ratio(joined["ref_nulls"] - joined["cur_nulls"], joined["ref_all"] - joined["cur_all"])
        if leave_out
        else joined["ref_null_rate"].to_numpy(float)
    )
    rate = _ratio(joined["cur_nulls"], joined["cur_all"])
    return _long(joined, keys, {"null_rate": rate, "null_rate_delta": np.abs(rate - ref_rate)})


def numeric_reference(profile: ReferenceProfile) -> pd.DataFrame:
    """(column, bucket, coarse, ref_n, ref_total): the reference's counts per grid bucket."""
    rows = [
        (p.column, k, p.coarse[k], n, total)
        for p in profile.numeric.values()
        for k, (n, total) in enumerate(zip(p.counts, p.totals, strict=True))
    ]
    return pd.DataFrame(rows, columns=[COLUMN, BUCKET, "coarse", "ref_n", "ref_total"])


def numeric_drift(
    hist: pd.DataFrame, profile: ReferenceProfile, group_cols: Sequence[str], leave_out: bool = False
) -> pd.DataFrame:
    """Every numeric drift metric from (group..., column, bucket, n, total) histograms."""
    keys = [*group_cols, COLUMN]
    present = hist[hist[BUCKET].notna()].rename(columns={N: "cur_n", TOTAL: "cur_total"})
    present = present.astype({BUCKET: "int64"})
    groups = hist[keys].drop_duplicates()
    grid = groups.merge(numeric_reference(profile), on=COLUMN).merge(
        present[[*keys, BUCKET, "cur_n", "cur_total"]], on=[*keys, BUCKET], how="left"
    )
    grid["cur_n"] = grid["cur_n"].fillna(0).astype(float)
    grid["cur_total"] = grid["cur_total"].fillna(0.0).astype(float)
    grid["ref_n"] = grid["ref_n"].astype(float)
    grid["ref_total"] = grid["ref_total"].astype(float)
    if leave_out:
        grid["ref_n"] = grid["ref_n"] - grid["cur_n"]
        grid["ref_total"] = grid["ref_total"] - grid["cur_total"]
    grid = grid.sort_values([*keys, BUCKET], kind="stable").reset_index(drop=True)
    by_key = grid.groupby(keys, dropna=False, sort=False)
    gap = np.abs(
        _ratio(by_key["ref_n"].cumsum(), _sum(grid, keys, "ref_n"))
        - _ratio(by_key["cur_n"].cumsum(), _sum(grid, keys, "cur_n"))
    )
    ks = (
        grid[keys]
        .assign(gap=gap, cur_n=grid["cur_n"], cur_total=grid["cur_total"])
        .groupby(keys, dropna=False, sort=False)
        .agg(ks=("gap", "max"), rows=("cur_n", "sum"), sum=("cur_total", "sum"))
        .reset_index()
    )

    ref_atoms = grid[grid["ref_n"] > 0]
    cur_atoms = grid[grid["cur_n"] > 0]
    atoms = pd.concat(
        [
            ref_atoms[keys].assign(
                pos=_ratio(ref_atoms["ref_total"], ref_atoms["ref_n"]), rn=ref_atoms["ref_n"], cn=0.0
            ),
            cur_atoms[keys].assign(
                pos=_ratio(cur_atoms["cur_total"], cur_atoms["cur_n"]), rn=0.0, cn=cur_atoms["cur_n"]
            ),
        ],
        ignore_index=True,
    )
    atoms = atoms.sort_values([*keys, "pos", "rn"], kind="stable").reset_index(drop=True)
    by_atom_key = atoms.groupby(keys, dropna=False, sort=False)
    step_gap = np.abs(
        _ratio(by_atom_key["rn"].cumsum(), _sum(atoms, keys, "rn"))
        - _ratio(by_atom_key["cn"].cumsum(), _sum(atoms, keys, "cn"))
    )
    width = (by_atom_key["pos"].shift(-1) - atoms["pos"]).to_numpy(float)
    contribution = np.nan_to_num(step_gap * width, nan=0.0)
    wasserstein = (
        atoms[keys]
        .assign(c=contribution)
        .groupby(keys, dropna=False, sort=False)
        .agg(w=("c", "sum"))
        .reset_index()
    )
    shape = ks.merge(wasserstein, on=keys).merge(_stats(profile), on=COLUMN)
    shape = shape[shape["rows"] > 0]
    std = shape["ref_std"].to_numpy(float)
    shape_long = _long(
        shape,
        keys,
        {
            "ks": shape["ks"],
            "wasserstein": shape["w"],
            "wasserstein_std": np.where(std > 0, _ratio(shape["w"], std), np.nan),
            "mean": _ratio(shape["sum"], shape["rows"]),
            "rows": shape["rows"],
        },
    )
    coarse = (
        grid.groupby([*keys, "coarse"], dropna=False, sort=False)
        .agg(ref_n=("ref_n", "sum"), cur_n=("cur_n", "sum"))
        .reset_index()
        .rename(columns={"coarse": BIN})
    )
    return pd.concat(
        [
            shape_long,
            binned_divergences(coarse, group_cols),
            null_rates(hist, profile, group_cols, BUCKET, leave_out),
        ],
        ignore_index=True,
    )


def categorical_reference(profile: ReferenceProfile) -> pd.DataFrame:
    """(column, category, bin, ref_n): the reference's count of every category, with its bin."""
    rows = [
        (p.column, cat, p.bin_of(cat), n) for p in profile.categorical.values() for cat, n in p.counts.items()
    ]
    return pd.DataFrame(rows, columns=[COLUMN, "category", BIN, "ref_n"])


def categorical_drift(
    hist: pd.DataFrame, profile: ReferenceProfile, group_cols: Sequence[str], leave_out: bool = False
) -> pd.DataFrame:
    """Every categorical drift metric from (group..., column, category, n) histograms."""
    keys = [*group_cols, COLUMN]
    ref = categorical_reference(profile)
    ref_bins = ref.groupby([COLUMN, BIN], sort=False).agg(ref_n=("ref_n", "sum")).reset_index()
    present = hist[hist["category"].notna()].merge(
        ref[[COLUMN, "category", BIN]].rename(columns={BIN: "__bin"}), on=[COLUMN, "category"], how="left"
    )
    present["__seen"] = present["__bin"].notna()
    cur_bins = (
        present.assign(**{BIN: present["__bin"].fillna(NEW)})
        .groupby([*keys, BIN], dropna=False, sort=False)
        .agg(cur_n=(N, "sum"))
        .reset_index()
    )
    groups = hist[keys].drop_duplicates()
    bins = groups.merge(ref_bins, on=COLUMN).merge(cur_bins, on=[*keys, BIN], how="outer")
    bins["ref_n"] = bins["ref_n"].fillna(0).astype(float)
    bins["cur_n"] = bins["cur_n"].fillna(0).astype(float)
    if leave_out:
        bins["ref_n"] = np.maximum(bins["ref_n"] - bins["cur_n"], 0.0)
    new_rate = (
        present.assign(__new=np.where(present["__seen"], 0, present[N]))
        .groupby(keys, dropna=False, sort=False)
        .agg(new=("__new", "sum"), rows=(N, "sum"))
        .reset_index()
    )
    return pd.concat(
        [
            _long(
                new_rate,
                keys,
                {"new_category_rate": _ratio(new_rate["new"], new_rate["rows"]), "rows": new_rate["rows"]},
            ),
            binned_divergences(bins, group_cols),
            null_rates(hist.rename(columns={"category": "__cat"}), profile, group_cols, "__cat", leave_out),
        ],
        ignore_index=True,
    )


def rolling_histograms(
    hist: pd.DataFrame, date_column: str, days: int, ends: Sequence[dt.date]
) -> pd.DataFrame:
    """Histograms summed over the ``days`` partitions ending at each date of ``ends``, keyed
    like ``hist`` with ``date_column`` holding the window's last day (histograms add up)."""
    dates = pd.to_datetime(hist[date_column])
    wanted = pd.to_datetime(sorted(set(ends)))
    shifted = []
    for offset in range(days):
        moved = dates + pd.Timedelta(days=offset)
        inside = moved.isin(wanted).to_numpy()
        part = hist[inside].copy()
        part[date_column] = moved[inside].dt.date.to_numpy()
        shifted.append(part)
    joined = pd.concat(shifted, ignore_index=True)
    others = [c for c in hist.columns if c not in {N, TOTAL}]
    sums = [c for c in (N, TOTAL) if c in hist.columns]
    out = joined.groupby(others, dropna=False, sort=False)[sums].sum(min_count=1).reset_index()
    return out[list(hist.columns)]
