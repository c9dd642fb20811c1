"""The Knox test (pipelines/near_repeat.py) against the Near Repeat Calculator's published output, and its command."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipelines import near_repeat
from pipelines.cli import main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "near-repeat"
CHICAGO = DATA / "chicago_burglary_2014_2017.csv"
PATHOLOGICAL = DATA / "pathological_example.csv"

#: NRC 1.3, chicago_burglary_2016_NRverbose.csv, "Observed frequencies distribution" (all 68,450,850 pairs).
NRC_2016_OBSERVED = [[202, 51, 1025], [189, 143, 7762], [290, 343, 23366], [456, 526, 41305],
                     [577857, 760260, 67037075]]
#: NRC 1.3 "Observed over mean expected frequencies" (verbose CSV, 3 decimals), 19 iterations.
NRC_2016_RATIO = [[15.602, 3.341, 0.82], [2.678, 1.576, 0.978], [1.366, 1.301, 0.993], [1.295, 1.14, 0.996],
                  [0.999, 1, 1]]
#: Ratio differences are judged in standard errors of (ours - NRC's): both are observed / a Monte Carlo mean.
RATIO_MAX_SE = 4.0


def _year(events: pd.DataFrame, year: int) -> pd.DataFrame:
    return events[(events["day"] >= np.datetime64(f"{year}-01-01")) & (events["day"] <= np.datetime64(f"{year}-12-31"))]


@pytest.fixture(scope="module")
def chicago() -> pd.DataFrame:
    return near_repeat.read_events(CHICAGO, "x", "y", "date_single")


def _nrc_summary(name: str) -> dict:
    """Parameters, records and the ratio table from an NRC summary page (so the test uses what the NRC used)."""
    text = unescape(re.sub(r"<[^>]+>", " ", (DATA / name).read_text(encoding="latin-1")))
    text = re.sub(r"\s+", " ", text)
    number = lambda label: float(re.search(label + r":?\s*([\d.]+)", text).group(1))  # noqa: E731
    params = {"iterations": int(number("Iterations requested")), "spatial_bandwidth": number("Spatial bandwidth"),
              "spatial_bands": int(number("Number of spatial bands")),
              "temporal_bandwidth": int(number("Temporal bandwidth")),
              "temporal_bands": int(number("Number of temporal bands"))}
    records = int(number("Number of records successfully recorded"))
    block = text.split("Observed over mean expected frequencies table")[1].split("Statistical significance table")[0]
    ratios = [float(v) for v in re.findall(r"\b\d+\.\d\d\b", block)]
    return {"params": params, "records": records, "ratios": ratios}


def test_bands_and_labels_follow_the_nrc():
    assert near_repeat.spatial_labels(100, 3) == ["Same location", "1 to 100", "101 to 200", "201 to 300",
                                                 "More than 300"]
    assert near_repeat.temporal_labels(2, 2) == ["0 to 2", "3 to 4", "More than 4"]


def test_pathological_example_matches_nrc():
    """Two events 100 m and 3 days apart: the NRC's own tables (NearRepeat notebook) put the pair here."""
    events = near_repeat.read_events(PATHOLOGICAL, "x", "y", "t")
    wide = near_repeat.knox_test(events.x, events.y, events.day, 200, 2, 3, 2, iterations=9, seed=1)
    assert wide.observed.loc["1 to 200", "4 to 6"] == 1 and wide.n_pairs == 1
    narrow = near_repeat.knox_test(events.x, events.y, events.day, 100, 2, 3, 2, iterations=9, seed=1)
    assert narrow.observed.loc["101 to 200", "4 to 6"] == 1 and narrow.n_pairs == 1
    # Only one pair: every permutation gives the same table; p = 1, ratio 1 where the pair is.
    assert narrow.knox_ratio.loc["101 to 200", "4 to 6"] == 1.0 and (narrow.p_value.to_numpy() == 1).all()


def test_same_day_and_same_place_edge_cases():
    x = np.array([0.0, 0.0, 0.0, 0.5, 100.0])
    y = np.zeros(5)
    days = np.array([0, 0, 2, 0, 4])
    r = near_repeat.knox_test(x, y, days, 100, 1, 2, 1, iterations=19, seed=3)
    obs = r.observed
    assert obs.loc["Same location", "0 to 2"] == 1  # events 0 and 1: same place, same day
    assert obs.loc["Same location", "More than 2"] == 2  # 2 days apart is the second band (NRC: [2, 4))
    assert obs.loc["1 to 100", "0 to 2"] == 2  # 0.5 m is not the same location
    assert obs.loc["More than 100", "More than 2"] == 3  # 100 m exactly starts "More than 100"
    assert r.n_pairs == 10


def test_chicago_2016_observed_counts_match_nrc_exactly(chicago):
    events = _year(chicago, 2016)
    assert len(events) == 11701  # "Source data records used: 11701"
    r = near_repeat.knox_test(events.x, events.y, events.day, 100, 3, 2, 2, iterations=1, seed=1)
    assert r.observed.to_numpy().tolist() == NRC_2016_OBSERVED
    assert list(r.observed.columns) == ["0 to 2", "3 to 4", "More than 4"]


def test_chicago_2016_ratios_within_monte_carlo_noise(chicago):
    """Ours (199 iterations) against the NRC's (19): the difference of two Monte Carlo means.

    The standard error of a ratio O/E from k iterations is about (O/E) * sd / (E sqrt(k)), sd the simulated
    counts' standard deviation; ours and the NRC's are independent, so the difference has
    (O/E) * sd / E * sqrt(1/19 + 1/199), plus 0.0005 for the NRC's rounding to 3 decimals.
    """
    events = _year(chicago, 2016)
    r = near_repeat.knox_test(events.x, events.y, events.day, 100, 3, 2, 2, iterations=199, seed=2016)
    ratio, e = r.knox_ratio.to_numpy(), r.expected.to_numpy()
    sd = r.simulated.std(axis=2, ddof=1)
    se = ratio * sd / e * np.sqrt(1 / 19 + 1 / 199) + 0.0005
    difference = np.abs(ratio - np.array(NRC_2016_RATIO))
    assert (difference <= RATIO_MAX_SE * se).all(), difference / se
    assert (r.p_value.iloc[:4, :2].to_numpy() == 1 / 200).all()  # every near-repeat cell beats every simulation


def test_chicago_2014_against_nrc_summary(chicago):
    nrc = _nrc_summary("nrc_output_chicago_burglary_2014_NRsummary.htm")
    p = nrc["params"]
    assert p == {"iterations": 99, "spatial_bandwidth": 200.0, "spatial_bands": 1, "temporal_bandwidth": 7,
                 "temporal_bands": 1}
    events = _year(chicago, 2014)
    assert len(events) == nrc["records"]
    r = near_repeat.knox_test(events.x, events.y, events.day, p["spatial_bandwidth"], p["spatial_bands"],
                              p["temporal_bandwidth"], p["temporal_bands"], iterations=199, seed=2014)
    ratio, e = r.knox_ratio.to_numpy(), r.expected.to_numpy()
    se = ratio * r.simulated.std(axis=2, ddof=1) / e * np.sqrt(1 / p["iterations"] + 1 / 199) + 0.005
    reference = np.array(nrc["ratios"]).reshape(ratio.shape)
    assert (np.abs(ratio - reference) <= RATIO_MAX_SE * se).all(), (ratio, reference)


def test_manhattan_distance_bands():
    x, y = np.array([0.0, 60.0, 0.0]), np.array([0.0, 60.0, 90.0])
    days = np.array([0, 1, 1])
    euclid = near_repeat.knox_test(x, y, days, 100, 1, 7, 1, iterations=9, seed=1, distance="euclidean")
    manhattan = near_repeat.knox_test(x, y, days, 100, 1, 7, 1, iterations=9, seed=1, distance="manhattan")
    assert euclid.observed.loc["1 to 100", "0 to 7"] == 3  # 84.9, 90, 67.1 m
    assert manhattan.observed.loc["1 to 100", "0 to 7"] == 2  # 120, 90, 90 m
    with pytest.raises(ValueError):
        near_repeat.knox_test(x, y, days, 100, 1, 7, 1, distance="chebyshev")


# --------------------------------------------------------------------------------------------------------
# est analyse near-repeat
# --------------------------------------------------------------------------------------------------------


def _run(*args):
    return CliRunner().invoke(main, ["analyse", "near-repeat", *map(str, args)])


def test_cli_pathological_example(tmp_path):
    result = _run(PATHOLOGICAL, "--x", "x", "--y", "y", "--date", "t", "--spatial-bandwidth", 100,
                  "--spatial-bands", 2, "--temporal-bandwidth", 3, "--temporal-bands", 2, "--iterations", 9,
                  "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 events, 1 pairs" in result.output
    observed = pd.read_csv(tmp_path / "observed.csv", index_col=0)
    assert observed.loc["101 to 200", "4 to 6"] == 1 and observed.to_numpy().sum() == 1
    for name in ("expected", "knox_ratio", "significance"):
        table = pd.read_csv(tmp_path / f"{name}.csv", index_col=0)
        assert list(table.index) == list(observed.index) and list(table.columns) == list(observed.columns)


def test_cli_chicago_subset(tmp_path, chicago):
    subset = _year(chicago, 2016).iloc[:3000]
    source = tmp_path / "subset.csv"
    pd.DataFrame({"X": subset.x, "Y": subset.y, "when": pd.to_datetime(subset.day).dt.strftime("%Y-%m-%d")}
                 ).to_csv(source, index=False)
    out = tmp_path / "out"
    result = _run(source, "--x", "X", "--y", "Y", "--date", "when", "--date-format", "%Y-%m-%d",
                  "--spatial-bandwidth", 100, "--spatial-bands", 3, "--temporal-bandwidth", 2,
                  "--temporal-bands", 2, "--iterations", 19, "--distance", "manhattan", "--seed", 5, "--out", out)
    assert result.exit_code == 0, result.output
    direct = near_repeat.knox_test(subset.x, subset.y, subset.day, 100, 3, 2, 2, iterations=19, seed=5,
                                   distance="manhattan")
    written = pd.read_csv(out / "observed.csv", index_col=0)
    assert written.to_numpy().tolist() == direct.observed.to_numpy().tolist()
    ratios = pd.read_csv(out / "knox_ratio.csv", index_col=0)
    np.testing.assert_allclose(ratios.to_numpy(), direct.knox_ratio.to_numpy(), atol=5e-4)


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.drop(columns="t"), "no column 't'"),
    (lambda f: f.assign(t=["01/01/2019", "2019-01-04"]), "row 3: column 't' is not a date in %d/%m/%Y"),
    (lambda f: f.assign(x=["0", "abc"]), "row 3: column 'x' is not a number"),
])
def test_cli_refuses_bad_input_in_one_line(tmp_path, mutate, message):
    source = tmp_path / "bad.csv"
    mutate(pd.read_csv(PATHOLOGICAL, dtype=str)).to_csv(source, index=False)
    result = _run(source, "--x", "x", "--y", "y", "--date", "t", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert message in result.output and "bad.csv" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_refuses_missing_file_and_bad_parameters(tmp_path):
    result = _run(tmp_path / "nope.csv", "--x", "x", "--y", "y", "--date", "t", "--out", tmp_path)
    assert result.exit_code == 2 and "nope.csv" in result.output
    result = _run(PATHOLOGICAL, "--x", "x", "--y", "y", "--date", "t", "--iterations", 0, "--out", tmp_path)
    assert result.exit_code == 2 and "iterations" in result.output
