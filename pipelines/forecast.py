"""Next week's expected counts per area and category, with an 80 % interval, and the backtest behind them.

Issue 5, item 4. The forecast uses the same negative-binomial predictive distribution as the test for
"beyond normal variation" (:mod:`pipelines.anomaly`): the 13 weeks before the forecast week pooled with the same
ISO week +- 2 weeks in each earlier year the warehouse holds, a Jeffreys gamma prior on the weekly rate (so the
uncertainty of the mean widens the interval) and the category's extra-Poisson variation estimated from the
history. The interval is the central 80 % of that distribution (``scipy.stats.nbinom.ppf`` at 0.1 and 0.9).

Counts are whole numbers, so an "80 % interval" covers at least 80 % for a cell with a large mean and more for a
cell that is nearly always 0 (its interval [0, 0] covers every quiet week). :func:`backtest` measures the share
of actual counts inside the interval over rolling origins, and the mean absolute error of the forecast mean
against the naive forecast "the same ISO week last year", over the same cells and weeks.
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
#: Cells whose forecast mean is at least this many events a week: where a whole-number 80 % interval can be
#: close to 80 % (a cell expecting 0.05 a week has the interval [0, 0], which covers 95 % of its weeks).
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

    Only columns strictly before ``target`` are used. Returns expected, low80, high80 per row (same index).
    """
    weeks = [w for w in anomaly.history_weeks(target) if w in table.columns]
    history = table[weeks].to_numpy(dtype=float) if weeks else np.full((len(table), 1), np.nan)
    alpha = anomaly.dispersion(history, groups)
    pred = anomaly.predictive(history, alpha)
    low, high = pred.interval(LEVEL)
    median = np.nan_to_num(stats.nbinom.ppf(0.5, pred.n, pred.p)).astype("int64")
    result = pd.DataFrame({"expected": pred.mean, "median": median, "low80": low, "high80": high,
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
    forecasts: int
    coverage: float
    pit_coverage: float
    busy_coverage: float
    busy_forecasts: int
    mae: float
    mae_median: float
    mae_naive_last_year: float
    compared: int
    mae_recent: float
    mae_naive_last_week: float
    seconds: float

    def line(self, name: str) -> str:
        return (f"{name}: {self.origins} origins, {self.forecasts} forecasts; 80 % interval covers "
                f"{self.coverage:.1%} (randomised PIT {self.pit_coverage:.1%}; cells expecting >= {BUSY:g} a week: "
                f"{self.busy_coverage:.1%} of {self.busy_forecasts}); MAE of the mean {self.mae:.3f}, of the median "
                f"{self.mae_median:.3f}, naive same-week-last-year {self.mae_naive_last_year:.3f} "
                f"(over {self.compared} forecasts with a last-year week); over all forecasts MAE of the mean "
                f"{self.mae_recent:.3f} vs naive last week {self.mae_naive_last_week:.3f}; {self.seconds:.1f} s")


def backtest(table: pd.DataFrame, targets: list[str], groups: np.ndarray | None = None) -> Backtest:
    """Rolling-origin backtest: for each target week, forecast from the weeks before it and compare.

    ``table``: cells x ISO-week columns (0 = nothing happened, NaN = no data). Coverage counts the actual
    counts inside [low80, high80]; the MAE of the forecast mean and of the naive same-week-last-year count are
    taken over the forecasts whose last-year week is in the table.
    """
    import time

    started = time.perf_counter()
    inside = total = busy_inside = busy_total = 0
    pit_inside = 0.0
    errors, median_errors, naive_errors, recent_errors, last_week_errors = [], [], [], [], []
    for target in targets:
        actual = table[target].to_numpy(dtype=float)
        result = predict(table, target, groups)
        known = ~np.isnan(actual) & (result["history_weeks"].to_numpy() > 0)
        a, lo, hi = actual[known], result["low80"].to_numpy()[known], result["high80"].to_numpy()[known]
        covered = (a >= lo) & (a <= hi)
        inside += int(covered.sum())
        total += int(known.sum())
        busy = result["expected"].to_numpy()[known] >= BUSY
        busy_inside += int(covered[busy].sum())
        busy_total += int(busy.sum())
        pit_inside += float(_randomised_inside(result.attrs["predictive"], known, a).sum())
        previous = iso_label(date.fromisocalendar(int(target[:4]), int(target[6:8]), 1) - timedelta(weeks=1))
        if previous in table.columns:
            naive = table[previous].to_numpy(dtype=float)
            ok = known & ~np.isnan(naive)
            recent_errors.append(np.abs(result["expected"].to_numpy()[ok] - actual[ok]))
            last_week_errors.append(np.abs(naive[ok] - actual[ok]))
        last_year = same_week_last_year(target)
        if last_year in table.columns:
            naive = table[last_year].to_numpy(dtype=float)
            ok = known & ~np.isnan(naive)
            errors.append(np.abs(result["expected"].to_numpy()[ok] - actual[ok]))
            median_errors.append(np.abs(result["median"].to_numpy()[ok] - actual[ok]))
            naive_errors.append(np.abs(naive[ok] - actual[ok]))
    errors_all = np.concatenate(errors) if errors else np.zeros(0)
    naive_all = np.concatenate(naive_errors) if naive_errors else np.zeros(0)
    return Backtest(
        origins=len(targets), forecasts=total, coverage=inside / total if total else float("nan"),
        pit_coverage=pit_inside / total if total else float("nan"),
        busy_coverage=busy_inside / busy_total if busy_total else float("nan"), busy_forecasts=busy_total,
        mae=float(errors_all.mean()) if len(errors_all) else float("nan"),
        mae_median=float(np.concatenate(median_errors).mean()) if median_errors else float("nan"),
        mae_naive_last_year=float(naive_all.mean()) if len(naive_all) else float("nan"),
        compared=len(errors_all),
        mae_recent=float(np.concatenate(recent_errors).mean()) if recent_errors else float("nan"),
        mae_naive_last_week=float(np.concatenate(last_week_errors).mean()) if last_week_errors else float("nan"),
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
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l]
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
