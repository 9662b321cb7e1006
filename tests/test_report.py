"""The monitoring report is one self-contained HTML page whose charts render in a real
browser (headless Chromium: screenshot and the DOM after the page's load check)."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from mlops_spark.report import ReportInput, render_report, save_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _metrics() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    start = dt.date(2013, 5, 1)
    for i in range(60):
        day = start + dt.timedelta(days=i)
        storm = 20 <= i < 30  # a known drift episode
        for column in ("probability", "wx_precip", "dep_hour", "carrier"):
            psi = abs(rng.normal(0.05, 0.02)) + (0.4 if storm and column != "dep_hour" else 0.0)
            for window in (1, 7):
                status = "alert" if psi > 0.25 else "warn" if psi > 0.1 else "ok"
                rows.append((day, 1, "drift", column, "all", window, "psi", psi, 0.1, 0.25, status))
        auc = 0.72 - (0.15 if storm else 0.0) + rng.normal(0, 0.01)
        status = "alert" if auc < 0.6 else "warn" if auc < 0.65 else "ok"
        rows.append((day, 1, "quality", "delayed", "all", 1, "areaUnderROC", auc, 0.65, 0.6, status))
        rows.append(
            (
                day,
                1,
                "quality",
                "delayed",
                "all",
                1,
                "positive_rate",
                0.2 + (0.2 if storm else 0),
                None,
                None,
                "ok",
            )
        )
        for carrier in ("AA", "UA", "DL"):
            rows.append(
                (
                    day,
                    1,
                    "quality",
                    "delayed",
                    f"carrier={carrier}",
                    1,
                    "areaUnderROC",
                    auc + rng.normal(0, 0.03),
                    0.65,
                    0.6,
                    "ok",
                )
            )
        if i >= 50:
            rows.append(
                (
                    day,
                    2,
                    "canary",
                    "probability",
                    "all",
                    1,
                    "agreement",
                    0.9 + rng.normal(0, 0.01),
                    0.9,
                    0.8,
                    "ok",
                )
            )
            rows.append(
                (day, 2, "canary_quality", "delayed", "all", 1, "areaUnderROC", auc + 0.03, 0.65, 0.6, "ok")
            )
    cols = [
        "date",
        "model_version",
        "kind",
        "column",
        "slice",
        "window_days",
        "metric",
        "value",
        "warn_threshold",
        "alert_threshold",
        "status",
    ]
    return pd.DataFrame(rows, columns=cols)


def _histograms() -> pd.DataFrame:
    rows = []
    for column in ("probability", "wx_precip", "dep_hour"):
        for b in range(10):
            rows.append((column, str(b), f"bin {b}", b, 100, 100 + 20 * (b - 5)))
    for i, cat in enumerate(["AA", "UA", "DL", "__new__"]):
        rows.append(("carrier", cat, cat, i, 300 if cat != "__new__" else 0, 250 + 10 * i))
    return pd.DataFrame(rows, columns=["column", "bin", "label", "order", "ref_n", "cur_n"])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    html = render_report(
        ReportInput(
            title="Monitoring report: flights_delay",
            facts=[
                ("model", "flights_delay v1"),
                ("reference", "features.flights v3 2013-01-01..2013-04-30"),
            ],
            metrics=_metrics(),
            histograms=_histograms(),
        )
    )
    folder = tmp_path_factory.mktemp("reports")
    return Path(save_report(html, str(folder / "nested" / "report.html")))


def test_report_is_one_self_contained_file(page: Path) -> None:
    text = page.read_text()
    sources = re.findall(r'src="([^"]+)"', text)
    # estimated vs realised quality, drift heatmap, drift lines, histograms, quality, slices, canary
    assert len(sources) == 7
    assert "areaUnderROC: estimated vs realised" in text
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in text and "https://" not in text and "<link" not in text
    # the newest partition's flagged rows are listed with their status
    assert "Status of the newest partition" in text and "Quality per slice" in text
    assert "Canary" in text


def test_report_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    base = [chromium, *CHROMIUM_FLAGS, "--window-size=1400,2400", "--virtual-time-budget=5000"]
    shot = tmp_path / "report.png"
    run = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = imread(str(shot))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1300
    colours = np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # charts, not a blank or error page
    dom = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = re.search(r'data-charts="(\d+)"', dom.stdout)
    rendered = re.search(r'data-charts-rendered="(\d+)"', dom.stdout)
    assert charts and rendered, dom.stdout[:500]
    assert int(charts.group(1)) == int(rendered.group(1)) == 7
    assert re.search(r'<div id="render-check"></div>', dom.stdout), "the page reports broken charts"
