"""The intervention follow-up (pipelines/intervention_effects.py) on the generated season and on known numbers.

The generator plants one intervention with a known effect (INS-2026-014 in 1880C1540 from 2026-W35: property
damage and places reported as unsafe x 0.6) and two without any (work/generator_truth.json). The estimate must
find the planted effect inside its 90 % interval, a placebo intervention where nothing happened must show no
significant effect, and what is published must be effect estimates only, never a count.
"""

from __future__ import annotations

import json
from contextlib import closing

import numpy as np
import pandas as pd
import pytest

from pipelines import intervention_effects as ie
from pipelines import warehouse

PLANTED = "INS-2026-014"


@pytest.fixture(scope="module")
def season(generated_season):
    truth = json.loads((generated_season.work / "generator_truth.json").read_text(encoding="utf-8"))
    with closing(warehouse.connect(generated_season)) as con:
        effects = ie.evaluate(con, truth["last_week"])
        register = ie.register(con)
        placebo = register[register["intervention_id"] == PLANTED].copy()
        placebo["intervention_id"] = "PLACEBO"
        placebos = {}
        codes = [str(c) for c in con.execute("SELECT area_code FROM areas ORDER BY area_code").fetchall() for c in c]
        for code in codes:
            if code in set(register["area_code"]):
                continue
            placebo["area_code"] = code
            placebos[code] = ie.evaluate(con, truth["last_week"], placebo)[0]
    return truth, {e.intervention_id: e for e in effects}, placebos


def test_planted_effect_lies_inside_the_90_percent_interval(season):
    truth, effects, _ = season
    planted = effects[PLANTED]
    true_multiplier = truth["intervention"]["true_rate_multiplier"]
    assert true_multiplier == 0.6
    assert planted.first_post_week == truth["intervention"]["start_week"] == "2026-W35"
    assert planted.categories == truth["intervention"]["categories"]
    assert planted.pre_weeks == 13 and planted.post_weeks == 13
    assert planted.low <= true_multiplier <= planted.high, (planted.low, planted.estimate, planted.high)
    # The effect is large enough to be seen: the whole interval is below 1, and the verdict says so.
    assert planted.high < 1 and planted.verdict == ie.VERDICT_DECREASE
    assert planted.verdict_sv.startswith("Minskning")


def test_comparison_areas_follow_the_documented_rule(season):
    truth, effects, _ = season
    planted = effects[PLANTED]
    with_interventions = {i["area_code"] for i in truth["interventions_register"]}
    assert len(planted.comparison_areas) == ie.COMPARISON_AREAS
    assert not set(planted.comparison_areas) & with_interventions
    assert all(code[4] == planted.area_code[4] for code in planted.comparison_areas)  # same DeSO type
    # The rule finds mostly the areas the generator made alike (vulnerable suburbs).
    assert len(set(planted.comparison_areas) & set(truth["intervention"]["comparison_areas"])) >= 3


def test_a_placebo_intervention_shows_no_significant_effect(season):
    truth, _, placebos = season
    # One of the generator's comparison areas, given a made-up intervention at the same date and categories.
    placebo = placebos["1880C1570"]
    assert placebo.estimate is not None
    assert placebo.low <= 1 <= placebo.high and placebo.verdict == ie.VERDICT_NONE
    # The whole placebo distribution: at the 90 % level about one area in ten could come out significant by
    # chance; far more would mean the interval is too narrow.
    judged = [p for p in placebos.values() if p.estimate is not None]
    assert len(judged) >= 15
    assert sum(p.significant for p in judged) <= 0.2 * len(judged)


def test_interventions_without_effect_are_not_found_to_work(season):
    _, effects, _ = season
    for other in ("INS-2026-009", "INS-2026-017"):
        assert effects[other].verdict in (ie.VERDICT_NONE, ie.VERDICT_TOO_FEW, ie.VERDICT_TOO_EARLY), effects[other]


def test_published_rows_hold_estimates_not_counts(season):
    _, effects, _ = season
    for effect in effects.values():
        row = effect.as_row()
        assert set(row) == {
            "intervention_id", "title", "area_code", "area_name", "categories", "starts_on", "first_post_week",
            "pre_weeks", "post_weeks", "comparison_areas", "estimate", "low", "high", "verdict", "verdict_sv",
        }
        for value in (row["estimate"], row["low"], row["high"]):
            assert value is None or isinstance(value, float)


def test_too_few_incidents_are_not_estimated():
    """Sums below MIN_COUNT (the strict small-count threshold) give no estimate, whatever the ratio."""
    weeks = [f"2026-W{w:02d}" for w in range(10, 22)]
    weekly = pd.DataFrame({"T": [1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0], "C": [10] * 12}, index=weeks, dtype=float)
    result = ie.did(weekly, "T", ["C"], "2026-W16")
    assert result["verdict"] == ie.VERDICT_TOO_FEW and result["estimate"] is None
    early = ie.did(weekly, "T", ["C"], "2026-W20")
    assert early["verdict"] == ie.VERDICT_TOO_EARLY


def test_ratio_of_ratios_is_the_poisson_did_estimate():
    """Known numbers: treated 40 -> 20 while the comparison goes 100 -> 100: R = 0.5; a steady area R = 1."""
    weeks = [f"2026-W{w:02d}" for w in range(10, 20)]
    weekly = pd.DataFrame({"T": [8] * 5 + [4] * 5, "C": [20] * 10, "S": [10] * 10}, index=weeks, dtype=float)
    halved = ie.did(weekly, "T", ["C"], "2026-W15")
    assert halved["estimate"] == pytest.approx(0.5)
    assert halved["low"] < 0.5 < halved["high"] < 1
    steady = ie.did(weekly, "S", ["C"], "2026-W15")
    assert steady["estimate"] == pytest.approx(1.0) and steady["verdict"] == ie.VERDICT_NONE
    # The Poisson interval is never narrower than Woolf's formula says.
    low, high = ie.poisson_interval(40, 20, 100, 100)
    se = np.sqrt(1 / 40 + 1 / 20 + 1 / 100 + 1 / 100)
    assert (low, high) == pytest.approx((0.5 * np.exp(-1.6449 * se), 0.5 * np.exp(1.6449 * se)), rel=1e-4)
    assert halved["low"] <= low and halved["high"] >= high


def test_first_post_week_skips_a_partial_week():
    from datetime import date

    assert ie.first_post_week(date(2026, 8, 24)).label == "2026-W35"  # a Monday
    assert ie.first_post_week(date(2026, 8, 26)).label == "2026-W36"  # a Wednesday: W35 is split
