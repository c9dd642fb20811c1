"""Issue 4 item 4 for the weekly report's partner table ("Händelser denna vecka" in the completeness table and
the ``leveranser`` CSV): no hidden partner count can be worked out from the table and the week's total.

The attack reads the report as printed (the partner rows of :func:`report_weekly._completeness`, the category
table and the week's total of :func:`report_weekly.published_counts`, which is what build_weekly prints) and
brute-forces each hidden partner count: a value is possible when the other hidden counts can make up the rest
of the week's total within what their labels state ("<10": 1 to 9; "..": at least the threshold where the table
shows "<" labels). Where the total is hidden too, its possible range comes from the category table the same way.
It also attacks as each partner, who knows its own count (it sent the rows; its partner view prints its
deliveries unsuppressed). It must find nothing on the generated data; with the fix switched off it must find
social services' 7 in 2026-W09 (439 - 432 = 7).
"""

from __future__ import annotations

import math
import time
from contextlib import closing

import pytest

from pipelines import privacy, report_weekly as rw, warehouse
from tests.conftest import SEASON_LAST_WEEK

EXAMPLE_WEEK = "2026-W09"


def _number(text: str) -> int | None:
    text = str(text).replace("\u00a0", "").replace(" ", "")
    return int(text) if text.isdigit() else None


def _range(texts: list[str], thresholds: list[int]) -> list[tuple[int, float]]:
    """What each printed count tells a reader."""
    ranges = any(str(t).startswith("<") for t in texts)
    out = []
    for text, limit in zip(texts, thresholds):
        value = _number(text)
        if value is not None:
            out.append((value, value))
        elif str(text).startswith("<"):
            out.append((1, int(str(text)[1:]) - 1))
        else:
            out.append((limit if ranges else 1, math.inf))
    return out


def _sum_range(bounds: list[tuple[int, float]]) -> tuple[int, float]:
    return sum(lo for lo, _ in bounds), sum(hi for _, hi in bounds)


def _total_range(counts: dict) -> tuple[int, float]:
    total = counts["total"]
    if not bool(total["n_suppressed"]):
        value = int(total["n"])
        return value, value
    cats = counts["categories"]
    limits = [privacy.threshold_for(bool(s)) for s in cats["sensitive"]]
    return _sum_range(_range(list(cats["n_shown"]), limits))


def recovered(rows: list[dict], thresholds: dict[str, int], total: tuple[int, float]) -> list[tuple]:
    """Every (insider, partner, value) the brute force pins: a hidden count with exactly one possible value."""
    partners = [r["partner"] for r in rows]
    texts = [r["incidents_shown"] if r["delivered"] else "0" for r in rows]
    bounds = dict(zip(partners, _range(texts, [thresholds[p] for p in partners])))
    hidden = [p for p, (lo, hi) in bounds.items() if lo != hi]
    found = []
    for insider in [None, *hidden]:
        known = dict(bounds)
        if insider is not None:
            true = [r for r in rows if r["partner"] == insider][0]["n"]
            known[insider] = (true, true)
        for target in hidden:
            if target == insider:
                continue
            others_lo, others_hi = _sum_range([b for p, b in known.items() if p != target])
            lo_t, hi_t = known[target]
            # target = total - others: possible values are the intersection of the two ranges
            low = max(lo_t, total[0] - others_hi)
            high = min(hi_t, total[1] - others_lo)
            if low == high:
                found.append((insider, target, int(low)))
    return found


def attack_week(con, week: str) -> list[tuple]:
    counts = rw.published_counts(con, week)
    rows = rw._completeness(con, counts["cells"], counts["week"], counts["delivered"],
                            protected=counts["partners"])
    truth = counts["partners"].set_index("partner")
    for row in rows:
        row["n"] = int(truth.at[row["partner"], "n"])
    thresholds = {p: privacy.threshold_for(bool(s)) for p, s in zip(truth.index, truth["sensitive"])}
    return recovered(rows, thresholds, _total_range(counts))


def _season_weeks() -> list[str]:
    last = rw.IsoWeek.parse(SEASON_LAST_WEEK)
    # the first weeks have no baseline yet, which changes nothing here: every generated week is attacked
    return [w.label for w in last.previous(25)] + [last.label]


def test_no_partner_count_is_recoverable_in_the_season(generated_season):
    started = time.perf_counter()
    with closing(warehouse.connect(generated_season)) as con:
        found = {week: attack_week(con, week) for week in _season_weeks()}
    print(f"\npartner-table attack, 26 weeks: {time.perf_counter() - started:.1f} s")
    assert not {w: f for w, f in found.items() if f}


def test_no_partner_count_is_recoverable_in_the_example_week(generated_home):
    with closing(warehouse.connect(generated_home)) as con:
        assert attack_week(con, EXAMPLE_WEEK) == []
        # the whole week as one system (categories, areas, partners, shared total), by the privacy module's LP
        counts = rw.published_counts(con, EXAMPLE_WEEK)
        assert rw.week_pinned(counts, counts["partners"]) == []


def test_the_attack_recovers_the_example_without_the_fix(generated_home, monkeypatch):
    monkeypatch.setattr(rw, "PARTNER_SECONDARY_SUPPRESSION", False)
    with closing(warehouse.connect(generated_home)) as con:
        found = attack_week(con, EXAMPLE_WEEK)
    assert (None, "social_services", 7) in found, found


def test_printed_report_hides_rows_loaded_and_share_with_the_count(generated_home):
    """The report as built: the partner table's incidents are the protected ones, and a hidden count takes its
    rows loaded and quarantine share with it (rows loaded equal the count for a one-file-a-week partner)."""
    with closing(warehouse.connect(generated_home)) as con:
        report = rw.build_weekly(con, EXAMPLE_WEEK)
        counts = rw.published_counts(con, EXAMPLE_WEEK)
    protected = counts["partners"].set_index("partner")
    assert str(report["total"]["n_shown"]).replace("\u00a0", "") == "439"
    hidden = [p for p in report["partners"] if p["partner"] in protected.index
              and bool(protected.at[p["partner"], "suppressed"])]
    assert len(hidden) >= 2
    for p in hidden:
        assert _number(p["incidents_shown"]) is None
        assert _number(p["rows_loaded_shown"]) in (None, 0)
        assert p["quarantine_share_shown"] == rw.DASH
    table = rw._tables(report)["leveranser"]
    assert table.shape[0] == len(report["partners"])


def test_partner_view_prints_the_same_shared_table(generated_home):
    with closing(warehouse.connect(generated_home)) as con:
        shared = rw.build_weekly(con, EXAMPLE_WEEK)["partners"]
        own = rw.build_weekly(con, EXAMPLE_WEEK, audience="partner:social_services")["partners"]
    assert shared == own


@pytest.mark.parametrize("texts,total,expected", [
    (["289", "23", "20", "10", "<10", "37", "53"], 439, [(None, "p4", 7)]),  # the leak as it was
    (["289", "23", "..", "..", "<10", "37", "53"], 439, []),                 # the fix
])
def test_brute_force_on_the_published_example(texts, total, expected):
    rows = [{"partner": f"p{i}", "incidents_shown": t, "delivered": True, "n": 0} for i, t in enumerate(texts)]
    thresholds = {f"p{i}": 10 if i in (2, 3, 4) else 5 for i in range(len(texts))}
    assert [f for f in recovered(rows, thresholds, (total, total)) if f[0] is None] == expected


def test_published_long_is_what_the_quarter_links_against(generated_home):
    """report_quarterly.weekly_published is, week by week, report_weekly.published_long (one source)."""
    import pandas as pd

    from pipelines import report_quarterly as rq

    weeks = ["2026-W07", "2026-W08", "2026-W09", "2026-W10"]
    with closing(warehouse.connect(generated_home)) as con:
        mine = pd.concat([rw.published_long(con, w) for w in weeks], ignore_index=True)
        pd.testing.assert_frame_equal(rq.weekly_published(con, weeks), mine)
