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

from pipelines import privacy, warehouse
from pipelines.publish import write_atomic
from pipelines.settings import MUNICIPALITY_NAME, REPORTS_DIR, TIMEZONE, Home

#: How many ISO weeks before the report week the baseline averages over. Eight weeks is two months: long
#: enough to smooth a single odd week, short enough to follow the season. Printed in the report.
BASELINE_WEEKS = 8

#: How many areas the report's area table lists (the CSV holds them all).
TOP_AREAS = 10

#: How many categories/areas the summary names as the largest changes.
SUMMARY_ITEMS = 3

#: weekly_counts.area_code for incidents the pipeline could not place (sql/aggregate_weekly_counts.sql).
UNPLACED = "unplaced"
UNPLACED_LABEL = "Ej geografiskt placerade"

AUDIENCE = "weekly_recipients"

#: Swedish names of the intervention kinds the register uses (config/interventions.yaml); an unknown kind is
#: printed as written.
INTERVENTION_KINDS = {
    "situational_prevention": "Situationell prevention",
    "social_prevention": "Social prevention",
    "surveillance": "Kameraövervakning",
    "patrol": "Rondering",
    "physical_environment": "Fysisk miljö",
}

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


def format_period(first: date, last: date) -> str:
    """'17–23 mars 2025', '31 mars–6 april 2025', '29 december 2025–4 januari 2026'."""
    start, end = f"{first.day} {MONTHS_SV[first.month - 1]}", f"{last.day} {MONTHS_SV[last.month - 1]} {last.year}"
    if first.year != last.year:
        return f"{start} {first.year}{DASH}{end}"
    if first.month != last.month:
        return f"{start}{DASH}{end}"
    return f"{first.day}{DASH}{end}"


def format_date(day: date | None) -> str:
    return "" if day is None else f"{day.day} {MONTHS_SV[day.month - 1]} {day.year}"


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
# The report
# --------------------------------------------------------------------------------------------------------


def build_weekly(con: duckdb.DuckDBPyConnection, iso_week: str) -> dict[str, Any]:
    """Everything the weekly report shows, as plain values (the template only lays it out)."""
    week = IsoWeek.parse(iso_week)
    baseline = week.previous(BASELINE_WEEKS)
    baseline_labels = [w.label for w in baseline]
    all_weeks = baseline_labels + [week.label]

    cells = query(con, "weekly_cells", {"weeks": all_weeks})
    delivered = delivered_weeks(con, cells, all_weeks)
    areas = query(con, "weekly_areas")
    labels = dict(query(con, "weekly_categories").itertuples(index=False))

    # Categories: those with anything this week or in the baseline.
    by_category = compare(cells, week.label, baseline_labels, delivered, "category")
    by_category = by_category[(by_category["n"] > 0) | (by_category["baseline"].fillna(0) > 0)]
    by_category = by_category.assign(label=[labels.get(c, c) for c in by_category["category"]])
    by_category, category_total = published(by_category, "category")
    by_category = display_order(by_category, "label")

    # Areas: every published area, plus the unplaced incidents (never dropped) and any code not in `areas`.
    by_area = compare(
        cells, week.label, baseline_labels, delivered, "area_code", keys=list(areas["area_code"]) + [UNPLACED]
    )
    by_area = by_area.merge(areas, on="area_code", how="left")
    by_area["area_name"] = [
        UNPLACED_LABEL if code == UNPLACED else (name if isinstance(name, str) and name else code)
        for code, name in zip(by_area["area_code"], by_area["area_name"])
    ]
    by_area, area_total = published(by_area, "area_code")
    by_area["rate_shown"] = [
        _rate(n, pop, sup, code)
        for n, pop, sup, code in zip(by_area["n"], by_area["population"], by_area["n_suppressed"], by_area["area_code"])
    ]
    by_area["population_shown"] = [format_int(int(p)) if pd.notna(p) else DASH for p in by_area["population"]]
    placed = display_order(by_area[by_area["area_code"] != UNPLACED], "area_code")
    unplaced = by_area[by_area["area_code"] == UNPLACED].iloc[0]
    top_areas = placed[placed["n"] > 0].head(TOP_AREAS)

    # The week's total appears in both tables' margins: it is hidden if either table needs it hidden.
    total, _ = published(compare(cells, week.label, baseline_labels, delivered, None), "_all")
    total = total.iloc[0].copy()
    hidden_total = next((t for t in (category_total, area_total) if t["suppressed"]), None)
    if hidden_total is not None:
        total["n_shown"], total["n_suppressed"] = hidden_total["shown"], True
        total["change"], total["change_shown"] = None, DASH
    has_baseline = bool(pd.notna(total["baseline"]))

    partners = _completeness(con, cells, week, delivered)
    deliveries = query(con, "weekly_deliveries", {"first": week.monday, "last": week.sunday})
    window = query(con, "weekly_deliveries", {"first": baseline[0].monday, "last": week.sunday})
    interventions = _interventions(con, week.monday, week.sunday, labels)

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
        "period": format_period(week.monday, week.sunday),
        "baseline_period": format_period(baseline[0].monday, baseline[-1].sunday),
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
    }
    report["summary"] = _summary(report)
    return report


def _rate(n: int, population: Any, suppressed: bool, code: str) -> str:
    """Incidents per 1,000 inhabitants, or a dash: never for a suppressed count (the rate would give it away)."""
    if code == UNPLACED or suppressed or population is None or pd.isna(population) or int(population) <= 0:
        return DASH
    return format_decimal(1000.0 * int(n) / int(population), 1)


def _completeness(
    con: duckdb.DuckDBPyConnection, cells: pd.DataFrame, week: IsoWeek, delivered: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """One row per expected partner: delivered or not, rows loaded and quarantined, quarantine share."""
    rows = query(con, "weekly_partners", {"first": week.monday, "last": week.sunday})
    this_week = cells[cells["iso_week"] == week.label].groupby("partner")["n"].sum()
    result = []
    for row in rows.itertuples(index=False):
        partner = str(row.partner)
        sensitive = bool(row.sensitive)
        is_delivered = (partner, week.label) in delivered
        loaded, loaded_sup = suppress_one(int(row.rows_loaded), sensitive)
        quarantined, quarantined_sup = suppress_one(int(row.rows_quarantined), sensitive)
        incidents, _ = suppress_one(int(this_week.get(partner, 0)), sensitive)
        rows_in = int(row.rows_loaded) + int(row.rows_quarantined)
        if not is_delivered:
            share = DASH
        elif loaded_sup or quarantined_sup or rows_in == 0:
            share = DASH  # a share next to a suppressed count would give the count away
        else:
            share = format_decimal(100.0 * int(row.rows_quarantined) / rows_in, 1) + NBSP + "%"
        name = str(row.partner_name)
        missing_sentence = (
            "" if is_delivered
            else f"Ingen leverans från {name} denna vecka — siffrorna för {name} saknas, inte noll."
        )
        # The table's own note is short (the missing delivery is stated in full above the table); the CSV,
        # read on its own, carries the full sentence.
        note = "" if is_delivered else "Saknas, inte noll."
        csv_note = missing_sentence
        if int(row.rejected):
            rejected = "en avvisad fil" if int(row.rejected) == 1 else f"{int(row.rejected)} avvisade filer"
            rejected = f"{rejected.capitalize()} för veckan (se leveranskvittot)."
            note = f"{note} {rejected}".strip()
            csv_note = f"{csv_note} {rejected}".strip()
        result.append(
            {
                "partner": partner,
                "name": name,
                "delivered": is_delivered,
                "delivered_shown": "Ja" if is_delivered else "Nej",
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
    con: duckdb.DuckDBPyConnection, first: date, last: date, labels: dict[str, str]
) -> list[dict[str, str]]:
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
                "kind": INTERVENTION_KINDS.get(str(row.kind), str(row.kind)),
                "responsible": str(row.responsible_name) if isinstance(row.responsible_name, str)
                else str(row.responsible_partner),
                "period": f"{format_date(starts)} {DASH} {format_date(ends) if ends else 'tills vidare'}",
                "categories": ", ".join(categories) if categories else "Alla kategorier",
            }
        )
    return result


def _summary(report: dict[str, Any]) -> list[str]:
    """The summary, written from the data: a few plain Swedish sentences, most important first."""
    sentences = []
    total = report["total"]
    count = total["n_shown"]
    count_text = _amount_text(count)
    text = (
        f"Vecka {report['week_number']} ({report['period']}) registrerades {count_text} "
        f"{'händelse' if count == '1' else 'händelser'} i {report['municipality']} kommun."
    )
    if not report["has_baseline"]:
        text += " Normalvärde saknas: ingen av veckans leverantörer levererade under de föregående veckorna."
    elif total["change"] is None:
        text += f" Normalvärdet för samma samverkansparter är {total['baseline_shown']}."
    else:
        change = int(total["change"])
        if change > 0:
            verdict = f"en ökning med {format_int(change)}"
        elif change < 0:
            verdict = f"en minskning med {format_int(-change)}"
        else:
            verdict = "samma nivå"
        text += (
            " Normalvärdet för samma samverkansparter "
            f"(snitt för de {report['baseline_weeks']} föregående veckorna) "
            f"är {total['baseline_shown']}: {verdict}."
        )
    sentences.append(text)

    categories = report["categories"]
    shown = categories[categories["change"].notna()]
    ups = shown[shown["change"] > 0].sort_values(["change", "label"], ascending=[False, True]).head(SUMMARY_ITEMS)
    downs = shown[shown["change"] < 0].sort_values(["change", "label"], ascending=[True, True]).head(SUMMARY_ITEMS)
    for title, rows in (("Störst ökning", ups), ("Störst minskning", downs)):
        if len(rows):
            listed = ", ".join(f"{r.label} ({format_change(int(r.change))})" for r in rows.itertuples())
            sentences.append(f"{title}: {listed}.")
    if report["has_baseline"] and not len(ups) and not len(downs):
        sentences.append("Ingen kategori med publicerbara siffror avviker från sitt normalvärde.")

    areas = report["areas"]
    rising = areas[areas["change"].notna()]
    rising = rising[rising["change"] > 0].sort_values(["change", "area_code"], ascending=[False, True])
    if len(rising):
        parts = [
            f"{r.area_name} ({r.n_shown} händelser, normalt {r.baseline_shown})"
            for r in rising.head(SUMMARY_ITEMS).itertuples()
        ]
        sentences.append("Områden med störst ökning mot sitt normalvärde: " + "; ".join(parts) + ".")
    elif len(report["top_areas"]) and not report["top_areas"].iloc[0]["n_suppressed"]:
        top = report["top_areas"].iloc[0]
        sentences.append(f"Flest händelser: {top['area_name']} ({top['n_shown']}).")

    for partner in report["missing"]:
        sentences.append(partner["missing_sentence"])
    unplaced = report["unplaced"]
    if unplaced["n"] > 0:
        amount_text = _amount_text(unplaced["n_shown"])
        sentences.append(
            f"{amount_text[0].upper()}{amount_text[1:]} händelser kunde inte placeras geografiskt; "
            f"de redovisas som ”{UNPLACED_LABEL}”."
        )
    count_interventions = len(report["interventions"])
    if count_interventions:
        what = "insats pågår" if count_interventions == 1 else "insatser pågår"
        sentences.append(f"{count_interventions} {what} under veckan.")
    return [s for s in sentences if s]


def _amount_text(shown: str) -> str:
    """A published count inside a sentence: "<5" reads "färre än 5", ".." reads "ett dolt antal"."""
    if shown.startswith("<"):
        return f"färre än {shown[1:]}"
    if shown == privacy.HIDDEN_LABEL:
        return "ett dolt antal"
    return shown


def _tables(report: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The CSV tables behind the report, with exactly the values it prints."""
    categories = pd.DataFrame(
        {
            "Kategori (kod)": report["categories"]["category"],
            "Kategori": report["categories"]["label"],
            "Antal denna vecka": report["categories"]["n_shown"],
            f"Normalvärde (snitt {BASELINE_WEEKS} veckor)": report["categories"]["baseline_shown"],
            "Förändring": _numbers(report["categories"]["change"]),
        }
    )
    every_area = pd.concat([report["areas"], report["unplaced"].to_frame().T], ignore_index=True)
    areas = pd.DataFrame(
        {
            "Områdeskod": every_area["area_code"],
            "Område": every_area["area_name"],
            "Befolkning": every_area["population_shown"],
            "Antal denna vecka": every_area["n_shown"],
            "Per 1 000 invånare": every_area["rate_shown"],
            f"Normalvärde (snitt {BASELINE_WEEKS} veckor)": every_area["baseline_shown"],
            "Förändring": _numbers(every_area["change"]),
        }
    )
    partners = pd.DataFrame(
        [
            {
                "Samverkanspart (kod)": p["partner"],
                "Samverkanspart": p["name"],
                "Levererat": p["delivered_shown"],
                "Leveranser": p["deliveries"],
                "Händelser denna vecka": p["incidents_shown"],
                "Inlästa rader": p["rows_loaded_shown"],
                "Rader i karantän": p["rows_quarantined_shown"],
                "Andel i karantän": p["quarantine_share_shown"],
                "Kommentar": p["csv_note"],
            }
            for p in report["partners"]
        ],
        columns=[
            "Samverkanspart (kod)", "Samverkanspart", "Levererat", "Leveranser", "Händelser denna vecka",
            "Inlästa rader", "Rader i karantän", "Andel i karantän", "Kommentar",
        ],
    )
    # CSV cells carry no digit-grouping spaces (Excel would read "1 234" as text) and plain spaces elsewhere.
    tables = {"kategorier": categories, "omraden": areas, "leveranser": partners}
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


def render_weekly(con: duckdb.DuckDBPyConnection, home: Home, iso_week: str) -> list[Path]:
    """Write the week's report and its CSV tables into out/weekly/<YYYY-Www>/ and log the publication.

    Returns the files written (CSV tables first, the HTML last, so the report appears only once the tables it
    refers to exist). Each file is replaced atomically; rendering twice from the same database gives the same
    bytes. The audit entry records the week and the deliveries the numbers come from (ledger ids: content
    hashes, nothing personal).
    """
    report = build_weekly(con, iso_week)
    week = report["week_label"]
    folder = home.out / "weekly" / week
    written = []
    for suffix, frame in _tables(report).items():
        written.append(write_atomic(folder / f"veckorapport_{week}_{suffix}.csv", csv_bytes(frame)))
    html_path = folder / f"veckorapport_{week}.html"
    written.append(write_atomic(html_path, render_weekly_html(report)))
    warehouse.audit(
        con,
        "publish",
        str(html_path.relative_to(home.out)),
        audience=AUDIENCE,
        detail={
            "iso_week": week,
            "baseline_weeks": [w.label for w in report["week"].previous(BASELINE_WEEKS)],
            "delivery_count": len(report["input_delivery_ids"]),
            "delivery_ids": report["input_delivery_ids"],
            "files": [p.name for p in written],
        },
    )
    return written
