"""Issue 5, item 4: the forecast's 80 % interval, backtested over rolling origins on generated and real data.

Coverage is measured three ways, because counts are whole numbers: the share of actual counts inside the
interval over every cell (a cell expecting 0.02 events a week has the interval [0, 0], which covers ~98 % of its
weeks whatever the level, so this share sits above 80 % on sparse data); the same share over the cells that
expect at least one event a week (where a whole-number interval can hold close to 80 %); and the randomised
PIT coverage (Czado, Gneiting & Held 2009), which is 80 % on average exactly when the forecast distribution is
right. The issue's 70-90 % band is asserted for the last two on both data sets and for the first on the
generated data; all figures and the MAE against the naive forecasts are printed (pytest -s) for the closing note.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import forecast, report_weekly, warehouse

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EVENTS = SHARED / "polisen-events" / "events_sweden_2023-03_2026-08.jsonl.gz"
ADMIN = SHARED / "se-statistics" / "swedish_admin_areas.csv"


def _within(value: float) -> bool:
    return 0.70 <= value <= 0.90


def test_generated_backtest_covers_about_80_percent(generated_season):
    truth = json.loads((generated_season.work / "generator_truth.json").read_text(encoding="utf-8"))
    weeks = truth["weeks"]
    with warehouse.connect(generated_season, read_only=True) as con:
        cells = report_weekly.query(con, "weekly_cells", {"weeks": weeks})
    table = (cells.pivot_table(index=["area_code", "category"], columns="iso_week", values="n", aggfunc="sum",
                               fill_value=0).reindex(columns=weeks, fill_value=0).astype(float))
    started = time.perf_counter()
    result = forecast.backtest(table, weeks[13:], table.index.get_level_values("category").to_numpy())
    print("\n" + result.line("generated (26 weeks: no last year, naive = last week)"))
    assert time.perf_counter() - started < 20
    assert result.forecasts > 10_000
    assert _within(result.coverage) and _within(result.pit_coverage) and _within(result.busy_coverage)
    assert result.mae_recent <= result.mae_naive_last_week


@pytest.mark.skipif(not EVENTS.exists(), reason="the police events archive is not in ../shared/data")
def test_real_police_events_backtest_covers_about_80_percent():
    started = time.perf_counter()
    admin = pd.read_csv(ADMIN, dtype=str)
    municipalities = admin.loc[admin["county_name"] == "Örebro län", "municipality_name"].tolist()
    assert len(municipalities) == 12 and "Örebro län" not in municipalities
    table = forecast.police_events_weekly(EVENTS, municipalities)
    assert set(table.index.get_level_values("area")) <= set(municipalities)
    covered = [w for w in table.columns if table[w].notna().all()]
    targets = covered[52:]  # a year of history first, so that the seasonal window and last year exist
    result = forecast.backtest(table, targets, table.index.get_level_values("category").to_numpy())
    print("\n" + result.line("real (polisen.se, Örebro län municipalities x event type)"))
    assert time.perf_counter() - started < 20
    assert result.origins >= 90 and result.compared > 10_000
    assert _within(result.pit_coverage) and _within(result.busy_coverage)
    assert result.coverage >= 0.80  # whole numbers: never below the level on sparse cells
    assert result.mae_median < result.mae_naive_last_year


def test_forecast_week_gives_next_week_per_area_and_category(generated_season):
    with warehouse.connect(generated_season, read_only=True) as con:
        result = forecast.forecast_week(con, "2026-W46")
    assert set(result["iso_week"]) == {"2026-W47"}
    assert (result["low80"] <= result["high80"]).all()
    assert ((result["expected"] >= result["low80"] - 1) & (result["expected"] <= result["high80"] + 1)).all()
    assert not result.duplicated(["area_code", "category"]).any()


def test_interval_is_nearest_to_its_level():
    history = np.array([[20.0] * 13, [0.0] * 13, [2.0] * 13])
    from pipelines import anomaly

    pred = anomaly.predictive(history)
    low, high = pred.interval(0.8)
    assert low[1] == 0 and high[1] == 0
    assert low[0] < 20 < high[0]
    mass = pred._mass(low, high)
    assert abs(mass[0] - 0.8) < 0.1 and abs(mass[2] - 0.8) < 0.15
