"""What worked: the effect of each intervention in the register, by difference in differences on weekly counts.

DESIGN.md section 6 ("Intervention follow-up") and issue 6 item 4: for each intervention, the change in its area
before and after its start, against comparable areas, with an interval, so that the quarterly analysis meeting
sees what worked.

The estimate
    Only the intervention's targeted categories count (an empty list in the register means all). Let T_pre,
    T_post be the intervention area's counts summed over the weeks before and after the start, and C_pre, C_post
    the same sums over the comparison areas pooled. The effect is the ratio of ratios

        R = (T_post / T_pre) / (C_post / C_pre)

    which is exactly the maximum-likelihood estimate of exp(beta) in the Poisson log-linear model
    log E[y_gw] = alpha_g + gamma_w + beta * (g = treated and w after the start), with one fixed effect per week
    (the season and any town-wide change, shared by both groups) and one per group (the areas' levels): given
    each week's total, the treated count is binomial, and the binomial MLE is the ratio of the two periods'
    odds. R = 0.6 reads "40 % fewer than the comparison areas' development would predict". The comparison
    assumes the areas would have moved in proportion without the intervention (parallel trends on the log
    scale): that is what choosing comparable areas is for, and the page says so.

The 90 % interval (honest for small counts)
    Weekly counts of one area are small (here 1 to 12) and over-dispersed (a single week of many fires), so
    neither a normal approximation nor a bootstrap alone is trusted. Two intervals are computed and the wider
    envelope is published:
    - a cluster bootstrap over weeks: weeks are resampled with replacement within the before and after
      periods separately (a week keeps its treated and comparison counts together, so shared shocks stay
      paired), 4,000 replicates with a fixed seed, the 5th and 95th percentiles of R (0.5 added to each sum,
      so a resample with a zero never gives 0 or infinity). It captures extra-Poisson variation between weeks;
    - the Poisson (Woolf) interval on the log scale, exp(log R +/- 1.645 sqrt(1/T_pre + 1/T_post + 1/C_pre +
      1/C_post)). It cannot be narrower than the counts allow, which a bootstrap over 6 or 13 weeks can be.
    The verdict is "decrease" when the whole interval is below 1, "increase" when above, otherwise "no certain
    change". An estimate is only made when each of the four sums holds at least MIN_COUNT incidents and each
    period at least MIN_WEEKS weeks with data; otherwise the page says there is too little to judge. Checked on
    the generated season (tests/test_intervention_effects.py): the planted 0.6 lies inside the interval, and a
    placebo intervention in an area without one shows no significant effect.

Comparable areas (the documented rule)
    Candidates are the areas of the same DeSO type (the letter after the municipality code: A mainly rural, B
    mainly in a town, C central town; SCB), with a population, without any intervention of their own in the
    register, not the intervention's area. Among them, the COMPARISON_AREAS areas whose rate of the targeted
    categories per 1,000 inhabitants in the before period is closest to the intervention area's (distance on
    the log scale) are pooled. Pooling weights each area by its counts, so the comparison follows where the
    incidents are.

Privacy
    Only effect estimates, intervals, verdicts and numbers of weeks and areas are published: no count of the
    intervention area or of its comparison areas appears (PRIVACY.md, "Published numbers"), and no estimate is
    made from sums below MIN_COUNT (which is the sensitive small-count threshold as well). Counts come from the
    aggregate `weekly_counts` only. Titles are the register's (project text, edited by the security department).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipelines import privacy
from pipelines.report_weekly import IsoWeek, query

#: Confidence of the published interval (the issue asks for 90 %): its two-sided normal quantile.
CONFIDENCE = 0.90
Z_90 = 1.6448536269514722
#: Bootstrap replicates and seed: enough for stable 5th/95th percentiles (about +/- 0.01 on R); fixed, so the
#: same data gives the same page.
BOOTSTRAP_REPLICATES = 4000
BOOTSTRAP_SEED = 20260824
#: How many comparison areas are pooled. Five to eight similar areas keep the comparison close in level and
#: still hold enough incidents; more would pull in areas unlike the intervention's.
COMPARISON_AREAS = 6
#: At most this many weeks before the start are used: half a year, so an old level does not stand in for the
#: one just before the intervention.
MAX_PRE_WEEKS = 26
#: At least this many weeks with data in each period, else it is too early (or too late) to judge.
MIN_WEEKS = 4
#: At least this many incidents in each of the four sums, else too few to judge. It equals the strict small-count
#: threshold, so an estimate is never made from a count that would be suppressed.
MIN_COUNT = privacy.SENSITIVE_THRESHOLD

VERDICT_DECREASE = "decrease"
VERDICT_INCREASE = "increase"
VERDICT_NONE = "no_certain_change"
VERDICT_TOO_FEW = "too_few"
VERDICT_TOO_EARLY = "too_early"

VERDICTS_SV = {
    VERDICT_DECREASE: "Minskning: färre händelser än i jämförbara områden, och hela intervallet ligger under noll.",
    VERDICT_INCREASE: "Ökning: fler händelser än i jämförbara områden, och hela intervallet ligger över noll.",
    VERDICT_NONE: "Ingen säker förändring: intervallet rymmer både minskning och ökning.",
    VERDICT_TOO_FEW: "För få händelser för att bedöma effekten.",
    VERDICT_TOO_EARLY: "För tidigt att bedöma: för få veckor med data före eller efter start.",
}


@dataclass
class Effect:
    """One intervention's follow-up. Holds no count: only what may be published."""

    intervention_id: str
    title: str
    area_code: str
    area_name: str
    categories: list[str]
    starts_on: date
    first_post_week: str
    pre_weeks: int = 0
    post_weeks: int = 0
    comparison_areas: list[str] = field(default_factory=list)
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    verdict: str = VERDICT_TOO_EARLY

    @property
    def verdict_sv(self) -> str:
        return VERDICTS_SV[self.verdict]

    @property
    def significant(self) -> bool:
        return self.verdict in (VERDICT_DECREASE, VERDICT_INCREASE)

    def as_row(self) -> dict[str, Any]:
        return {
            "intervention_id": self.intervention_id, "title": self.title, "area_code": self.area_code,
            "area_name": self.area_name, "categories": list(self.categories), "starts_on": self.starts_on,
            "first_post_week": self.first_post_week, "pre_weeks": self.pre_weeks, "post_weeks": self.post_weeks,
            "comparison_areas": list(self.comparison_areas), "estimate": self.estimate, "low": self.low,
            "high": self.high, "verdict": self.verdict, "verdict_sv": self.verdict_sv,
        }


# --------------------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------------------


def ratio_of_ratios(t_pre: float, t_post: float, c_pre: float, c_post: float) -> float:
    """(T_post / T_pre) / (C_post / C_pre): the Poisson difference-in-differences estimate (module docstring)."""
    return (t_post / t_pre) / (c_post / c_pre)


def poisson_interval(t_pre: float, t_post: float, c_pre: float, c_post: float, z: float = Z_90) -> tuple[float, float]:
    """Woolf's interval for a ratio of two Poisson ratios, on the log scale."""
    estimate = ratio_of_ratios(t_pre, t_post, c_pre, c_post)
    se = float(np.sqrt(1 / t_pre + 1 / t_post + 1 / c_pre + 1 / c_post))
    return float(estimate * np.exp(-z * se)), float(estimate * np.exp(z * se))


def bootstrap_interval(
    treated_pre: np.ndarray, comparison_pre: np.ndarray, treated_post: np.ndarray, comparison_post: np.ndarray,
    replicates: int = BOOTSTRAP_REPLICATES, seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile interval of R from resampling weeks with replacement within each period (weeks as clusters).

    Vectorised: each replicate's week multiplicities are one multinomial draw, and the resampled sums are one
    matrix product per series. 0.5 is added to each sum (Haldane), so no replicate divides by zero.
    """
    rng = np.random.default_rng(seed)
    n_pre, n_post = len(treated_pre), len(treated_post)
    pre = rng.multinomial(n_pre, np.full(n_pre, 1.0 / n_pre), size=replicates)
    post = rng.multinomial(n_post, np.full(n_post, 1.0 / n_post), size=replicates)
    t_pre = pre @ np.asarray(treated_pre, float) + 0.5
    c_pre = pre @ np.asarray(comparison_pre, float) + 0.5
    t_post = post @ np.asarray(treated_post, float) + 0.5
    c_post = post @ np.asarray(comparison_post, float) + 0.5
    ratios = (t_post / t_pre) / (c_post / c_pre)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def did(weekly: pd.DataFrame, treated: str, comparison: list[str], post_from: str) -> dict[str, Any]:
    """The estimate and interval from a weeks x areas table of counts (index: ISO week labels, sorted).

    Weeks before ``post_from`` are the before period, weeks from it on the after period. Returns estimate, low,
    high and the verdict; estimate and interval are None when the data is too thin (module docstring).
    """
    treated_series = weekly[treated] if treated in weekly else pd.Series(0, index=weekly.index)
    comparison_series = weekly.reindex(columns=comparison, fill_value=0).sum(axis=1)
    before = weekly.index < post_from
    after = ~before
    result: dict[str, Any] = {"pre_weeks": int(before.sum()), "post_weeks": int(after.sum()),
                              "estimate": None, "low": None, "high": None}
    if result["pre_weeks"] < MIN_WEEKS or result["post_weeks"] < MIN_WEEKS or not comparison:
        result["verdict"] = VERDICT_TOO_EARLY
        return result
    t_pre, t_post = float(treated_series[before].sum()), float(treated_series[after].sum())
    c_pre, c_post = float(comparison_series[before].sum()), float(comparison_series[after].sum())
    if min(t_pre, t_post, c_pre, c_post) < MIN_COUNT:
        result["verdict"] = VERDICT_TOO_FEW
        return result
    estimate = ratio_of_ratios(t_pre, t_post, c_pre, c_post)
    p_low, p_high = poisson_interval(t_pre, t_post, c_pre, c_post)
    b_low, b_high = bootstrap_interval(
        treated_series[before].to_numpy(), comparison_series[before].to_numpy(),
        treated_series[after].to_numpy(), comparison_series[after].to_numpy(),
    )
    low, high = min(p_low, b_low), max(p_high, b_high)
    verdict = VERDICT_DECREASE if high < 1 else VERDICT_INCREASE if low > 1 else VERDICT_NONE
    result.update(estimate=estimate, low=low, high=high, verdict=verdict)
    return result


def comparable_areas(
    areas: pd.DataFrame, pre_counts: pd.Series, treated: str, excluded: set[str], k: int = COMPARISON_AREAS
) -> list[str]:
    """The rule in the module docstring: same DeSO type letter, a population, no intervention of their own,
    the ``k`` nearest in before-period rate per 1,000 (log scale; ties by area code).

    ``areas`` has area_code and population; ``pre_counts`` is each area's count in the before period.
    """
    frame = areas[["area_code", "population"]].copy()
    frame = frame[frame["population"].notna() & (frame["population"] > 0)]
    frame["rate"] = 1000.0 * frame["area_code"].map(pre_counts).fillna(0).astype(float) / frame["population"]
    mine = frame.loc[frame["area_code"] == treated, "rate"]
    if mine.empty:
        return []
    letter = _type_letter(treated)
    candidates = frame[
        (frame["area_code"] != treated)
        & ~frame["area_code"].isin(excluded)
        & (frame["area_code"].map(_type_letter) == letter)
    ].copy()
    # Half an incident per area keeps log() finite for an area with none; it does not change the order much.
    offset = 1000.0 * 0.5 / candidates["population"]
    target = float(mine.iloc[0]) + 1000.0 * 0.5 / float(frame.loc[frame["area_code"] == treated, "population"].iloc[0])
    candidates["distance"] = np.abs(np.log(candidates["rate"] + offset) - np.log(target))
    chosen = candidates.sort_values(["distance", "area_code"]).head(k)
    return sorted(chosen["area_code"].tolist())


def _type_letter(code: str) -> str:
    """The DeSO type letter: '1880C1540' -> 'C'. A code of another form is its own type."""
    code = str(code)
    return code[4] if len(code) == 9 and code[4] in "ABC" else code


def first_post_week(starts_on: date) -> IsoWeek:
    """The first whole ISO week of the intervention: its start week when it starts on a Monday, else the next
    one (the week it starts in is partly before and partly after, so it belongs to neither period)."""
    week = IsoWeek.of(starts_on)
    return week if starts_on.weekday() == 0 else IsoWeek.of(week.monday + pd.Timedelta(days=7).to_pytimedelta())


# --------------------------------------------------------------------------------------------------------
# From the warehouse
# --------------------------------------------------------------------------------------------------------


def register(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The intervention register with area names (sql/quarterly_interventions.sql)."""
    return query(con, "quarterly_interventions")


def evaluate(
    con: duckdb.DuckDBPyConnection,
    last_week: str,
    interventions: pd.DataFrame | None = None,
) -> list[Effect]:
    """The follow-up of every intervention (or of the given rows, same columns as :func:`register`), using
    the weeks with data up to and including ``last_week`` ('YYYY-Www': the quarter's last week in the pack).

    Areas with any intervention in the whole register are never comparison areas (they are not untreated),
    also when ``interventions`` holds other rows (a placebo in a test).
    """
    from pipelines.geography import load_areas_from_db

    full_register = register(con)
    rows = full_register if interventions is None else interventions
    areas = load_areas_from_db(con)
    names = dict(zip(areas["area_code"], areas["area_name"]))
    with_interventions = set(full_register["area_code"].astype(str))
    data_weeks = [str(w) for w in query(con, "quarterly_data_weeks", {"last_week": last_week})["iso_week"]]
    effects = []
    for row in rows.itertuples(index=False):
        starts = row.starts_on.date() if hasattr(row.starts_on, "date") else row.starts_on
        ends = None if row.ends_on is None or pd.isna(row.ends_on) else (
            row.ends_on.date() if hasattr(row.ends_on, "date") else row.ends_on)
        categories = [str(c) for c in (list(row.categories) if row.categories is not None else [])]
        post_from = first_post_week(starts).label
        last = last_week if ends is None else min(last_week, IsoWeek.of(ends).label)
        before = [w for w in data_weeks if w < post_from][-MAX_PRE_WEEKS:]
        after = [w for w in data_weeks if post_from <= w <= last]
        effect = Effect(
            intervention_id=str(row.intervention_id), title=str(row.title), area_code=str(row.area_code),
            area_name=str(names.get(row.area_code) or row.area_code), categories=categories, starts_on=starts,
            first_post_week=post_from,
        )
        if not before or not after:
            effect.pre_weeks, effect.post_weeks = len(before), len(after)
            effects.append(effect)
            continue
        counts = query(con, "quarterly_intervention_counts",
                       {"categories": categories, "first_week": before[0], "last_week": after[-1]})
        weekly = counts.pivot_table(index="iso_week", columns="area_code", values="n", aggfunc="sum", fill_value=0)
        weekly = weekly.reindex(index=before + after, fill_value=0).astype(float)
        pre_counts = weekly.loc[before].sum(axis=0)
        comparison = comparable_areas(areas, pre_counts, effect.area_code, with_interventions - {effect.area_code})
        result = did(weekly, effect.area_code, comparison, post_from)
        effect.pre_weeks, effect.post_weeks = result["pre_weeks"], result["post_weeks"]
        effect.comparison_areas = comparison
        effect.estimate, effect.low, effect.high = result["estimate"], result["low"], result["high"]
        effect.verdict = result["verdict"]
        effects.append(effect)
    return effects
