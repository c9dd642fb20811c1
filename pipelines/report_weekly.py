"""The weekly situational report (veckorapport): what happened, what is being done, and how complete the data is.

DESIGN.md section 6. The report goes to politicians and department heads and becomes a public record, so it
holds aggregates only: every number comes from `weekly_counts` (never from `incidents`, whose free text and
pseudonyms stay in the restricted layer), every published count goes through :func:`privacy.suppress_counts`
(PRIVACY.md, "Published numbers"), and the only texts printed are the project's own: category labels from the
taxonomy, area names from SCB (or the stand-in layer), partner names from the contracts, and the intervention
register the security department edits. The template autoescapes anyway (PRIVACY.md, "Reports and maps").

The baseline (normalvärde) is deliberately simple and stated in the report: for each category or area, the
mean weekly count over the 8 ISO weeks before the report week, counting each partner only over the weeks for
which it delivered, and only partners that delivered this week. A missing delivery therefore shows up as a
stated missing delivery, not as a false drop (DESIGN.md section 6, "Data completeness"); a later issue adds
variation bands and a forecast.

Outputs, written atomically (:func:`pipelines.publish.write_atomic`, RELIABILITY.md) into
``out/weekly/<YYYY-Www>/``: ``veckorapport_<week>.html`` (self-contained: inline CSS, no script, no request
to any host) and the tables behind it as CSV (UTF-8 with BOM and semicolons, as Excel on a Swedish Windows
expects; cells neutralised against formula injection). The same database gives byte-identical files: the
report prints the time the newest delivery was received, never the time it was rendered.
"""

from __future__ import annotations

import logging

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from pipelines import anomaly, forecast, i18n, privacy, warehouse
from pipelines.publish import write_atomic
from pipelines.settings import MUNICIPALITY_NAME, REPORTS_DIR, TIMEZONE, Home

#: How many ISO weeks before the report week the baseline averages over. Eight weeks is two months: long
#: enough to smooth a single odd week, short enough to follow the season. Printed in the report.
BASELINE_WEEKS = 8

#: How many areas the report's area table lists (the CSV holds them all).
TOP_AREAS = 10

#: How many categories/areas the summary names as the largest changes.
SUMMARY_ITEMS = 3

#: Weeks in the trend charts (the week and the 12 before it: a quarter).
TREND_WEEKS = 13

#: How many areas the forecast table lists (largest expected counts first; the CSV holds every published one).
FORECAST_AREAS = 10

#: weekly_counts.area_code for incidents the pipeline could not place (sql/aggregate_weekly_counts.sql).
UNPLACED = "unplaced"
UNPLACED_LABEL = "Ej geografiskt placerade"

AUDIENCE = "weekly_recipients"
#: render_weekly's audience for the recipients' report; a partner's view is "partner:<id>".
RECIPIENTS = "recipients"

ISO_WEEK_PATTERN = re.compile(r"^(\d{4})-W(\d{2})$")

MONTHS_SV = (
    "januari", "februari", "mars", "april", "maj", "juni",
    "juli", "augusti", "september", "oktober", "november", "december",
)

DASH = "–"  # en dash: "no value" in a table cell
MINUS = "\u2212"  # the minus sign Swedish typography uses for negative numbers
NBSP = "\u00a0"


# --------------------------------------------------------------------------------------------------------
# Weeks and formatting (shared with the quarterly map)
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsoWeek:
    """One ISO week: 'YYYY-Www', its Monday and its Sunday."""

    label: str
    year: int
    week: int
    monday: date

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @classmethod
    def parse(cls, text: str) -> "IsoWeek":
        match = ISO_WEEK_PATTERN.match(str(text))
        if not match:
            raise ValueError(f"not an ISO week 'YYYY-Www': {text!r}")
        year, week = int(match.group(1)), int(match.group(2))
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError as error:
            raise ValueError(f"no such ISO week: {text!r} ({error})") from None
        return cls(label=f"{year}-W{week:02d}", year=year, week=week, monday=monday)

    @classmethod
    def of(cls, day: date) -> "IsoWeek":
        year, week, _ = day.isocalendar()
        return cls.parse(f"{year}-W{week:02d}")

    def previous(self, count: int) -> list["IsoWeek"]:
        """The ``count`` weeks before this one, oldest first."""
        return [IsoWeek.of(self.monday - timedelta(weeks=k)) for k in range(count, 0, -1)]


def format_int(value: int) -> str:
    """1234 -> '1 234' (Swedish digit grouping, with a non-breaking space so a number never wraps)."""
    return f"{int(value):,}".replace(",", NBSP)


def format_decimal(value: float, digits: int = 1) -> str:
    """2.45 -> '2,5': Swedish decimal comma, rounded half up (not to even, which surprises readers)."""
    scaled = math.floor(abs(value) * 10**digits + 0.5) / 10**digits
    text = f"{scaled:,.{digits}f}".replace(",", NBSP).replace(".", ",")
    return (MINUS + text) if value < 0 and scaled != 0 else text


def format_change(value: int) -> str:
    """+3, −2 (with the minus sign), ±0."""
    if value > 0:
        return f"+{format_int(value)}"
    if value < 0:
        return MINUS + format_int(-value)
    return "±0"


def round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def format_period(first: date, last: date, months: tuple[str, ...] = MONTHS_SV) -> str:
    """'17–23 mars 2025', '31 mars–6 april 2025', '29 december 2025–4 januari 2026'."""
    start, end = f"{first.day} {months[first.month - 1]}", f"{last.day} {months[last.month - 1]} {last.year}"
    if first.year != last.year:
        return f"{start} {first.year}{DASH}{end}"
    if first.month != last.month:
        return f"{start}{DASH}{end}"
    return f"{first.day}{DASH}{end}"


def format_date(day: date | None, months: tuple[str, ...] = MONTHS_SV) -> str:
    return "" if day is None else f"{day.day} {months[day.month - 1]} {day.year}"


def format_local_time(moment: datetime | None) -> str:
    """A ledger time in the municipality's time zone, to the minute ('2025-03-24 kl. 08:15')."""
    if moment is None:
        return ""
    local = moment.astimezone(ZoneInfo(TIMEZONE)) if moment.tzinfo else moment
    return local.strftime("%Y-%m-%d kl. %H:%M")


def suppress(values: Iterable[int], sensitive: Iterable[bool]) -> tuple[list[str], list[bool]]:
    """Each count as published, and whether it was suppressed, by the one rule in :mod:`pipelines.privacy`.

    A cell whose count includes rows from a sensitive partner (social services, schools, home care) uses
    ``SENSITIVE_THRESHOLD``, every other cell ``PRIMARY_THRESHOLD`` (PRIVACY.md, "Published numbers").
    """
    values = [int(v) for v in values]
    sensitive = [bool(s) for s in sensitive]
    display: list[str] = [""] * len(values)
    masked: list[bool] = [False] * len(values)
    for flag, threshold in ((False, privacy.PRIMARY_THRESHOLD), (True, privacy.SENSITIVE_THRESHOLD)):
        positions = [i for i, s in enumerate(sensitive) if s == flag]
        if not positions:
            continue
        shown, hidden = privacy.suppress_counts(
            pd.Series([values[i] for i in positions], dtype="int64"), threshold=threshold
        )
        for position, text, mask in zip(positions, list(shown), list(hidden)):
            display[position] = str(text)
            masked[position] = bool(mask)
    return display, masked


def suppress_one(value: int, sensitive: bool) -> tuple[str, bool]:
    shown, hidden = suppress([value], [sensitive])
    return shown[0], hidden[0]


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A published table as CSV for Excel on a Swedish Windows: UTF-8 with BOM, ';', CRLF, formulas neutralised.

    Every value is passed as text exactly as the report prints it (suppressed cells as "<5"), and
    :func:`privacy.neutralise_csv_cells` prefixes any cell a spreadsheet would run as a formula (PRIVACY.md).
    """
    safe = privacy.neutralise_csv_cells(frame)
    text = safe.to_csv(sep=";", index=False, lineterminator="\r\n")
    return "\ufeff".encode("utf-8") + text.encode("utf-8")


def template_environment() -> Environment:
    """Jinja2 with autoescape on for every template: partner-reachable text is never marked safe."""
    return Environment(
        loader=FileSystemLoader(str(REPORTS_DIR)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def query(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run ``sql/<name>.sql`` with bound parameters (never string formatting) into a DataFrame."""
    return con.execute(warehouse.sql_text(name), params or {}).df()


def delivered_weeks(con: duckdb.DuckDBPyConnection, cells: pd.DataFrame, weeks: list[str]) -> set[tuple[str, str]]:
    """(partner, week) pairs for which the partner delivered: a ledger period overlapping the week, or rows.

    The ledger is the rule (sql/weekly_delivered_weeks.sql); rows in `weekly_counts` for the week count too, so
    that an incident whose local date falls just outside its file's recorded period never makes its partner
    look absent.
    """
    pairs = {
        (str(p), str(w)) for p, w in query(con, "weekly_delivered_weeks", {"weeks": weeks}).itertuples(index=False)
    }
    pairs.update((str(p), str(w)) for p, w in cells[["partner", "iso_week"]].drop_duplicates().itertuples(index=False))
    return pairs


def stand_in_label() -> str:
    from pipelines.geography import STAND_IN_LABEL

    return STAND_IN_LABEL


# --------------------------------------------------------------------------------------------------------
# The comparison with the baseline
# --------------------------------------------------------------------------------------------------------


def compare(
    cells: pd.DataFrame,
    week: str,
    baseline_weeks: list[str],
    delivered: set[tuple[str, str]],
    key: str | None,
    keys: Iterable[str] = (),
) -> pd.DataFrame:
    """This week's count and the baseline per ``key`` value (or one total row when ``key`` is None).

    ``keys`` are values to report even when they have no rows (every area, say), with a count of 0.

    Columns: n, sensitive (this week's count includes a sensitive partner), baseline (float, NaN when no
    partner that delivered this week delivered in any baseline week), baseline_sensitive.

    Baseline = sum over partners that delivered this week of (the partner's count over the baseline weeks it
    delivered for) / (that number of weeks). A partner that did not deliver this week is left out of the
    baseline too, so its absence is not shown as a drop; a partner absent in some baseline week is averaged over
    the weeks it did deliver, so that absence does not lower the baseline either.
    """
    cells = cells.assign(_all="all") if key is None else cells
    key = key or "_all"
    this_week = cells[cells["iso_week"] == week]
    current = this_week.groupby(key).agg(n=("n", "sum"), sensitive=("sensitive", "any"))
    current = current.astype({"n": "float64", "sensitive": "boolean"})

    present = sorted({p for p, w in delivered if w == week})
    weeks_of = {p: [w for w in baseline_weeks if (p, w) in delivered] for p in present}
    weight = {p: 1.0 / len(ws) for p, ws in weeks_of.items() if ws}
    has_baseline = bool(weight)

    base = cells[cells["iso_week"].isin(baseline_weeks) & cells["partner"].isin(list(weight))]
    delivered_rows = [(p, w) in delivered for p, w in zip(base["partner"], base["iso_week"])]
    base = base[pd.Series(delivered_rows, index=base.index, dtype=bool)]
    base = base.assign(weighted=base["n"].astype(float) * base["partner"].map(weight).astype(float))
    baseline = base.groupby(key).agg(baseline=("weighted", "sum"), baseline_sensitive=("sensitive", "any"))
    baseline = baseline.astype({"baseline": "float64", "baseline_sensitive": "boolean"})

    result = current.join(baseline, how="outer")
    wanted = ["all"] if key == "_all" else list(keys)
    missing = [k for k in wanted if k not in result.index]
    if missing:
        result = pd.concat([result, pd.DataFrame(index=pd.Index(missing, name=key))])
    result["n"] = result["n"].fillna(0).astype("int64")
    result["sensitive"] = result["sensitive"].astype("boolean").fillna(False).astype(bool)
    result["baseline_sensitive"] = result["baseline_sensitive"].astype("boolean").fillna(False).astype(bool)
    result["baseline"] = result["baseline"].astype(float).fillna(0.0) if has_baseline else float("nan")
    result.index.name = key
    return result.reset_index()


def protect(table: pd.DataFrame, row: str, col: str, audit: bool = True) -> pd.DataFrame:
    """Primary and secondary suppression of a published table of counts, with its totals.

    ``table`` has one row per cell: ``row``, ``col``, ``n`` and ``sensitive`` (the cell includes rows from a
    sensitive partner). Returns :func:`privacy.secondary_suppression`'s grid (margins included, keyed
    ``privacy.TOTAL_KEY``) with ``shown``, the text to print: a count below its own threshold as "<5", or "<10"
    where a sensitive partner feeds it (a total takes the strictest threshold of what it adds up); a count
    hidden so that another cannot be worked out from the totals as ".." (``privacy.HIDDEN_LABEL``); every
    other count as the number, with Swedish digit grouping. A one-way table (the weekly report's counts per
    category or per area, with the week's total) is the case of a single ``col`` value.

    ``audit`` runs the privacy module's exact check (a pair of linear programs per hidden cell, repeated until
    no hidden cell is pinned down). It is fast for the weekly one-way tables; for a municipality's whole
    area x category grid it takes from a minute to far longer (see ``report_quarterly.AUDIT_SUPPRESSION``).
    """
    cells = table[[row, col, "n", "sensitive"]].reset_index(drop=True)
    cells = cells.astype({"n": "int64", "sensitive": bool})
    thresholds = pd.Series([privacy.threshold_for(s) for s in cells["sensitive"]], index=cells.index, dtype="int64")
    grid = privacy.secondary_suppression(cells[[row, col, "n"]], "n", row, col, threshold=thresholds, audit=audit)
    grid["shown"] = [
        str(display) if hidden else format_int(int(n))
        for n, hidden, display in zip(grid["n"], grid["suppressed"], grid["display"])
    ]
    return grid


def published(table: pd.DataFrame, key: str) -> tuple[pd.DataFrame, pd.Series]:
    """Add the published columns to a comparison table (:func:`compare`), and return its protected total.

    Counts are protected by :func:`protect` as a one-way table with the week's total. A baseline is rounded
    to a whole number (half up) and suppressed like a count (:func:`privacy.suppress_counts`); a mean above
    zero that rounds to zero is published as the smallest suppressed value, not as "0", which would be untrue.
    The change is this week minus the rounded baseline, shown only when neither side is suppressed (a change
    next to a suppressed cell would give it away).
    """
    table = table.reset_index(drop=True).copy()
    if len(table):
        grid = protect(table.assign(_col="n"), key, "_col")
        interior = grid[(grid[key] != privacy.TOTAL_KEY) & (grid["_col"] == "n")].set_index(key)
        table["n_shown"] = [interior.at[k, "shown"] for k in table[key]]
        table["n_suppressed"] = [bool(interior.at[k, "suppressed"]) for k in table[key]]
        total = grid[(grid[key] == privacy.TOTAL_KEY) & (grid["_col"] == privacy.TOTAL_KEY)].iloc[0]
    else:
        table["n_shown"], table["n_suppressed"] = [], []
        total = pd.Series({"n": 0, "shown": "0", "suppressed": False})
    has_baseline = table["baseline"].notna()
    rounded = [
        (max(round_half_up(b), 1 if b > 0 else 0) if ok else 0) for b, ok in zip(table["baseline"], has_baseline)
    ]
    table["baseline_rounded"] = rounded
    shown, masked = suppress(rounded, table["baseline_sensitive"])
    table["baseline_shown"] = [(format_int(int(s)) if s.isdigit() else s) if ok else DASH
                               for s, ok in zip(shown, has_baseline)]
    table["baseline_suppressed"] = [m if ok else False for m, ok in zip(masked, has_baseline)]
    changes = []
    for n, b, n_sup, b_sup, ok in zip(
        table["n"], rounded, table["n_suppressed"], table["baseline_suppressed"], has_baseline
    ):
        changes.append(int(n) - int(b) if ok and not n_sup and not b_sup else None)
    table["change"] = pd.Series(changes, index=table.index, dtype=object)
    table["change_shown"] = [DASH if c is None else format_change(c) for c in changes]
    return table, total


def display_order(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """Largest published counts first; suppressed cells after them and zeros last, each in label order.

    Suppressed cells are not ordered by their true count: that order would tell a reader which "<5" is larger.
    """
    group = [0 if (n > 0 and not s) else (1 if s else 2) for n, s in zip(table["n"], table["n_suppressed"])]
    visible = [-int(n) if g == 0 else 0 for n, g in zip(table["n"], group)]
    return (
        table.assign(_group=group, _visible=visible, _label=table[label].astype(str))
        .sort_values(["_group", "_visible", "_label"], kind="stable")
        .drop(columns=["_group", "_visible", "_label"])
        .reset_index(drop=True)
    )


# --------------------------------------------------------------------------------------------------------
# What the week publishes: one function for the report and for the quarter that links against it
# --------------------------------------------------------------------------------------------------------


def published_counts(con: duckdb.DuckDBPyConnection, iso_week: str) -> dict[str, Any]:
    """The counts the weekly report of ``iso_week`` publishes, protected exactly as it prints them.

    Returns a dict: ``categories`` and ``areas`` (:func:`published` tables: one row per category with anything
    this week or in the baseline, one per area, the unplaced incidents included, with ``n``, ``sensitive``,
    ``n_shown``, ``n_suppressed``, the baseline columns), ``total`` (the week's total as both tables print it:
    hidden when either table needs it hidden), ``partners`` (the incidents per partner in the completeness
    table, :func:`protect_partners`), and the inputs ``cells`` and ``delivered``. :func:`build_weekly` prints
    these and nothing else; the quarterly map links against them (:func:`published_long`), so the two can never
    drift apart.
    """
    week = IsoWeek.parse(iso_week)
    baseline_labels = [w.label for w in week.previous(BASELINE_WEEKS)]
    all_weeks = baseline_labels + [week.label]
    cells = query(con, "weekly_cells", {"weeks": all_weeks})
    delivered = delivered_weeks(con, cells, all_weeks)
    area_keys = list(query(con, "weekly_areas")["area_code"]) + [UNPLACED]

    # Categories: those with anything this week or in the baseline.
    by_category = compare(cells, week.label, baseline_labels, delivered, "category")
    by_category = by_category[(by_category["n"] > 0) | (by_category["baseline"].fillna(0) > 0)]
    by_category, category_total = published(by_category, "category")
    # Areas: every published area, plus the unplaced incidents (never dropped) and any code not in `areas`.
    by_area = compare(cells, week.label, baseline_labels, delivered, "area_code", keys=area_keys)
    by_area, area_total = published(by_area, "area_code")

    # The week's total appears in both tables' margins: it is hidden if either table needs it hidden.
    total, _ = published(compare(cells, week.label, baseline_labels, delivered, None), "_all")
    total = total.iloc[0].copy()
    hidden_total = next((t for t in (category_total, area_total) if t["suppressed"]), None)
    if hidden_total is not None:
        total["n_shown"], total["n_suppressed"] = hidden_total["shown"], True
        total["change"], total["change_shown"] = None, DASH
    total_threshold = max(
        [privacy.threshold_for(bool(s)) for s in list(by_category["sensitive"]) + list(by_area["sensitive"])],
        default=privacy.PRIMARY_THRESHOLD,
    )
    counts = {
        "week": week, "cells": cells, "delivered": delivered, "categories": by_category, "areas": by_area,
        "total": total, "total_threshold": total_threshold,
    }
    roster = query(con, "weekly_partners", {"first": week.monday, "last": week.sunday})
    counts["partners"] = protect_partners(counts, roster)
    return counts


def published_long(con: duckdb.DuckDBPyConnection, iso_week: str, counts: dict[str, Any] | None = None
                   ) -> pd.DataFrame:
    """The week's category and area counts and its total as published, in the long form
    :func:`privacy.linked_system` reads (``report_quarterly.weekly_published``): ``week``, ``side`` ("row":
    per area, "col": per category, ``privacy.TOTAL_KEY``: the week's total), ``key``, ``n``, ``suppressed``,
    ``display``, ``threshold``. The total carries the strictest threshold of the two tables' counts."""
    counts = counts or published_counts(con, iso_week)
    label = counts["week"].label
    frames = []
    for side, key, table in (("col", "category", counts["categories"]), ("row", "area_code", counts["areas"])):
        frames.append(pd.DataFrame({
            "week": label, "side": side, "key": table[key].astype(str), "n": table["n"].astype("int64"),
            "suppressed": table["n_suppressed"], "display": table["n_shown"],
            "threshold": [privacy.threshold_for(bool(s)) for s in table["sensitive"]]}))
    total = counts["total"]
    frames.append(pd.DataFrame({"week": [label], "side": [privacy.TOTAL_KEY], "key": [privacy.TOTAL_KEY],
                                "n": [int(total["n"])], "suppressed": [bool(total["n_suppressed"])],
                                "display": [str(total["n_shown"])], "threshold": [counts["total_threshold"]]}))
    columns = ["week", "side", "key", "n", "suppressed", "display", "threshold"]
    return pd.concat(frames, ignore_index=True)[columns].astype({"n": "int64", "suppressed": bool,
                                                                 "threshold": "int64"})


#: Switch for the tests (tests/test_weekly_suppression.py): with it off, the partner table is suppressed only
#: cell by cell, as it was before issue 4's fix, so that the break-test can show it recovers a hidden count.
PARTNER_SECONDARY_SUPPRESSION = True

_PARTNER_COL = "n"
_OTHER_PARTNERS = "\x1f(other)"


def _bounds(display: str, threshold: int, ranges: bool) -> tuple[float, float]:
    """What a printed count tells a reader: a number itself, "<t" 1..t-1, ".." at least t where its table shows
    "<" labels (a ".." there is never small) and at least 1 where it shows none. The rule of
    ``privacy.suppression_intervals``."""
    text = str(display).replace(NBSP, "")
    if text.isdigit():
        return float(text), float(text)
    if text.startswith("<"):
        return 1.0, float(int(text[1:]) - 1)
    return (float(threshold) if ranges else 1.0), math.inf


def week_system(counts: dict[str, Any], partners: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The week's published counts as one linear system for :func:`privacy.linked_pinned`: the category table,
    the area table and the partner table (``partners``: ``partner``, ``n``, ``suppressed``, ``display``,
    ``threshold``), each adding up to the week's total, which the three share.

    Incidents of partners the partner table does not list (none, normally) are one more hidden number, from 0
    up, so the partner equation stays true.
    """
    names, n, hidden, low, high = [], [], [], [], []

    def add(name: str, value: int, is_hidden: bool, display: str, threshold: int, ranges: bool) -> None:
        lo, hi = _bounds(display, threshold, ranges) if is_hidden else (float(value), float(value))
        names.append(name), n.append(int(value)), hidden.append(bool(is_hidden)), low.append(lo), high.append(hi)

    equations = []
    T = privacy.TOTAL_KEY
    tables = [
        ("col", counts["categories"]["category"], counts["categories"]),
        ("row", counts["areas"]["area_code"], counts["areas"]),
    ]
    total = counts["total"]
    any_ranges = False
    for side, keys, table in tables:
        thresholds = [privacy.threshold_for(bool(s)) for s in table["sensitive"]]
        ranges = any(str(d).startswith("<") for d in table["n_shown"])
        any_ranges |= ranges
        for key, value, sup, shown, limit in zip(keys, table["n"], table["n_suppressed"], table["n_shown"],
                                                 thresholds):
            add(f"{side}:{key}", int(value), bool(sup), str(shown), limit, ranges)
            equations.append((side, f"{side}:{key}", 1.0))
    partners = partners if partners is not None else pd.DataFrame(columns=["partner", "n", "display"])
    ranges = any(str(d).startswith("<") for d in partners["display"])
    listed = 0
    for row in partners.itertuples(index=False):
        add(f"partner:{row.partner}", int(row.n), bool(row.suppressed), str(row.display), int(row.threshold), ranges)
        equations.append(("partner", f"partner:{row.partner}", 1.0))
        listed += int(row.n)
    other = int(total["n"]) - listed
    if partners is not None and len(partners) and other:
        names.append(_OTHER_PARTNERS), n.append(other), hidden.append(True), low.append(0.0), high.append(math.inf)
        equations.append(("partner", _OTHER_PARTNERS, 1.0))
    # The total: "<t" is a range; ".." is at least its threshold only where every table it closes shows ranges.
    add(T, int(total["n"]), bool(total["n_suppressed"]), str(total["n_shown"]), int(counts["total_threshold"]),
        any_ranges and ranges)
    for side in ("col", "row", "partner") if len(partners) else ("col", "row"):
        equations.append((side, T, -1.0))
    numbers = pd.DataFrame({"n": n, "suppressed": hidden, "low": low, "high": high}, index=names)
    return numbers, pd.DataFrame(equations, columns=["eq", "name", "coef"])


def week_pinned(counts: dict[str, Any], partners: pd.DataFrame) -> list[tuple[str | None, str]]:
    """Every (insider, number) such that the insider pins a hidden number of the week to one value from what
    the report publishes. Insider None is any reader; insider p is partner p, which knows its own count of the
    week (it sent the rows, and its partner view shows its deliveries unsuppressed): the shared tables are the
    same in every partner's version, so they must hold against each partner's knowledge too."""
    numbers, equations = week_system(counts, partners)
    found: list[tuple[str | None, str]] = []
    insiders: list[str | None] = [None] + [str(p) for p, v in zip(partners["partner"], partners["n"]) if int(v) > 0]
    for insider in insiders:
        known = numbers.copy()
        if insider is not None:
            name = f"partner:{insider}"
            if not bool(known.at[name, "suppressed"]):
                continue  # its count is printed: it knows nothing more than any reader
            known.loc[name, ["suppressed", "low", "high"]] = [False, known.at[name, "n"], known.at[name, "n"]]
        if not known["suppressed"].any():
            continue
        pinned = privacy.linked_pinned(known, equations)
        found.extend((insider, str(name)) for name in pinned.index[pinned.to_numpy(dtype=bool)])
    return found


def _tables_pinned(counts: dict[str, Any]) -> set[str]:
    """Numbers the category and area tables pin between themselves, without the partner table: the partner
    table can neither cause nor cure these (logged; the category and area suppression owns them)."""
    numbers, equations = week_system(counts, None)
    if not numbers["suppressed"].any():
        return set()
    pinned = privacy.linked_pinned(numbers, equations)
    return {str(name) for name in pinned.index[pinned.to_numpy(dtype=bool)]}


def protect_partners(counts: dict[str, Any], roster: pd.DataFrame) -> pd.DataFrame:
    """The incidents per partner of the completeness table ("Händelser denna vecka"), protected.

    The column adds up to the week's total, which the category and area tables print: primary suppression alone
    lets a reader subtract the shown partners from the total and get the one hidden partner back (2026-W09 of
    the generated data: 439 - 432 = 7 for social services). So the column is a one-way table with the week's
    total, like the category table (:func:`privacy.secondary_suppression`, each partner at its own threshold,
    ``privacy.threshold_for``): its total is never hidden or chosen here, since the other tables fix it (kept
    public when they show it, forced hidden when they hide it). Then the whole week is audited as one system
    (:func:`week_pinned`: the three tables and their shared total, against any reader and against each partner
    knowing its own count); while anything is pinned, the smallest visible non-zero partner count is hidden as
    well.

    Returns one row per partner in ``roster`` (sql/weekly_partners.sql): ``partner``, ``n``, ``sensitive``,
    ``threshold``, ``suppressed``, ``display`` ("<5", "<10", ".." or the number, without digit grouping).
    """
    T = privacy.TOTAL_KEY
    cells = counts["cells"]
    this_week = cells[cells["iso_week"] == counts["week"].label].groupby("partner")["n"].sum()
    table = pd.DataFrame({
        "partner": roster["partner"].astype(str).to_numpy(),
        "n": [int(this_week.get(p, 0)) for p in roster["partner"]],
        "sensitive": roster["sensitive"].fillna(True).astype(bool).to_numpy(),
    })
    table["threshold"] = [privacy.threshold_for(bool(s)) for s in table["sensitive"]]
    if not len(table):
        return table.assign(suppressed=pd.Series(dtype=bool), display=pd.Series(dtype=object))
    if not PARTNER_SECONDARY_SUPPRESSION:
        shown, hidden = suppress(table["n"], table["sensitive"])
        return table.assign(suppressed=hidden, display=shown)

    total_hidden = bool(counts["total"]["n_suppressed"])
    margins = [(T, _PARTNER_COL), (T, T)]
    force: set[tuple[str, str]] = set(margins) if total_hidden else set()
    keep = set() if total_hidden else set(margins)
    already = _tables_pinned(counts)
    if already:
        logging.getLogger(__name__).warning(
            "week %s: the category and area tables pin %s between themselves", counts["week"].label,
            sorted(already))
    while True:
        grid = privacy.secondary_suppression(
            table.assign(_col=_PARTNER_COL)[["partner", "_col", "n"]], "n", "partner", "_col",
            threshold=table["threshold"], force=force, keep=keep,
        )
        interior = grid[(grid["partner"] != T) & (grid["_col"] == _PARTNER_COL)].set_index("partner")
        result = table.assign(
            suppressed=[bool(interior.at[p, "suppressed"]) for p in table["partner"]],
            display=[str(interior.at[p, "display"]) for p in table["partner"]],
        )
        pinned = [(who, name) for who, name in week_pinned(counts, result) if name not in already]
        if not pinned:
            return result
        visible = result[~result["suppressed"] & (result["n"] > 0)]
        if not len(visible):
            raise ValueError(  # not reached on any data seen: every partner count is hidden already
                f"week {counts['week'].label}: a hidden count is pinned whatever the partner table hides "
                f"({pinned[:3]}): merge partners or hide the week's total (PRIVACY.md, 'Published numbers')")
        choice = visible.sort_values(["n", "partner"]).iloc[0]["partner"]
        force.add((str(choice), _PARTNER_COL))


# --------------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------------


def build_weekly(
    con: duckdb.DuckDBPyConnection, iso_week: str, lang: str = i18n.DEFAULT_LANGUAGE, audience: str = RECIPIENTS
) -> dict[str, Any]:
    """Everything the weekly report shows, as plain values (the template only lays it out).

    ``lang``: 'sv' (default) or 'en', the message catalogue every text comes from. ``audience``: 'recipients'
    (the report for politicians and department heads) or 'partner:<id>' (the same report plus that partner's
    own deliveries for the week: a partner sees only its own delivery statistics, PRIVACY.md).
    """
    t = i18n.messages(lang)
    months = t.months()
    partner_id = _partner_of(audience)
    week = IsoWeek.parse(iso_week)
    baseline = week.previous(BASELINE_WEEKS)

    counts = published_counts(con, week.label)
    cells, delivered = counts["cells"], counts["delivered"]
    areas = query(con, "weekly_areas")
    taxonomy = query(con, "weekly_category_labels")
    labels = dict(zip(taxonomy["category"], taxonomy["label_en" if lang == "en" else "label_sv"]))
    unplaced_label = t("unplaced_label")

    by_category = counts["categories"]
    by_category = by_category.assign(label=[labels.get(c, c) for c in by_category["category"]])
    by_category = display_order(by_category, "label")

    by_area = counts["areas"].merge(areas, on="area_code", how="left")
    by_area["area_name"] = [
        unplaced_label if code == UNPLACED else (name if isinstance(name, str) and name else code)
        for code, name in zip(by_area["area_code"], by_area["area_name"])
    ]
    by_area["rate_shown"] = [
        _rate(n, pop, sup, code)
        for n, pop, sup, code in zip(by_area["n"], by_area["population"], by_area["n_suppressed"], by_area["area_code"])
    ]
    by_area["population_shown"] = [format_int(int(p)) if pd.notna(p) else DASH for p in by_area["population"]]
    placed = display_order(by_area[by_area["area_code"] != UNPLACED], "area_code")
    unplaced = by_area[by_area["area_code"] == UNPLACED].iloc[0]
    top_areas = placed[placed["n"] > 0].head(TOP_AREAS)
    total = counts["total"]
    has_baseline = bool(pd.notna(total["baseline"]))

    # Beyond normal variation (pipelines/anomaly.py): categories, areas, and every area x category cell.
    flags = _flags(con, week, cells, labels, areas, unplaced_label)
    by_category["flagged"] = _flag_column(by_category, "category", flags["category"])
    placed["flagged"] = _flag_column(placed, "area_code", flags["area_code"])
    top_areas = placed[placed["n"] > 0].head(TOP_AREAS)

    partners = _completeness(con, cells, week, delivered, t, protected=counts["partners"])
    deliveries = query(con, "weekly_deliveries", {"first": week.monday, "last": week.sunday})
    window = query(con, "weekly_deliveries", {"first": baseline[0].monday, "last": week.sunday})
    interventions = _interventions(con, week.monday, week.sunday, labels, t)

    stand_in = bool(areas["is_stand_in"].fillna(False).astype(bool).any()) if len(areas) else False
    last_received = None
    if len(deliveries):
        last_received = max(deliveries["received_at"]).to_pydatetime()

    report = {
        "municipality": MUNICIPALITY_NAME,
        "week": week,
        "week_label": week.label,
        "week_number": week.week,
        "year": week.year,
        "period": format_period(week.monday, week.sunday, months),
        "baseline_period": format_period(baseline[0].monday, baseline[-1].sunday, months),
        "baseline_weeks": BASELINE_WEEKS,
        "has_baseline": bool(has_baseline),
        "total": total,
        "categories": by_category,
        "areas": placed,
        "top_areas": top_areas,
        "unplaced": unplaced,
        "partners": partners,
        "missing": [p for p in partners if not p["delivered"]],
        "interventions": interventions,
        "stand_in": stand_in,
        "stand_in_label": stand_in_label() if stand_in else "",
        "delivery_count": int(len(deliveries)),
        "last_received": format_local_time(last_received),
        "primary_threshold": privacy.PRIMARY_THRESHOLD,
        "sensitive_threshold": privacy.SENSITIVE_THRESHOLD,
        "input_delivery_ids": sorted(str(d) for d in window["delivery_id"]),
        "flagged_cells": flags["cells"],
        "fdr_level": format_decimal(100 * anomaly.FDR_LEVEL, 0),
        "recent_weeks": anomaly.RECENT_WEEKS,
        "forecast": _forecast(con, week, labels, areas, unplaced_label, months, t),
        "charts": _charts(con, week, by_category, labels),
        "t": t,
        "lang": lang,
        "audience": audience,
        "partner_view": _partner_view(con, week, partner_id, partners, months) if partner_id else None,
        "unplaced_label": unplaced_label,
    }
    report["summary"] = _summary(report)
    # The PDF carries the time of the newest delivery the report uses, never the time it was printed.
    stamp = last_received.astimezone(ZoneInfo(TIMEZONE)) if last_received and last_received.tzinfo else last_received
    report["pdf_timestamp"] = stamp.strftime("%Y%m%d%H%M%S") if stamp else week.monday.strftime("%Y%m%d000000")
    return report


def _partner_of(audience: str) -> str | None:
    """'recipients' -> None; 'partner:<id>' -> '<id>'. Anything else is refused."""
    if audience == RECIPIENTS:
        return None
    if audience.startswith("partner:") and re.fullmatch(r"[a-z0-9_]+", audience[len("partner:"):]):
        return audience[len("partner:"):]
    raise ValueError(f"audience must be 'recipients' or 'partner:<id>': {audience!r}")


def _partner_view(
    con: duckdb.DuckDBPyConnection, week: IsoWeek, partner: str, partners: list[dict[str, Any]],
    months: tuple[str, ...],
) -> dict[str, Any]:
    """A partner's own delivery statistics for the week: its ledger rows, nothing of any other partner.

    Row counts are the partner's own files (it sent them), so they are shown unsuppressed to it; the shared
    tables of the report stay exactly as in the recipients' version.
    """
    known = {p["partner"]: p["name"] for p in partners}
    if partner not in known:
        raise ValueError(f"unknown partner {partner!r}")
    rows = query(con, "weekly_partner_deliveries", {"partner": partner, "first": week.monday, "last": week.sunday})
    deliveries = [
        {"received": format_local_time(r.received_at.to_pydatetime() if hasattr(r.received_at, "to_pydatetime")
                                       else r.received_at),
         "status": str(r.status), "rows_in": format_int(int(r.rows_in or 0)),
         "rows_loaded": format_int(int(r.rows_loaded or 0)), "rows_quarantined": format_int(int(r.rows_quarantined or 0))}
        for r in rows.itertuples(index=False)
    ]
    return {"partner": partner, "name": known[partner], "deliveries": deliveries}


def _flag_column(table: pd.DataFrame, key: str, flagged: set[str]) -> list[bool]:
    """A flag is printed only beside a published count (a flag on "<5" would say something about it)."""
    return [k in flagged and not bool(sup) for k, sup in zip(table[key], table["n_suppressed"])]


def _flags(
    con: duckdb.DuckDBPyConnection, week: IsoWeek, cells: pd.DataFrame, labels: dict[str, str], areas: pd.DataFrame,
    unplaced_label: str = UNPLACED_LABEL,
) -> dict[str, Any]:
    """Categories, areas and area x category cells whose count is beyond normal variation this week.

    Each of the three is its own family under Benjamini-Hochberg (anomaly.FDR_LEVEL). A flagged cell is listed
    only when its count is published (not suppressed); its normal level is the model's expected count rounded
    and suppressed like a baseline (a mean over 13 weeks would otherwise give away a small sum).
    """
    result: dict[str, Any] = {}
    for key in ("category", "area_code"):
        tested = anomaly.assess_week(con, week.label, (key,))
        result[key] = set(tested.loc[tested["flagged"], key].astype(str))
    tested = anomaly.assess_week(con, week.label)
    flagged = tested[tested["flagged"]].sort_values(["q_value", "area_code", "category"], kind="stable")
    this_week = cells[cells["iso_week"] == week.label]
    sensitive = this_week.groupby(["area_code", "category"])["sensitive"].any()
    names = dict(zip(areas["area_code"], areas["area_name"]))
    rows = []
    for row in flagged.itertuples(index=False):
        is_sensitive = bool(sensitive.get((row.area_code, row.category), True))
        shown, hidden = suppress_one(int(row.observed), is_sensitive)
        if hidden:
            continue
        expected = max(round_half_up(float(row.expected)), 1 if row.expected > 0 else 0)
        expected_shown, _ = suppress_one(expected, is_sensitive)
        rows.append({
            "area_code": str(row.area_code),
            "area_name": unplaced_label if row.area_code == UNPLACED else str(names.get(row.area_code, row.area_code)),
            "category": str(row.category),
            "label": labels.get(row.category, row.category),
            "n_shown": _grouped(shown),
            "expected_shown": _grouped(expected_shown),
            "q_shown": "<0,001" if row.q_value < 0.001 else format_decimal(float(row.q_value), 3),
        })
    result["cells"] = rows
    return result


def _forecast(
    con: duckdb.DuckDBPyConnection, week: IsoWeek, labels: dict[str, str], areas: pd.DataFrame,
    unplaced_label: str = UNPLACED_LABEL, months: tuple[str, ...] = MONTHS_SV, t: i18n.Messages | None = None,
) -> dict[str, Any]:
    """Next week's forecast (the median) with its 80 % interval, per category and for the busiest areas.

    The rule of :mod:`pipelines.forecast` decides what is a forecast, exactly as in its backtest: the median is
    the point forecast, and a cell whose chance of no event is over 80 % is "too few to forecast". Every
    partner is treated as possibly sensitive (the stricter threshold): a forecast below it is printed as "<10"
    without an interval, because a forecast over few weeks would give a small sum away. The privacy rule comes
    first: a hidden forecast is never replaced by "too few" (that would narrow "<10" down).
    """
    t = t or i18n.messages()
    target = IsoWeek.parse(forecast.next_week(week.label))
    names = dict(zip(areas["area_code"], areas["area_name"]))
    out: dict[str, Any] = {
        "week_number": target.week, "year": target.year,
        "period": format_period(target.monday, target.sunday, months),
        "week_label": target.label,
    }
    for key in ("category", "area_code"):
        table = forecast.forecast_week(con, week.label, (key,))
        table = table[table["history_weeks"] > 0].copy()
        # A median of 0 beside a positive mean is still a small forecast: suppressed like one, never a bare "0"
        # (a published median is at least the threshold, so this changes no published number).
        guarded = [max(int(m), 1 if e > 0 else 0) for m, e in zip(table["median"], table["expected"])]
        shown, hidden = suppress(guarded, [True] * len(guarded))
        too_few = [not h and not f for h, f in zip(hidden, table["forecastable"])]
        table["expected_shown"] = [t("too_few_to_forecast") if few else _grouped(v) for v, few in zip(shown, too_few)]
        table["hidden"] = hidden
        table["interval_shown"] = [
            DASH if h or few else f"{format_int(int(lo))}{DASH}{format_int(int(hi))}"
            for h, few, lo, hi in zip(hidden, too_few, table["low80"], table["high80"])
        ]
        if key == "category":
            table["label"] = [labels.get(c, c) for c in table["category"]]
        else:
            table["label"] = [
                unplaced_label if c == UNPLACED else str(names.get(c, c)) for c in table["area_code"]
            ]
        table = table.assign(_order=[1 if h else 0 for h in hidden], _neg=-table["expected"].round(6))
        table = table.sort_values(["_order", "_neg", "label"], kind="stable").drop(columns=["_order", "_neg"])
        out[key] = table.reset_index(drop=True)
    out["areas_shown"] = out["area_code"][~out["area_code"]["hidden"]].head(FORECAST_AREAS)
    return out


def _charts(
    con: duckdb.DuckDBPyConnection, week: IsoWeek, categories: pd.DataFrame, labels: dict[str, str]
) -> dict[str, Any]:
    """The numbers the inline SVG charts draw (the template draws them; every value is a published one).

    - bars: this week's published count per category (a suppressed count gets no bar, only its label);
    - trend: the week's total and each category's count over the last TREND_WEEKS weeks, each week's value
      suppressed like any count (the stricter threshold if a sensitive partner fed the category or the total);
      a suppressed week, or a week no partner delivered for, is a gap in the line, never a value.
    """
    weeks = [*(w.label for w in week.previous(TREND_WEEKS - 1)), week.label]
    cells = query(con, "weekly_cells", {"weeks": weeks})
    total = cells.groupby("iso_week")["n"].sum().reindex(weeks, fill_value=0)
    total_sensitive = bool(cells["sensitive"].any()) if len(cells) else False
    per = cells.pivot_table(index="category", columns="iso_week", values="n", aggfunc="sum", fill_value=0)
    per = per.reindex(columns=weeks, fill_value=0)
    sensitive = cells.groupby("category")["sensitive"].any() if len(cells) else pd.Series(dtype=bool)

    # A week in which no partner delivered is no data (a gap), never a drop to 0.
    with_data = {w for _, w in delivered_weeks(con, cells, weeks)}
    # Each week of the trend is the same one-way table as the report's category table (categories with the
    # week's total), so each week gets the same primary and secondary suppression (:func:`protect`), with the
    # sensitivity of that week's cells: a hidden category of a week can never be worked out from that week's
    # total minus the other categories, and the report week's column is hidden exactly as the category table.
    week_sensitive = cells.groupby(["category", "iso_week"])["sensitive"].any() if len(cells) else pd.Series(dtype=bool)
    hidden_at: dict[tuple[str, str], bool] = {}
    for w in weeks:
        column = pd.DataFrame(
            [(c, "n", int(per.at[c, w]) if c in per.index else 0, bool(week_sensitive.get((c, w), False)))
             for c in categories["category"]],
            columns=["category", "_col", "n", "sensitive"],
        )
        if not len(column):
            continue
        grid = protect(column, "category", "_col")
        for c, col, h in zip(grid["category"], grid["_col"], grid["suppressed"]):
            if col == "n" or c == privacy.TOTAL_KEY:
                key = privacy.TOTAL_KEY if c == privacy.TOTAL_KEY else str(c)
                if col == "n" or key == privacy.TOTAL_KEY:
                    hidden_at[(key, w)] = hidden_at.get((key, w), False) or bool(h)

    def series(values: list[int], is_sensitive: bool, key: str | None = None) -> list[int | None]:
        if key is None or not hidden_at:
            _, hidden = suppress(values, [is_sensitive] * len(values))
        else:
            hidden = [hidden_at.get((key, w), True) for w in weeks]
        return [None if h or w not in with_data else int(v) for v, h, w in zip(values, hidden, weeks)]

    def line(values: list[int | None], width: float, height: float) -> dict[str, Any]:
        top = max([v for v in values if v is not None] + [1])
        step = width / max(len(values) - 1, 1)
        segments, current = [], []
        for i, v in enumerate(values):
            if v is None:
                if current:
                    segments.append(current)
                current = []
                continue
            current.append(f"{i * step:.1f},{height - 2 - (height - 4) * v / top:.1f}")
        if current:
            segments.append(current)
        last = values[-1]
        return {"segments": [" ".join(s) for s in segments], "top": top,
                "last_point": segments[-1][-1].split(",") if last is not None and segments else None}

    trend_values = series([int(v) for v in total], total_sensitive,
                          privacy.TOTAL_KEY if hidden_at and len(categories) == len(per.index) else None)
    trend = line(trend_values, 560.0, 120.0)
    trend["numbers"] = [int(w[6:8]) for w in weeks]
    trend["values"] = trend_values
    trend["weeks"] = weeks
    spark = {}
    for category in categories["category"]:
        values = [int(v) for v in (per.loc[category] if category in per.index else [0] * len(weeks))]
        values = series(values, bool(sensitive.get(category, True)), category)
        spark[category] = line(values, 90.0, 22.0)
        spark[category]["values"] = values
    visible = categories[~categories["n_suppressed"] & (categories["n"] > 0)]
    top = int(visible["n"].max()) if len(visible) else 1
    bars = [
        {"label": r.label, "n_shown": r.n_shown, "width": round(300.0 * int(r.n) / top, 1) if not r.n_suppressed else 0.0,
         "suppressed": bool(r.n_suppressed)}
        for r in categories.itertuples()
    ]
    return {"weeks": weeks, "trend": trend, "spark": spark, "bars": bars, "bar_height": 18,
            "bars_height": 18 * len(bars) + 4}


def _rate(n: int, population: Any, suppressed: bool, code: str) -> str:
    """Incidents per 1,000 inhabitants, or a dash: never for a suppressed count (the rate would give it away)."""
    if code == UNPLACED or suppressed or population is None or pd.isna(population) or int(population) <= 0:
        return DASH
    return format_decimal(1000.0 * int(n) / int(population), 1)


def _completeness(
    con: duckdb.DuckDBPyConnection, cells: pd.DataFrame, week: IsoWeek, delivered: set[tuple[str, str]],
    t: i18n.Messages | None = None, protected: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """One row per expected partner: delivered or not, rows loaded and quarantined, quarantine share.

    The incidents per partner are ``protected`` (:func:`protect_partners`; computed here when not given): the
    column adds up to the week's total, so small counts are protected against it. A partner whose incidents are
    hidden has its rows loaded hidden too (".."), and no quarantine share: rows loaded are, for a partner that
    delivers one file per week, the same number as its incidents, and the share would give them back.
    """
    t = t or i18n.messages()
    rows = query(con, "weekly_partners", {"first": week.monday, "last": week.sunday})
    if protected is None:
        protected = published_counts(con, week.label)["partners"]
    protected = protected.set_index("partner")
    result = []
    for row in rows.itertuples(index=False):
        partner = str(row.partner)
        sensitive = bool(row.sensitive)
        is_delivered = (partner, week.label) in delivered
        loaded, loaded_sup = suppress_one(int(row.rows_loaded), sensitive)
        quarantined, quarantined_sup = suppress_one(int(row.rows_quarantined), sensitive)
        if partner in protected.index:
            incidents, incidents_sup = str(protected.at[partner, "display"]), bool(protected.at[partner, "suppressed"])
        else:  # not reached: the protected table is made from the same roster
            incidents, incidents_sup = privacy.HIDDEN_LABEL, True
        if incidents_sup and not loaded_sup and int(row.rows_loaded) > 0:
            loaded, loaded_sup = privacy.HIDDEN_LABEL, True
        rows_in = int(row.rows_loaded) + int(row.rows_quarantined)
        if not is_delivered:
            share = DASH
        elif loaded_sup or quarantined_sup or incidents_sup or rows_in == 0:
            share = DASH  # a share next to a suppressed count would give the count away
        else:
            share = format_decimal(100.0 * int(row.rows_quarantined) / rows_in, 1) + NBSP + "%"
        name = str(row.partner_name)
        missing_sentence = "" if is_delivered else t("missing_sentence", name=name)
        # The table's own note is short (the missing delivery is stated in full above the table); the CSV,
        # read on its own, carries the full sentence.
        note = "" if is_delivered else t("missing_note")
        csv_note = missing_sentence
        if int(row.rejected):
            rejected = t("rejected_one") if int(row.rejected) == 1 else t("rejected_many", n=int(row.rejected))
            rejected = t("rejected_note", what=rejected[0].upper() + rejected[1:])
            note = f"{note} {rejected}".strip()
            csv_note = f"{csv_note} {rejected}".strip()
        result.append(
            {
                "partner": partner,
                "name": name,
                "delivered": is_delivered,
                "delivered_shown": t("answer_yes") if is_delivered else t("answer_no"),
                "deliveries": int(row.deliveries),
                # A partner that did not deliver has no count for the week: a dash, never a 0.
                "incidents_shown": _grouped(incidents) if is_delivered else DASH,
                "rows_loaded_shown": _grouped(loaded) if is_delivered else DASH,
                "rows_quarantined_shown": _grouped(quarantined) if is_delivered else DASH,
                "quarantine_share_shown": share,
                "note": note,
                "csv_note": csv_note,
                "missing_sentence": missing_sentence,
            }
        )
    return result


def _grouped(shown: str) -> str:
    """A published count with digit grouping ("1 234"); a suppressed label ("<5", "..") as it is."""
    return format_int(int(shown)) if shown.isdigit() else shown


def _interventions(
    con: duckdb.DuckDBPyConnection, first: date, last: date, labels: dict[str, str], t: i18n.Messages | None = None
) -> list[dict[str, str]]:
    t = t or i18n.messages()
    months = t.months()
    rows = query(con, "weekly_interventions", {"first": first, "last": last})
    result = []
    for row in rows.itertuples(index=False):
        categories = row.categories if row.categories is not None else []
        categories = [labels.get(c, c) for c in list(categories)]
        starts = row.starts_on.date() if hasattr(row.starts_on, "date") else row.starts_on
        ends = None if pd.isna(row.ends_on) else (row.ends_on.date() if hasattr(row.ends_on, "date") else row.ends_on)
        result.append(
            {
                "title": str(row.title),
                "area": f"{row.area_name} ({row.area_code})" if isinstance(row.area_name, str) else str(row.area_code),
                # the register's code names the kind; the catalogue its words (an unknown code as it is)
                "kind": str(t.catalogue.get(f"kind_{row.kind}", row.kind)),
                "responsible": str(row.responsible_name) if isinstance(row.responsible_name, str)
                else str(row.responsible_partner),
                "period": f"{format_date(starts, months)} {DASH} "
                          f"{format_date(ends, months) if ends else t('until_further')}",
                "categories": ", ".join(categories) if categories else t("all_categories"),
            }
        )
    return result


def _summary(report: dict[str, Any]) -> list[str]:
    """The summary, written from the data: a few plain sentences (from the catalogue), most important first."""
    t = report.get("t") or i18n.messages()
    sentences = []
    total = report["total"]
    count = total["n_shown"]
    text = t("s_week", week=report["week_number"], period=report["period"], count=_amount_text(count, t),
             incidents=t("incident_one") if count == "1" else t("incident_many"),
             municipality=report["municipality"])
    if not report["has_baseline"]:
        text += t("s_no_baseline")
    elif total["change"] is None:
        text += t("s_baseline_only", baseline=total["baseline_shown"])
    else:
        change = int(total["change"])
        if change > 0:
            verdict = t("s_up", n=format_int(change))
        elif change < 0:
            verdict = t("s_down", n=format_int(-change))
        else:
            verdict = t("s_same")
        text += t("s_baseline", weeks=report["baseline_weeks"], baseline=total["baseline_shown"], verdict=verdict)
    sentences.append(text)

    categories = report["categories"]
    shown = categories[categories["change"].notna()]
    ups = shown[shown["change"] > 0].sort_values(["change", "label"], ascending=[False, True]).head(SUMMARY_ITEMS)
    downs = shown[shown["change"] < 0].sort_values(["change", "label"], ascending=[True, True]).head(SUMMARY_ITEMS)
    for title, rows in ((t("s_largest_up"), ups), (t("s_largest_down"), downs)):
        if len(rows):
            listed = ", ".join(f"{r.label} ({format_change(int(r.change))})" for r in rows.itertuples())
            sentences.append(t("s_list", title=title, items=listed))
    if report["has_baseline"] and not len(ups) and not len(downs):
        sentences.append(t("s_no_change"))

    flagged = report.get("flagged_cells") or []
    if flagged:
        items = "; ".join(t("s_flagged_item", label=c["label"], area=f"{c['area_name']} ({c['area_code']})",
                            n=c["n_shown"], expected=c["expected_shown"]) for c in flagged[:SUMMARY_ITEMS])
        sentences.append(t("s_flagged", items=items))

    areas = report["areas"]
    rising = areas[areas["change"].notna()]
    rising = rising[rising["change"] > 0].sort_values(["change", "area_code"], ascending=[False, True])
    if len(rising):
        parts = [
            t("s_area_item", name=f"{r.area_name} ({r.area_code})", n=r.n_shown, baseline=r.baseline_shown)
            for r in rising.head(SUMMARY_ITEMS).itertuples()
        ]
        sentences.append(t("s_areas_up", items="; ".join(parts)))
    elif len(report["top_areas"]) and not report["top_areas"].iloc[0]["n_suppressed"]:
        top = report["top_areas"].iloc[0]
        sentences.append(t("s_top_area", name=top["area_name"], n=top["n_shown"]))

    for partner in report["missing"]:
        sentences.append(partner["missing_sentence"])
    unplaced = report["unplaced"]
    if unplaced["n"] > 0:
        amount_text = _amount_text(unplaced["n_shown"], t)
        sentences.append(t("s_unplaced", amount=amount_text[0].upper() + amount_text[1:],
                           label=report.get("unplaced_label", UNPLACED_LABEL)))
    count_interventions = len(report["interventions"])
    if count_interventions:
        key = "s_interventions_one" if count_interventions == 1 else "s_interventions_many"
        sentences.append(t(key, n=count_interventions))
    return [s for s in sentences if s]


def _amount_text(shown: str, t: i18n.Messages | None = None) -> str:
    """A published count inside a sentence: "<5" reads "färre än 5", ".." reads "ett dolt antal"."""
    t = t or i18n.messages()
    if shown.startswith("<"):
        return t("fewer_than", n=shown[1:])
    if shown == privacy.HIDDEN_LABEL:
        return t("hidden_amount")
    return shown


def _tables(report: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The CSV tables behind the report, with exactly the values it prints, headed in the report's language
    (the ``csv_*`` messages). The file names stay Swedish in both languages: the captions name them."""
    t = report.get("t") or i18n.messages()
    h = {key[len("csv_"):]: str(text) for key, text in t.catalogue.items() if key.startswith("csv_")}
    baseline = h["baseline"].format(weeks=BASELINE_WEEKS)
    categories = pd.DataFrame(
        {
            h["category_code"]: report["categories"]["category"],
            h["category"]: report["categories"]["label"],
            h["count_week"]: report["categories"]["n_shown"],
            baseline: report["categories"]["baseline_shown"],
            h["change"]: _numbers(report["categories"]["change"]),
            h["flag"]: [h["yes"] if f else "" for f in report["categories"]["flagged"]],
        }
    )
    every_area = pd.concat([report["areas"], report["unplaced"].to_frame().T], ignore_index=True)
    areas = pd.DataFrame(
        {
            h["area_code"]: every_area["area_code"],
            h["area"]: every_area["area_name"],
            h["population"]: every_area["population_shown"],
            h["count_week"]: every_area["n_shown"],
            h["rate"]: every_area["rate_shown"],
            baseline: every_area["baseline_shown"],
            h["change"]: _numbers(every_area["change"]),
            h["flag"]: [h["yes"] if f is True else "" for f in every_area.get("flagged", [])],
        }
    )
    partner_columns = {
        "partner": "partner_code", "name": "partner", "delivered_shown": "delivered", "deliveries": "deliveries",
        "incidents_shown": "incidents_week", "rows_loaded_shown": "rows_loaded",
        "rows_quarantined_shown": "rows_quarantined", "quarantine_share_shown": "quarantine_share",
        "csv_note": "note",
    }
    partners = pd.DataFrame(
        [{h[column]: p[field] for field, column in partner_columns.items()} for p in report["partners"]],
        columns=[h[column] for column in partner_columns.values()],
    )
    flagged_columns = {"area_code": "area_code", "area_name": "area", "category": "category_code",
                       "label": "category", "n_shown": "count_week", "expected_shown": "expected", "q_shown": "q"}
    flagged = pd.DataFrame(
        [{h[column]: c[field] for field, column in flagged_columns.items()} for c in report["flagged_cells"]],
        columns=[h[column] for column in flagged_columns.values()],
    )
    forecast_columns = [h[c] for c in ("week", "level", "code", "name", "forecast", "interval")]
    forecast_rows = []
    for key, kind in (("category", h["level_category"]), ("area_code", h["level_area"])):
        table = report["forecast"][key]
        for row in table.itertuples(index=False):
            values = (report["forecast"]["week_label"], kind, getattr(row, key), row.label, row.expected_shown,
                      row.interval_shown)
            forecast_rows.append(dict(zip(forecast_columns, values)))
    forecast_table = pd.DataFrame(forecast_rows, columns=forecast_columns)
    charts = report["charts"]
    trend = {h["week"]: charts["weeks"], h["total"]: [DASH if v is None else v for v in charts["trend"]["values"]]}
    for category, label in zip(report["categories"]["category"], report["categories"]["label"]):
        trend[label] = [privacy.HIDDEN_LABEL if v is None else v for v in charts["spark"][category]["values"]]
    trend_table = pd.DataFrame(trend).astype(str)
    # CSV cells carry no digit-grouping spaces (Excel would read "1 234" as text) and plain spaces elsewhere.
    tables = {"kategorier": categories, "omraden": areas, "leveranser": partners, "avvikelser": flagged,
              "prognos": forecast_table, "trend": trend_table}
    for frame in tables.values():
        for column in frame.columns:
            if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column].dtype):
                frame[column] = [
                    str(v).replace(NBSP, "" if re.fullmatch(r"[\d\u00a0]+(,\d+)?", str(v)) else " ")
                    for v in frame[column]
                ]
    return tables


def _numbers(values: Iterable[Any]) -> pd.Series:
    """A column of whole numbers for the CSV, empty where the report shows none (a suppressed cell's change).

    Kept numeric rather than as the report's "+3"/"−2" text, so that a spreadsheet can sort and sum it and the
    formula neutraliser (which leaves numbers alone) need not prefix a leading "+" or "-".
    """
    return pd.Series([None if v is None or pd.isna(v) else int(v) for v in values], dtype="Int64")


def render_weekly_html(report: dict[str, Any]) -> str:
    return template_environment().get_template("weekly.html.j2").render(**report)


def render_weekly(
    con: duckdb.DuckDBPyConnection, home: Home, iso_week: str, pdf: bool = True,
    lang: str = i18n.DEFAULT_LANGUAGE, audience: str = RECIPIENTS,
) -> list[Path]:
    """Write the week's report and its CSV tables into out/weekly/<YYYY-Www>/ and log the publication.

    Returns the files written (CSV tables first, then the HTML, so the report appears only once the tables it
    refers to exist, then its PDF, printed by headless Chromium (:mod:`pipelines.pdf`) when one is installed
    and ``pdf`` is true). Each file is replaced atomically; rendering twice from the same database gives the same
    bytes. The audit entry records the week and the deliveries the numbers come from (ledger ids: content
    hashes, nothing personal).
    """
    report = build_weekly(con, iso_week, lang=lang, audience=audience)
    week = report["week_label"]
    partner = _partner_of(audience)
    # The recipients' Swedish report keeps its names; a language or a partner variant gets a suffix.
    variant = ("" if lang == i18n.DEFAULT_LANGUAGE else f"_{lang}") + (f"_{partner}" if partner else "")
    folder = home.out / "weekly" / week if not partner else home.out / "weekly" / week / "partners" / partner
    written = []
    for suffix, frame in _tables(report).items():
        written.append(write_atomic(folder / f"veckorapport_{week}{variant}_{suffix}.csv", csv_bytes(frame)))
    html_path = folder / f"veckorapport_{week}{variant}.html"
    written.append(write_atomic(html_path, render_weekly_html(report)))
    if pdf:
        from pipelines import pdf as printing

        if printing.chromium() is not None:
            written.append(printing.print_pdf(html_path, folder / f"veckorapport_{week}{variant}.pdf",
                                              timestamp=report["pdf_timestamp"]))
        else:
            # Say so rather than leave the archive copy silently missing.
            logging.getLogger(__name__).warning(
                "no Chromium found: the PDF of week %s was not printed (install the 'chromium' package "
                "or set EST_CHROMIUM)", week)
    warehouse.audit(
        con,
        "publish",
        str(html_path.relative_to(home.out)),
        audience=AUDIENCE if not partner else f"partner:{partner}",
        detail={
            "iso_week": week,
            "lang": lang,
            "baseline_weeks": [w.label for w in report["week"].previous(BASELINE_WEEKS)],
            "delivery_count": len(report["input_delivery_ids"]),
            "delivery_ids": report["input_delivery_ids"],
            "files": [p.name for p in written],
        },
    )
    return written
