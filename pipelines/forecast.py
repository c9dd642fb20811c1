"""Next week's forecast per area and category, with an 80 % interval, and the backtest behind them.

Issue 5, item 4. The forecast uses the same negative-binomial predictive distribution as the test for
"beyond normal variation" (:mod:`pipelines.anomaly`): the 13 weeks before the forecast week pooled with the same
ISO week +- 2 weeks in each earlier year the warehouse holds, a Jeffreys gamma prior on the weekly rate (so the
uncertainty of the mean widens the interval) and the category's extra-Poisson variation estimated from the
history. The interval is the whole-number interval nearest 80 % (:meth:`anomaly.Predictive.interval`).

What is published, and so what the backtest measures (the same rule in both places, :func:`predict`):
- The point forecast is the *median* of the predictive distribution, not its mean. Counts are skewed and mostly
  small: the median is the point forecast that minimises the absolute error (the report's and the issue's
  yardstick), while a mean of 0.02 a week is wrong by 0.02 every quiet week and by 0.98 in the odd busy one.
- A cell is forecast only when its chance of no event at all next week is at most ``MAX_ZERO_CHANCE`` (80 %).
  Above that every whole-number interval holding 80 % is [0, 0] and holds more than 80 % (a cell expecting 0.02
  a week is covered in 98 % of weeks whatever the level), so an "80 % interval" would be a false claim: such a
  cell is "too few to forecast". This is decided before the week, from the forecast alone, never from the outcome.

:func:`backtest` measures, over rolling origins, the share of actual counts inside the interval over the
forecast cells (and the share of cells left out), the randomised-PIT coverage as a diagnostic (Czado, Gneiting &
Held 2009: exactly 80 % on average for a right forecast distribution, whatever the counts), and the mean absolute
error of the published point forecast against the naive forecasts "the same ISO week last year" and "last week".
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipelines import anomaly

LEVEL = 0.8
#: A cell is forecast only when the predictive chance of no event next week is at most this (see the module
#: docstring): above it no whole-number interval can hold 80 % rather than more. Equal to LEVEL on purpose.
MAX_ZERO_CHANCE = LEVEL
#: Cells whose forecast mean is at least this many events a week: reported separately in the backtest, the
#: stratum where a too-wide (over-dispersed) interval would show first.
BUSY = 1.0


def iso_label(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def next_week(iso_week: str) -> str:
    return iso_label(date.fromisocalendar(int(iso_week[:4]), int(iso_week[6:8]), 1) + timedelta(weeks=1))


def same_week_last_year(iso_week: str) -> str:
    year, week = int(iso_week[:4]), int(iso_week[6:8])
    try:
        return iso_label(date.fromisocalendar(year - 1, week, 1))
    except ValueError:  # week 53 -> week 52 of the year before
        return iso_label(date.fromisocalendar(year - 1, 52, 1))


def predict(table: pd.DataFrame, target: str, groups: np.ndarray | None = None) -> pd.DataFrame:
    """Forecast for week ``target`` of every row of ``table`` (cells x ISO-week columns, NaN = not delivered).

    Only columns strictly before ``target`` are used. Returns per row (same index): expected (the mean),
    median (the published point forecast), low80 and high80, zero_chance (P(no event)), forecastable (the
    publication rule of the module docstring) and history_weeks.
    """
    weeks = [w for w in anomaly.history_weeks(target) if w in table.columns]
    history = table[weeks].to_numpy(dtype=float) if weeks else np.full((len(table), 1), np.nan)
    alpha = anomaly.dispersion(history, groups)
    pred = anomaly.predictive(history, alpha)
    low, high = pred.interval(LEVEL)
    median = np.nan_to_num(stats.nbinom.ppf(0.5, pred.n, pred.p)).astype("int64")
    zero_chance = np.where(pred.weeks > 0, stats.nbinom.pmf(0, pred.n, pred.p), 1.0)
    forecastable = (pred.weeks > 0) & (zero_chance <= MAX_ZERO_CHANCE)
    result = pd.DataFrame({"expected": pred.mean, "median": median, "low80": low, "high80": high,
                           "zero_chance": zero_chance, "forecastable": forecastable,
                           "history_weeks": pred.weeks}, index=table.index)
    result.attrs["predictive"] = pred
    return result


def _randomised_inside(pred: anomaly.Predictive, rows: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Probability that the randomised PIT of each actual count falls in the central 80 % (Czado, Gneiting &
    Held 2009, Biometrics 65:1254): the calibration measure for whole-number forecasts, exactly 0.8 on average
    when the forecast distribution is right, however small the counts."""
    n, p = pred.n[rows], pred.p[rows]
    below = stats.nbinom.cdf(actual - 1.0, n, p)
    upto = stats.nbinom.cdf(actual, n, p)
    tail = (1.0 - LEVEL) / 2.0
    overlap = np.clip(np.minimum(upto, 1.0 - tail) - np.maximum(below, tail), 0.0, None)
    width = upto - below
    return np.where(width > 0, overlap / np.where(width > 0, width, 1.0), 0.0)


def forecast_week(con, iso_week: str, keys: tuple[str, ...] = ("area_code", "category")) -> pd.DataFrame:
    """The forecast for the week after ``iso_week`` per ``keys`` cell (area x category by default), from the
    weeks up to ``iso_week`` (never a later one: a backfill gives the same forecast).

    Partners are those that delivered ``iso_week`` (a partner that stopped delivering is not forecast); a
    history week in which one of them did not deliver is left out.
    """
    from pipelines import report_weekly

    target = next_week(iso_week)
    weeks = anomaly.history_weeks(target)
    cells = report_weekly.query(con, "weekly_cells", {"weeks": weeks})
    delivered = report_weekly.delivered_weeks(con, cells, weeks)
    present = sorted({p for p, w in delivered if w == iso_week})
    # cell_matrix wants an "observed" week: use the last history week and put it back into the history
    index, observed, history = anomaly.cell_matrix(cells, iso_week, weeks[:-1], present, delivered, list(keys))
    history = np.column_stack([history, observed]) if len(index) else np.zeros((0, len(weeks)))
    table = pd.DataFrame(history, columns=weeks)
    result = predict(table, target, index["category"].to_numpy() if "category" in keys else None)
    return pd.concat([index, result], axis=1).assign(iso_week=target)


@dataclass(frozen=True)
class Backtest:
    origins: int
    cells: int  # cell-weeks with an actual count and some history
    forecasts: int  # of those, the forecast ones (the publication rule)
    excluded_share: float  # "too few to forecast"
    coverage: float  # plain share of actual counts inside the 80 % interval, over the forecast cells
    pit_coverage: float  # randomised-PIT coverage over the same cells (diagnostic)
    busy_coverage: float
    busy_forecasts: int
    coverage_all: float  # plain share over every cell, as if the rule did not exist (diagnostic)
    pit_coverage_all: float
    mae_point: float  # published point forecast (median) vs naive same week last year, forecast cells
    mae_mean: float
    mae_naive_last_year: float
    compared: int
    mae_point_recent: float  # published point forecast vs naive last week, forecast cells
    mae_naive_last_week: float
    compared_recent: int
    seconds: float

    def line(self, name: str) -> str:
        return (f"{name}: {self.origins} origins, {self.forecasts} forecasts of {self.cells} cell-weeks "
                f"({self.excluded_share:.1%} too few to forecast); 80 % interval covers {self.coverage:.1%} "
                f"(randomised PIT {self.pit_coverage:.1%}; cells expecting >= {BUSY:g} a week {self.busy_coverage:.1%} "
                f"of {self.busy_forecasts}; every cell, no rule: {self.coverage_all:.1%}, PIT {self.pit_coverage_all:.1%}); "
                f"MAE of the published median {self.mae_point:.3f} (mean {self.mae_mean:.3f}) vs naive same week "
                f"last year {self.mae_naive_last_year:.3f} over {self.compared}; median {self.mae_point_recent:.3f} vs "
                f"naive last week {self.mae_naive_last_week:.3f} over {self.compared_recent}; {self.seconds:.1f} s")


def _mean(parts: list[np.ndarray]) -> float:
    joined = np.concatenate(parts) if parts else np.zeros(0)
    return float(joined.mean()) if len(joined) else float("nan")


def backtest(table: pd.DataFrame, targets: list[str], groups: np.ndarray | None = None) -> Backtest:
    """Rolling-origin backtest: for each target week, forecast from the weeks before it and compare.

    ``table``: cells x ISO-week columns (0 = nothing happened, NaN = no data). Only forecast cells (the
    publication rule of :func:`predict`, as in the report) enter coverage and error; every cell with history
    enters ``coverage_all``. The naive errors are taken over the same forecast cells, where the naive week is in
    the table.
    """
    import time

    started = time.perf_counter()
    covered, covered_all, pit, pit_all, busy = [], [], [], [], []
    point_err, mean_err, naive_err, recent_err, last_week_err = [], [], [], [], []
    for target in targets:
        actual = table[target].to_numpy(dtype=float)
        result = predict(table, target, groups)
        known = ~np.isnan(actual) & (result["history_weeks"].to_numpy() > 0)
        inside = (actual >= result["low80"].to_numpy()) & (actual <= result["high80"].to_numpy())
        randomised = _randomised_inside(result.attrs["predictive"], np.arange(len(actual)), np.nan_to_num(actual))
        chosen = known & result["forecastable"].to_numpy()
        covered_all.append(inside[known])
        pit_all.append(randomised[known])
        covered.append(inside[chosen])
        pit.append(randomised[chosen])
        busy.append(inside[chosen & (result["expected"].to_numpy() >= BUSY)])
        point, mean = result["median"].to_numpy(dtype=float), result["expected"].to_numpy()
        monday = date.fromisocalendar(int(target[:4]), int(target[6:8]), 1)
        for naive_week, errors, naive_errors in ((same_week_last_year(target), point_err, naive_err),
                                                 (iso_label(monday - timedelta(weeks=1)), recent_err, last_week_err)):
            if naive_week not in table.columns:
                continue
            naive = table[naive_week].to_numpy(dtype=float)
            ok = chosen & ~np.isnan(naive)
            errors.append(np.abs(point[ok] - actual[ok]))
            naive_errors.append(np.abs(naive[ok] - actual[ok]))
            if errors is point_err:
                mean_err.append(np.abs(mean[ok] - actual[ok]))
    cells = int(sum(len(c) for c in covered_all))
    forecasts = int(sum(len(c) for c in covered))
    return Backtest(
        origins=len(targets), cells=cells, forecasts=forecasts,
        excluded_share=1.0 - forecasts / cells if cells else float("nan"),
        coverage=_mean(covered), pit_coverage=_mean(pit),
        busy_coverage=_mean(busy), busy_forecasts=int(sum(len(b) for b in busy)),
        coverage_all=_mean(covered_all), pit_coverage_all=_mean(pit_all),
        mae_point=_mean(point_err), mae_mean=_mean(mean_err), mae_naive_last_year=_mean(naive_err),
        compared=int(sum(len(e) for e in point_err)),
        mae_point_recent=_mean(recent_err), mae_naive_last_week=_mean(last_week_err),
        compared_recent=int(sum(len(e) for e in recent_err)),
        seconds=time.perf_counter() - started,
    )


def police_events_weekly(path: Path, municipalities: list[str]) -> pd.DataFrame:
    """Weekly counts per municipality x event type from the polisen.se events archive (JSON lines, gzip ok).

    Only events whose ``location.name`` is one of ``municipalities`` (county-level events name the county and
    are left out). Weeks are ISO weeks of the event's local time; weeks between the first and the last full week
    of the archive with no event in a cell are 0. Rows: (municipality, type); columns: ISO weeks.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    wanted = set(municipalities)
    rows, days = [], []
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines() if line]
    for record in records:
        moment = datetime.strptime(record["datetime"], "%Y-%m-%d %H:%M:%S %z")
        day = moment.date()
        days.append(iso_label(day))
        name = (record.get("location") or {}).get("name")
        if name in wanted:
            rows.append((name, str(record["type"]), iso_label(day)))
    frame = pd.DataFrame(rows, columns=["area", "category", "iso_week"])
    # The archive is a scrape: in some weeks it caught few or no events anywhere in Sweden. A week is "covered"
    # when the whole archive holds at least half its median weekly count; other weeks are no data (NaN), not 0.
    per_week = pd.Series(days).value_counts()
    ordered = sorted(per_week.index, key=lambda w: date.fromisocalendar(int(w[:4]), int(w[6:8]), 1))
    first_day = date.fromisocalendar(int(ordered[0][:4]), int(ordered[0][6:8]), 1)
    last_day = date.fromisocalendar(int(ordered[-1][:4]), int(ordered[-1][6:8]), 1)
    weeks = [iso_label(first_day + timedelta(weeks=k)) for k in range((last_day - first_day).days // 7 + 1)]
    national = per_week.reindex(weeks, fill_value=0)
    covered = national >= 0.5 * float(national[national > 0].median())
    # From 2026-02 the API names only the county for Örebro län's events: after the last week with any event
    # of the wanted places (and before the first) there is no data for them, not a run of zeros.
    own = pd.Series(1, index=frame["iso_week"]).groupby(level=0).sum().reindex(weeks, fill_value=0)
    seen = np.flatnonzero(own.to_numpy() > 0)
    if len(seen):
        span = np.zeros(len(weeks), dtype=bool)
        span[seen[0]: seen[-1] + 1] = True
        covered &= span
    table = frame.pivot_table(index=["area", "category"], columns="iso_week", aggfunc="size", fill_value=0)
    table = table.reindex(columns=weeks, fill_value=0).astype(float)
    table.loc[:, ~covered.to_numpy()] = np.nan
    return table
