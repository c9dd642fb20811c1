"""An attacker with a solver against everything published for a quarter (PRIVACY.md, "Published numbers": no
suppressed cell may be recoverable from row or column totals, from other tables, or from the weekly figures
against the quarterly ones; issue 4 item 4).

The attacker knows every number shown, what each label means ("<5" is 1..4, "<10" is 1..9, ".." is at least 1,
or at least 5 in a table that also shows "<" labels), and how the tables add up: each table's rows and columns
to its totals, and, across tables, the weeks of the quarter to the quarter (an area's weekly counts add up to
its quarterly total, a category's to its quarterly total, the weekly totals to the quarter's). For every hidden
number it asks a linear-programming solver (HiGHS) for the smallest and largest value consistent with all of it;
a number whose smallest and largest are equal is recovered. A linear bound that is tight is also tight for whole
numbers, so every cell the solver pins is truly recovered.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from pipelines import privacy as p
from pipelines import report_quarterly as rq
from pipelines import report_weekly as rw
from pipelines.warehouse import connect
from tests.conftest import GENERATED_QUARTER


# --------------------------------------------------------------------------------------------------------------
# The fast exact audit agrees with the LP on random tables
# --------------------------------------------------------------------------------------------------------------

def _random_grid(rng: np.random.Generator) -> pd.DataFrame:
    rows, cols = int(rng.integers(2, 7)), int(rng.integers(2, 6))
    wide = rng.choice([0, 0, 1, 2, 3, 4, 5, 6, 8, 12, 20], size=(rows, cols))
    table = pd.DataFrame([(f"a{i}", f"c{j}", int(wide[i, j])) for i in range(rows) for j in range(cols)],
                         columns=["area", "cat", "n"])
    thresholds = pd.Series(rng.choice([5, 10], size=len(table)))
    grid = p.secondary_suppression(table, "n", "area", "cat", threshold=thresholds, audit=False)
    extra = (rng.random(len(grid)) < 0.15) & (grid["n"] > 0)  # other patterns than the heuristic's own
    grid["suppressed"] = grid["suppressed"] | extra
    grid.loc[grid["suppressed"] & ~grid["display"].str.startswith("<"), "display"] = p.HIDDEN_LABEL
    return grid


def test_pinned_cells_is_the_lp_answer_on_random_tables():
    rng = np.random.default_rng(20261127)
    for _ in range(150):
        grid = _random_grid(rng)
        intervals = p.suppression_intervals(grid, "n", "area", "cat")
        by_lp = set(intervals.index[intervals["low"] == intervals["high"]])
        fast = p.pinned_cells(grid, "n", "area", "cat")
        assert set(fast.index[fast]) == by_lp


def test_audited_suppression_leaves_nothing_pinned_on_random_tables():
    rng = np.random.default_rng(7)
    for _ in range(60):
        grid = _random_grid(rng)
        table = grid[~grid["is_total"]][["area", "cat", "n"]]
        protected = p.secondary_suppression(table, "n", "area", "cat")
        intervals = p.suppression_intervals(protected, "n", "area", "cat")
        assert (intervals["low"] < intervals["high"]).all()


# --------------------------------------------------------------------------------------------------------------
# The attack on a whole published quarter
# --------------------------------------------------------------------------------------------------------------

class Published:
    """Hidden numbers as LP variables, shown numbers as constants, and the equations linking them."""

    def __init__(self):
        self.value: dict[tuple, int] = {}  # every published number's true value (the test knows it)
        self.hidden: dict[tuple, tuple[float, float]] = {}  # hidden ones: (lower, upper) the label states
        self.equations: list[tuple[list[tuple], list[tuple]]] = []  # sum(plus) == sum(minus)

    def add(self, name: tuple, n: int, suppressed: bool, shown: str, table_has_ranges: bool) -> None:
        self.value[name] = int(n)
        if suppressed:
            shown = str(shown)
            if shown.startswith("<"):
                self.hidden[name] = (1.0, float(int(shown[1:]) - 1))
            else:
                self.hidden[name] = (float(p.PRIMARY_THRESHOLD) if table_has_ranges else 1.0, np.inf)

    def equation(self, plus: list[tuple], minus: list[tuple]) -> None:
        assert sum(self.value[k] for k in plus) == sum(self.value[k] for k in minus), (plus, minus)
        self.equations.append((plus, minus))

    def recovered(self) -> list[tuple]:
        names = sorted(self.hidden)
        if not names:
            return []
        index = {k: i for i, k in enumerate(names)}
        rows, cols, data, rhs = [], [], [], []
        for plus, minus in self.equations:
            constant, entries = 0.0, {}
            for k, sign in [(k, 1.0) for k in plus] + [(k, -1.0) for k in minus]:
                if k in index:
                    entries[index[k]] = entries.get(index[k], 0.0) + sign
                else:
                    constant += sign * self.value[k]
            entries = {i: c for i, c in entries.items() if c}
            if not entries:
                continue
            for i, c in entries.items():
                rows.append(len(rhs))
                cols.append(i)
                data.append(c)
            rhs.append(-constant)
        a_eq = coo_matrix((data, (rows, cols)), shape=(len(rhs), len(names))).tocsr()
        bounds = [(lo, None if np.isinf(hi) else hi) for lo, hi in (self.hidden[k] for k in names)]
        truth = np.array([self.value[k] for k in names], dtype=float)

        def solve(c):
            result = linprog(c, A_eq=a_eq, b_eq=np.array(rhs), bounds=bounds, method="highs")
            assert result.status in (0, 3), result.message
            return result

        # Cheap first: vertices for random objectives; any number that differs from the truth is not pinned.
        candidates = np.ones(len(names), dtype=bool)
        rng = np.random.default_rng(0)
        for _ in range(12):
            result = solve(rng.normal(size=len(names)))
            if result.status == 0:
                candidates &= np.isclose(result.x, truth)
        pinned = []
        for i in np.flatnonzero(candidates):
            c = np.zeros(len(names))
            c[i] = 1.0
            low, high = solve(c), solve(-c)
            if low.status == 0 and high.status == 0 and round(low.fun) == round(-high.fun):
                pinned.append(names[i])
        return pinned


def _quarter_published(con, quarter: str, weekly: bool) -> Published:
    """Everything published for ``quarter``: its map's table and, with ``weekly``, the weekly reports' tables
    (counts per category and per area, and the week's total) of each of its weeks."""
    year, number = rq.parse_quarter(quarter)
    weeks = [w.label for w in rq.quarter_weeks(year, number)]
    pub = Published()
    cells = rw.query(con, "quarterly_cells", {"weeks": weeks}).astype({"n": "int64", "sensitive": bool})
    grid = rw.protect(cells[["area_code", "category", "n", "sensitive"]], "area_code", "category",
                      audit=rq.AUDIT_SUPPRESSION)
    ranges = grid["display"].astype(str).str.startswith("<").any()
    for a, c, n, s, shown in zip(grid["area_code"], grid["category"], grid["n"], grid["suppressed"], grid["shown"]):
        pub.add(("q", a, c), n, s, shown, ranges)
    T = p.TOTAL_KEY
    areas, categories = sorted(set(grid["area_code"]) - {T}), sorted(set(grid["category"]) - {T})
    for a in areas + [T]:
        pub.equation([("q", a, c) for c in categories], [("q", a, T)])
    for c in categories + [T]:
        pub.equation([("q", a, c) for a in areas], [("q", T, c)])
    if not weekly:
        return pub

    per_area: dict[str, list[tuple]] = {a: [] for a in areas}
    per_category: dict[str, list[tuple]] = {c: [] for c in categories}
    week_totals = []
    for week in weeks:
        report = rw.build_weekly(con, week)
        total = report["total"]
        pub.add(("w", week, T), total["n"], bool(total["n_suppressed"]), total["n_shown"], True)
        week_totals.append(("w", week, T))
        for frame, kind, key, bucket in (
            (report["categories"], "cat", "category", per_category),
            (pd.concat([report["areas"], report["unplaced"].to_frame().T]), "area", "area_code", per_area),
        ):
            ranges = frame["n_shown"].astype(str).str.startswith("<").any()
            names = []
            for k, n, s, shown in zip(frame[key], frame["n"], frame["n_suppressed"], frame["n_shown"]):
                pub.add(("w", week, kind, k), n, bool(s), shown, ranges)
                names.append(("w", week, kind, k))
                if k in bucket:
                    bucket[k].append(("w", week, kind, k))
                elif int(n):
                    raise AssertionError(f"{key} {k} has counts in {week} but none in the quarter")
            pub.equation(names, [("w", week, T)])
    for a, names in per_area.items():
        pub.equation(names, [("q", a, T)])
    for c, names in per_category.items():
        pub.equation(names, [("q", T, c)])
    pub.equation(week_totals, [("q", T, T)])
    return pub


@pytest.fixture(scope="module")
def quarter_con(generated_home):
    con = connect(generated_home, read_only=True)
    yield con
    con.close()


def test_no_cell_of_the_quarterly_map_is_recoverable_from_its_totals(quarter_con):
    assert rq.AUDIT_SUPPRESSION, "the quarterly map must run the exact suppression audit"
    pub = _quarter_published(quarter_con, GENERATED_QUARTER, weekly=False)
    assert pub.hidden, "the quarter hides nothing: the test proves nothing"
    assert pub.recovered() == []


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "Cross-table linking is not closed: the weekly reports are suppressed week by week, each on its own "
    "one-way tables, and the quarterly map is suppressed on its own grid. An area's or a category's weekly "
    "counts add up to its quarterly total, so a quarterly total that is shown pins a week whose count is "
    "hidden when the area's other weeks are shown (and a hidden quarterly total is pinned by weekly counts "
    "that are all shown). Closing it needs the quarterly suppression to take the weeks' published patterns "
    "as constraints (hide the quarterly total of any area or category with a hidden week, then re-audit the "
    "joint system), which is report_quarterly.py's/report_weekly.py's side of the work (issue 4 item 4)."))
def test_no_number_is_recoverable_from_the_weekly_reports_against_the_quarterly_map(quarter_con):
    pub = _quarter_published(quarter_con, GENERATED_QUARTER, weekly=True)
    recovered = pub.recovered()
    assert recovered == [], f"{len(recovered)} hidden numbers recovered, e.g. {recovered[:5]}"
