"""Is a week's count beyond normal variation? Baselines, a small-count test and false-discovery control.

DESIGN.md section 3 ("Aggregate": baselines, rates, flags for unusual weeks) and issue 5, item 3. Everything here
works on whole arrays (one row per area x category cell, one column per history week): no loop per cell.

The model (a gamma-Poisson, i.e. negative binomial, predictive distribution)
- History of a cell = the ``recent`` weeks before the week (8 by default) pooled with the same ISO week and
  the ``season_halfwidth`` weeks either side of it in each earlier year that the warehouse holds. Weeks in
  which a partner that delivered this week did not deliver are left out of the history altogether (NaN), so
  a missing delivery never lowers the baseline (DESIGN.md section 6, "Data completeness").
- The weekly rate of a cell gets a Jeffreys-like gamma posterior from its history: shape ``PRIOR_SHAPE + S``,
  rate ``k`` (S = events in the k history weeks). Its mean ``(S + 0.5) / k`` is the expected count. The
  uncertainty of that mean (an 8-week mean of 1.2 is not known exactly) and the extra-Poisson variation of the
  category (``alpha``, estimated by moments from the history of all cells of the category, never below 0) both
  widen the predictive distribution: a negative binomial with mean ``mu`` and ``1/r = 1/(0.5 + S) + alpha``,
  so that variance = mu + mu^2 / r. A cell never seen before is therefore not flagged for one or two events.
- One-sided p-value for the observed count x: P(X >= x). The report flags increases beyond normal variation
  (what the meeting must act on); a fall is shown as a change, never flagged.
- Benjamini-Hochberg (1995) across the area x category cells of the week at ``FDR_LEVEL``; the family is every
  cell with at least ``MIN_FAMILY_EVENTS`` events in the week and its history together (independent filtering,
  see the constant); the others get p = q = 1 and are never flagged.
  BH controls the expected share of false flags among the flags; with no real change anywhere, it keeps the
  chance of any flag in a report below ``FDR_LEVEL``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: Weeks before the report week in the recent baseline (a quarter: DESIGN.md's rolling 13 weeks). Measured on
#: the generated season: with 8 weeks the estimate of a cell's mean is too uncertain for the planted 4x week
#: to pass the false-discovery control across ~1,000 cells; 13 weeks finds it without false alarms.
RECENT_WEEKS = 13
#: Same ISO week +- this many weeks in each earlier year (a five-week seasonal window per year).
SEASON_HALFWIDTH = 2
#: How many earlier years the seasonal baseline looks back (those present in the warehouse are used).
SEASON_YEARS = 3
#: False-discovery rate across the cells of one week: at most 5 % of the flags are expected to be false.
FDR_LEVEL = 0.05
#: Gamma prior shape of a cell's weekly rate (Jeffreys prior for a Poisson mean): half an event.
PRIOR_SHAPE = 0.5
#: A cell enters the week's family only with at least this many events in the week and its history together
#: ("independent filtering", Bourgon, Gentleman & Huber 2010, PNAS 107:9546): under a constant Poisson rate the
#: total is sufficient and says nothing about how it splits between the week and its history, so filtering on
#: it keeps the FDR control while sparing the correction hundreds of cells that could never reach it.
MIN_FAMILY_EVENTS = 5
#: Upper bound for the estimated dispersion (guards a category with two wild weeks).
MAX_ALPHA = 5.0


@dataclass(frozen=True)
class Predictive:
    """Negative-binomial predictive distribution per cell: mean, scipy's (n, p) and the history size."""

    mean: np.ndarray
    n: np.ndarray
    p: np.ndarray
    weeks: np.ndarray
    events: np.ndarray

    def interval(self, level: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """A whole-number interval holding as close to ``level`` of the predictive probability as possible.

        Starts from the central quantiles (scipy's ``nbinom.ppf`` at (1-level)/2 and (1+level)/2), which hold
        *at least* ``level`` and, for counts of a few a week, far more (each end carries a whole value's
        probability). Of that interval and the ones with one end moved in by one, the one whose probability is
        nearest ``level`` is kept (the wider one on a tie). A cell that is nearly always 0 keeps [0, 0].
        """
        tail = (1.0 - level) / 2.0
        low = np.nan_to_num(stats.nbinom.ppf(tail, self.n, self.p)).astype("int64")
        high = np.nan_to_num(stats.nbinom.ppf(1.0 - tail, self.n, self.p)).astype("int64")
        best_low, best_high = low.copy(), high.copy()
        best_gap = np.abs(self._mass(low, high) - level)
        for dl, dh in ((0, -1), (1, 0), (1, -1)):
            lo, hi = low + dl, high + dh
            ok = lo <= hi
            gap = np.where(ok, np.abs(self._mass(lo, hi) - level), np.inf)
            better = gap < best_gap - 1e-12
            best_low, best_high = np.where(better, lo, best_low), np.where(better, hi, best_high)
            best_gap = np.where(better, gap, best_gap)
        return best_low, best_high

    def _mass(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return stats.nbinom.cdf(high, self.n, self.p) - stats.nbinom.cdf(low - 1, self.n, self.p)

    def p_values(self, observed: np.ndarray) -> np.ndarray:
        """One-sided p-values P(X >= observed); 1 for a cell without history (no test)."""
        x = np.asarray(observed, dtype=float)
        p = stats.nbinom.sf(x - 1.0, self.n, self.p)
        return np.where(self.weeks > 0, p, 1.0)


def dispersion(history: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Extra-Poisson variation ``alpha`` per cell (var = mu + alpha mu^2), by moments over each group's cells.

    ``history``: cells x weeks (NaN = week left out). For each cell, the sample mean m and variance v over its
    weeks estimate mu and mu + alpha mu^2; alpha = sum(v - m) / sum(m^2 - m/k) over the group's cells with any
    event, clipped to [0, MAX_ALPHA]. Pooling over a category's areas makes the estimate stable where one
    cell's eight weeks could not.
    """
    history = np.asarray(history, dtype=float)
    cells = history.shape[0]
    groups = np.zeros(cells, dtype="int64") if groups is None else pd.factorize(np.asarray(groups))[0]
    k = np.sum(~np.isnan(history), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.nansum(history, axis=1) / np.maximum(k, 1)
        v = np.where(k > 1, np.nansum((history - m[:, None]) ** 2, axis=1) / np.maximum(k - 1, 1), 0.0)
    usable = (k > 1) & (m > 0)
    size = int(groups.max()) + 1 if cells else 0
    num = np.bincount(groups[usable], weights=(v - m)[usable], minlength=size)
    den = np.bincount(groups[usable], weights=(m * m - m / np.maximum(k, 1))[usable], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where(den > 0, num / den, 0.0)
    alpha = np.clip(np.nan_to_num(alpha), 0.0, MAX_ALPHA)
    return alpha[groups] if cells else np.zeros(0)


def predictive(history: np.ndarray, alpha: np.ndarray | float = 0.0) -> Predictive:
    """The negative-binomial predictive distribution of next week's count of each cell (see module docstring)."""
    history = np.asarray(history, dtype=float)
    k = np.sum(~np.isnan(history), axis=1).astype(float)
    events = np.nansum(history, axis=1)
    shape = PRIOR_SHAPE + events
    mean = np.where(k > 0, shape / np.maximum(k, 1.0), 0.0)
    inv_r = 1.0 / shape + np.broadcast_to(np.asarray(alpha, dtype=float), shape.shape)
    r = 1.0 / inv_r
    p = r / (r + np.maximum(mean, 1e-12))
    return Predictive(mean=mean, n=r, p=p, weeks=k.astype("int64"), events=events)


def benjamini_hochberg(p_values: np.ndarray, level: float = FDR_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """BH step-up: (rejected, adjusted q-values). Ties and order handled; NaN counts as 1."""
    p = np.nan_to_num(np.asarray(p_values, dtype=float), nan=1.0)
    m = len(p)
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q <= level, q


def assess(
    observed: np.ndarray, history: np.ndarray, groups: np.ndarray | None = None, level: float = FDR_LEVEL
) -> pd.DataFrame:
    """Test every cell at once: expected count, 80 % band, p-value, BH q-value and flag.

    The family for BH is the cells with at least ``MIN_FAMILY_EVENTS`` events in the week and its history;
    the others get q = 1.
    """
    observed = np.asarray(observed, dtype=float)
    history = np.asarray(history, dtype=float)
    alpha = dispersion(history, groups)
    pred = predictive(history, alpha)
    p = pred.p_values(observed)
    family = (observed + pred.events) >= MIN_FAMILY_EVENTS
    flagged = np.zeros(len(p), dtype=bool)
    q = np.ones(len(p))
    if family.any():
        rejected, q_family = benjamini_hochberg(p[family], level)
        flagged[family], q[family] = rejected, q_family
    low, high = pred.interval(0.8)
    return pd.DataFrame(
        {
            "observed": observed.astype("int64"),
            "expected": pred.mean,
            "low80": low,
            "high80": high,
            "history_weeks": pred.weeks,
            "alpha": alpha,
            "p_value": p,
            "q_value": q,
            "in_family": family,
            "flagged": flagged,
        }
    )


def history_weeks(iso_week: str, recent: int = RECENT_WEEKS, years: int = SEASON_YEARS,
                  halfwidth: int = SEASON_HALFWIDTH) -> list[str]:
    """The baseline weeks of ``iso_week``: the ``recent`` weeks before it, then the seasonal windows of the
    earlier years (same ISO week number +- ``halfwidth``), all strictly before the week, oldest first."""
    from datetime import date, timedelta

    year, week = int(iso_week[:4]), int(iso_week[6:8])
    monday = date.fromisocalendar(year, week, 1)

    def label(day: date) -> str:
        y, w, _ = day.isocalendar()
        return f"{y}-W{w:02d}"

    chosen = {label(monday - timedelta(weeks=k)) for k in range(1, recent + 1)}
    for back in range(1, years + 1):
        # the same ISO week number in an earlier year (week 53 falls back to week 52)
        try:
            centre = date.fromisocalendar(year - back, week, 1)
        except ValueError:
            centre = date.fromisocalendar(year - back, 52, 1)
        for shift in range(-halfwidth, halfwidth + 1):
            chosen.add(label(centre + timedelta(weeks=shift)))
    mondays = {w: date.fromisocalendar(int(w[:4]), int(w[6:8]), 1) for w in chosen}
    return sorted((w for w in chosen if mondays[w] < monday), key=mondays.get)


def cell_matrix(
    cells: pd.DataFrame, week: str, weeks: list[str], present: list[str], delivered: set[tuple[str, str]],
    keys: list[str],
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Counts of ``keys`` cells (e.g. area_code, category) this week and per history week, as arrays.

    Only partners in ``present`` (those that delivered this week) are counted, in every week; a history week in
    which one of them did not deliver is NaN for every cell (left out, not zero). Returns the cell index (a
    frame of ``keys``), this week's counts and the history matrix (cells x weeks).
    """
    use = cells[cells["partner"].isin(present) & cells["iso_week"].isin([week, *weeks])]
    index = use[keys].drop_duplicates().sort_values(keys).reset_index(drop=True)
    columns = [*weeks, week]
    table = use.pivot_table(index=keys, columns="iso_week", values="n", aggfunc="sum", fill_value=0)
    table = table.reindex(columns=columns, fill_value=0)
    table = table.reindex(pd.MultiIndex.from_frame(index) if len(keys) > 1 else index[keys[0]], fill_value=0)
    values = table.to_numpy(dtype=float)
    complete = np.array([all((p, w) in delivered for p in present) for w in weeks], dtype=bool)
    history = values[:, :-1].copy() if len(index) else np.zeros((0, len(weeks)))
    history[:, ~complete] = np.nan
    observed = values[:, -1] if len(index) else np.zeros(0)
    return index, observed, history


def assess_week(con, iso_week: str, keys: tuple[str, ...] = ("area_code", "category")) -> pd.DataFrame:
    """The week's cells (``keys``: area x category by default) from `weekly_counts`, tested (see :func:`assess`).

    Reads only the aggregate (sql/weekly_cells.sql) and the ledger (which partner delivered for which week):
    only weeks before ``iso_week`` enter the history, so a later delivery never changes an earlier week's flags.
    """
    from pipelines import report_weekly  # the report imports this module

    weeks = history_weeks(iso_week)
    cells = report_weekly.query(con, "weekly_cells", {"weeks": [*weeks, iso_week]})
    delivered = report_weekly.delivered_weeks(con, cells, [*weeks, iso_week])
    present = sorted({p for p, w in delivered if w == iso_week})
    index, observed, history = cell_matrix(cells, iso_week, weeks, present, delivered, list(keys))
    groups = index["category"].to_numpy() if "category" in keys else None
    return pd.concat([index, assess(observed, history, groups)], axis=1)
