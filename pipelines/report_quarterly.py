"""The quarterly map for the analysis meeting (kvartalsanalysmöte): incidents per 1,000 inhabitants per area.

DESIGN.md section 6, "Quarterly analysis pack": a choropleth of rates per area for the quarter, one layer per
category, and the table behind the map. This module draws the area maps: one base layer for all categories and one per
category, change layers against the previous quarter and the same quarter last year (or a notice saying which
comparison has no data), the interventions of the register as an overlay, the police's vulnerable areas as
an overlay when the user gives that layer (``EST_VULNERABLE_AREAS``), and a background map only when the
municipality names its own tile server (``EST_TILE_URL``). Hot spots, near repeats, the intervention follow-up,
static PNGs and the index page are put together by :mod:`pipelines.quarterly_pack`.

Privacy (PRIVACY.md, "Published numbers" and "Reports and maps"):
- Counts come from `weekly_counts` only. The area x category table is protected as a whole with primary and
  secondary suppression, against the weekly reports of the quarter's weeks as well
  (:func:`protect_quarter`, :func:`pipelines.privacy.linked_suppression`): an area or category with a hidden
  week has its quarterly total hidden, and the weeks and the quarter are audited together. A suppressed area
  is drawn hatched and labelled "<5" (or "<10", or ".." when hidden to protect another cell), never as zero,
  and has no rate. A comparison quarter's counts are protected as that quarter's own map protects them.
- Popups and tooltips hold only project-made labels: area code, area name (SCB's RegSO name or the stand-in
  layer's), the published count and rate. No partner text reaches the page. The tooltips are built with DOM
  text nodes (``textContent``), not folium's GeoJsonTooltip, which assembles HTML in JavaScript template
  strings; there are no popups.
- The page makes no request to any host when opened: no tiles (``tiles=None``), Leaflet inlined from a pinned
  package (:mod:`pipelines.offline_assets`), no other library.

Each ISO week belongs to the quarter that holds its Thursday (the ISO 8601 rule for which year a week belongs
to), so every week is counted in exactly one quarter. Areas are reprojected from SWEREF 99 TM to WGS 84 for
display only.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import date, timedelta
from pathlib import Path
from html import escape as html_escape
from typing import Any

import duckdb
import folium
import numpy as np
import pandas as pd
import shapely
from branca.element import Element, Figure, MacroElement
from jinja2 import Template

from pipelines import offline_assets, privacy, warehouse
from pipelines.publish import write_atomic
from pipelines.report_weekly import (
    DASH,
    UNPLACED,
    UNPLACED_LABEL,
    IsoWeek,
    csv_bytes,
    delivered_weeks,
    format_decimal,
    format_int,
    format_local_time,
    format_period,
    protect,
    query,
    template_environment,
)
from pipelines.settings import CRS_WGS84, MUNICIPALITY_NAME, Home

AUDIENCE = "analysis_meeting"
QUARTER_PATTERN = re.compile(r"^(\d{4})Q([1-4])$")
ALL_CATEGORIES = "Alla kategorier"
ALL_KEY = "alla"

#: Colours of the rate classes, light to dark (ColorBrewer YlOrRd, 5 classes: readable in print and by most
#: colour-blind readers). Fewer classes take evenly spaced colours from the same ramp.
CLASS_COLOURS = ("#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026")
ZERO_COLOUR = "#ffffff"
NO_DATA_COLOUR = "#bdbdbd"
HATCH_ID = "est-hatch"  # the SVG pattern suppressed areas are filled with (defined in the page)

#: Simplification tolerance in metres before reprojection: invisible at the zoom a municipality is shown at,
#: and it keeps the page (one copy of the polygons per layer) small enough to mail.
SIMPLIFY_METRES = 2.0
#: Decimal places of WGS 84 coordinates in the page: 6 places is about 0.1 m.
COORDINATE_DECIMALS = 6

MAP_HEIGHT_PX = 640

#: Whether to run the privacy module's exact check that no hidden cell can be worked out from the totals
#: (``privacy.secondary_suppression(audit=True)``). It once took 49 s on a municipality's quarter and was off;
#: the network-cycle check (``privacy.pinned_cells``) takes a few seconds, so it is on. With the weekly
#: reports of the quarter given, ``protect_quarter`` audits the weekly and quarterly tables together instead.
AUDIT_SUPPRESSION = True

_STYLE_BASE = {"color": "#4d4d4d", "weight": 1, "opacity": 1, "fillOpacity": 0.85}

RATE_CAPTION = "Händelser per 1 000 invånare"

#: Change classes, decrease to increase (ColorBrewer RdBu, 5 classes, reversed: blue is fewer, red is more;
#: the middle class, "about the same", is white-grey). Class edges are symmetric around 0.
CHANGE_COLOURS = ("#2166ac", "#92c5de", "#f7f7f7", "#f4a582", "#b2182b")
#: A quarter is compared with another only when each has data for at least this many ISO weeks; the change is
#: of the rate per 1,000 inhabitants per 13 weeks, so quarters covering different numbers of weeks compare.
MIN_CHANGE_WEEKS = 4
WEEKS_PER_QUARTER = 13

#: Environment variables a user sets (read when a map is rendered, never at import):
#: - EST_TILE_URL: the municipality's own tile server, a Leaflet URL template such as
#:   ``https://karta.example.se/tiles/{z}/{x}/{y}.png``. None by default: then the page makes no request at all.
#:   With it, the page fetches tiles from that server only, and says so.
#: - EST_TILE_ATTRIBUTION: the attribution text the tile server's licence asks for (shown as text).
#: - EST_VULNERABLE_AREAS: path to a GeoPackage or GeoJSON file of the police's vulnerable areas (utsatta
#:   områden), drawn as an outline overlay. Its attribute text is never shown; a column ``klass`` (or
#:   ``category``) with one of the police's three classes picks one of the fixed labels in VULNERABLE_LABELS.
TILE_URL_ENV_VAR = "EST_TILE_URL"
TILE_ATTRIBUTION_ENV_VAR = "EST_TILE_ATTRIBUTION"
VULNERABLE_AREAS_ENV_VAR = "EST_VULNERABLE_AREAS"
_TILE_PLACEHOLDER = "est-tile-url/{z}/{x}/{y}"
VULNERABLE_LABELS = {
    "utsatt": "Utsatt område",
    "riskområde": "Riskområde",
    "riskomrade": "Riskområde",
    "särskilt utsatt": "Särskilt utsatt område",
    "sarskilt utsatt": "Särskilt utsatt område",
}
VULNERABLE_DEFAULT_LABEL = "Utsatt område (polisens klassning)"
INTERVENTION_COLOUR = "#1b7837"
VULNERABLE_COLOUR = "#762a83"
OVERLAY_PANE = "est-overlays"


def parse_quarter(text: str) -> tuple[int, int]:
    match = QUARTER_PATTERN.match(str(text))
    if not match:
        raise ValueError(f"not a quarter 'YYYYQn' (n 1-4): {text!r}")
    return int(match.group(1)), int(match.group(2))


def quarter_weeks(year: int, quarter: int) -> list[IsoWeek]:
    """The ISO weeks whose Thursday falls in the quarter, in order (13 or 14 of them)."""
    first = date(year, 3 * quarter - 2, 1)
    last = date(year + (quarter == 4), (3 * quarter) % 12 + 1, 1) - timedelta(days=1)
    thursday = first + timedelta(days=(3 - first.weekday()) % 7)
    weeks = []
    while thursday <= last:
        weeks.append(IsoWeek.of(thursday))
        thursday += timedelta(weeks=1)
    return weeks


# --------------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------------


def _class_breaks(rates: list[float]) -> list[float]:
    """Upper bounds of up to 5 classes: quantiles of the published positive rates, rounded to 2 significant
    digits (up) so the legend reads well. Derived only from published (unsuppressed) rates."""
    values = sorted(r for r in rates if r > 0)
    if not values:
        return []
    quantiles = np.quantile(values, [0.2, 0.4, 0.6, 0.8]).tolist() if len(values) >= 5 else values[:-1]
    breaks = []
    for q in quantiles:
        rounded = _ceil_2g(q)  # rounded up, so the value at a quantile stays in its class
        if (not breaks or rounded > breaks[-1]) and rounded < values[-1]:
            breaks.append(rounded)
    breaks.append(values[-1])
    return breaks


def _ceil_2g(value: float) -> float:
    """``value`` rounded up to two significant digits: 39.2 -> 40, 0.123 -> 0.13."""
    if value <= 0:
        return 0.0
    step = 10.0 ** (math.floor(math.log10(value)) - 1)
    return round(math.ceil(round(value / step, 9)) * step, 10)


def _colours(count: int) -> list[str]:
    if count <= 0:
        return []
    positions = np.linspace(0, len(CLASS_COLOURS) - 1, count).round().astype(int)
    return [CLASS_COLOURS[p] for p in positions]


def weekly_published(con: duckdb.DuckDBPyConnection, weeks: list[str]) -> pd.DataFrame:
    """The counts the weekly reports of ``weeks`` publish, with their suppression, in the long form
    :func:`privacy.linked_system` reads: ``week``, ``side`` ("row": per area, "col": per category,
    ``privacy.TOTAL_KEY``: the week's total), ``key``, ``n``, ``suppressed``, ``display``, ``threshold``.

    What :func:`pipelines.report_weekly.published_counts` publishes, the one source the weekly report prints
    from, so the quarter links against exactly those numbers (tests check both stay equal).
    """
    from pipelines import report_weekly

    columns = ["week", "side", "key", "n", "suppressed", "display", "threshold"]
    frames = [report_weekly.published_long(con, label) for label in weeks]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns].astype({"n": "int64", "suppressed": bool,
                                                                 "threshold": "int64"})


def protect_quarter(table: pd.DataFrame, weeks: pd.DataFrame | None) -> pd.DataFrame:
    """The quarter's area x category grid, protected on its own and, with ``weeks``
    (:func:`weekly_published`), against the weekly reports of its weeks (:func:`privacy.linked_suppression`):
    a number hidden in a weekly report cannot be worked out from the quarter's totals, nor the other way
    round (PRIVACY.md, "Published numbers"; issue 4 item 4). Same columns as
    :func:`pipelines.report_weekly.protect`."""
    if weeks is None:
        return protect(table, "area_code", "category", audit=AUDIT_SUPPRESSION)
    cells = table[["area_code", "category", "n", "sensitive"]].reset_index(drop=True)
    cells = cells.astype({"area_code": str, "category": str, "n": "int64", "sensitive": bool})
    thresholds = pd.Series([privacy.threshold_for(s) for s in cells["sensitive"]], index=cells.index, dtype="int64")
    grid = privacy.linked_suppression(cells[["area_code", "category", "n"]], "n", "area_code", "category", weeks,
                                      threshold=thresholds)
    grid["shown"] = [str(d) if hidden else format_int(int(n))
                     for n, hidden, d in zip(grid["n"], grid["suppressed"], grid["display"])]
    return grid


def build_layers(
    areas: pd.DataFrame, cells: pd.DataFrame, labels: dict[str, str], weeks: pd.DataFrame | None = None,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """One layer for all categories and one per category with incidents, each with every area's published
    count, rate and drawing class, plus the layer's legend. Also returns the protected grid.

    ``weeks``: the weekly reports' published counts of the quarter (:func:`weekly_published`); with them the
    grid is protected against those reports too (:func:`protect_quarter`). Every published quarter passes them.
    """
    codes = list(areas["area_code"])
    drawn = set(codes)
    # A code in the counts but not in `areas` cannot be drawn, but its numbers are listed, never dropped.
    unknown = sorted(set(cells["area_code"]) - set(codes) - {UNPLACED})
    population = dict(zip(areas["area_code"], areas["population"]))
    present = cells.loc[cells["n"] > 0, "category"].unique().tolist()
    present = sorted(present, key=lambda c: _sort_key(labels.get(c, c)))

    if len(cells):
        table = cells[["area_code", "category", "n", "sensitive"]]
        grid = protect_quarter(table, weeks)
    else:
        grid = pd.DataFrame(columns=["area_code", "category", "n", "sensitive", "suppressed", "shown"])
    lookup = {(r, c): (int(n), bool(s), shown) for r, c, n, s, shown in
              zip(grid["area_code"], grid["category"], grid["n"], grid["suppressed"], grid["shown"])}

    layers = []
    for key, label, column in [(ALL_KEY, ALL_CATEGORIES, privacy.TOTAL_KEY)] + [
        (c, labels.get(c, c), c) for c in present
    ]:
        entries = []
        for code in codes + unknown + [UNPLACED]:  # the drawn areas first, in the order of `areas`
            n, suppressed, shown = lookup.get((code, column), (0, False, "0"))
            pop = population.get(code)
            has_population = code != UNPLACED and pop is not None and not pd.isna(pop) and int(pop) > 0
            rate = 1000.0 * n / int(pop) if has_population and not suppressed else None
            entries.append(
                {
                    "area_code": code,
                    "n": n,
                    "count": shown,
                    "suppressed": suppressed,
                    "rate": rate,
                    "rate_shown": DASH if rate is None else format_decimal(rate, 1),
                }
            )
        breaks = _class_breaks([e["rate"] for e in entries if e["rate"] is not None and e["area_code"] in drawn])
        colours = _colours(len(breaks))
        for entry in entries:
            entry["style_class"] = _style_class(entry, breaks)
        legend = []
        for k, (upper, colour) in enumerate(zip(breaks, colours)):
            top = format_decimal(upper, 1)
            text = f"≤ {top}" if k == 0 else f"{format_decimal(breaks[k - 1], 1)}–{top}"
            legend.append({"colour": colour, "label": text})
        layers.append(
            {
                "key": key,
                "label": label,
                "caption": RATE_CAPTION,
                "entries": entries,
                "breaks": breaks,
                "colours": colours,
                "legend": legend,
                "has_suppressed": any(e["suppressed"] for e in entries if e["area_code"] in drawn),
                "has_zero": any(e["n"] == 0 for e in entries if e["area_code"] in drawn),
                "has_no_data": any(
                    e["rate"] is None and not e["suppressed"] and e["n"] > 0 for e in entries
                    if e["area_code"] in drawn
                ),
            }
        )
    return layers, grid


def previous_quarters(year: int, number: int) -> list[tuple[str, str]]:
    """The comparison quarters: (key, 'YYYYQn') for the previous quarter and the same quarter last year."""
    previous = (year, number - 1) if number > 1 else (year - 1, 4)
    return [("foregaende", f"{previous[0]}Q{previous[1]}"), ("fjol", f"{year - 1}Q{number}")]


def weeks_with_data(con: duckdb.DuckDBPyConnection, weeks: list[str]) -> list[str]:
    return [str(w) for w in query(con, "quarterly_weeks_with_data", {"weeks": weeks})["iso_week"]]


def _quarter_totals(con: duckdb.DuckDBPyConnection, quarter: str, areas: pd.DataFrame,
                    labels: dict[str, str]) -> tuple[dict[str, tuple[int, bool, str]], list[str]]:
    """Each area's published total for a quarter (n, suppressed, shown), protected as that quarter's own map
    protects it, and the quarter's weeks with data."""
    year, number = parse_quarter(quarter)
    weeks = [w.label for w in quarter_weeks(year, number)]
    with_data = weeks_with_data(con, weeks)
    if len(with_data) < MIN_CHANGE_WEEKS:
        return {}, with_data  # no comparison: skip the suppression (and its audit) of a quarter not shown
    cells = query(con, "quarterly_cells", {"weeks": weeks}).astype({"n": "int64", "sensitive": bool})
    # Protected exactly as that quarter's own map protects it: against its own weekly reports.
    layers, _ = build_layers(areas, cells, labels, weekly_published(con, weeks))
    totals = {e["area_code"]: (e["n"], e["suppressed"], e["count"]) for e in layers[0]["entries"]}
    return totals, with_data


def change_layers(
    con: duckdb.DuckDBPyConnection, quarter: str, areas: pd.DataFrame, labels: dict[str, str],
    current: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Change layers (all categories) against the previous quarter and the same quarter last year.

    The change is in incidents per 1,000 inhabitants per 13 weeks: each quarter's published count divided by
    its number of ISO weeks with data, times 13, so that a quarter with a missing week does not look like a
    drop. A change is drawn only where neither count is suppressed (a difference of two suppressed or
    protected numbers would leak them); such an area is hatched. A comparison quarter with data for fewer
    than MIN_CHANGE_WEEKS weeks gets no layer: the page says the comparison is missing instead.

    Returns (layers, comparisons): comparisons say for each comparison quarter whether it is shown and why not.
    """
    year, number = parse_quarter(quarter)
    current_weeks = current["weeks_with_data"]
    now = {e["area_code"]: e for e in current["layers"][0]["entries"]}
    population = dict(zip(areas["area_code"], areas["population"]))
    layers, comparisons = [], []
    for key, other in previous_quarters(year, number):
        other_year, other_number = parse_quarter(other)
        label = ("föregående kvartal" if key == "foregaende" else "samma kvartal i fjol")
        totals, other_weeks = _quarter_totals(con, other, areas, labels)
        info = {"key": key, "quarter": other, "label": label, "year": other_year, "number": other_number,
                "weeks": len(other_weeks), "shown": False}
        if len(other_weeks) < MIN_CHANGE_WEEKS or len(current_weeks) < MIN_CHANGE_WEEKS:
            info["reason"] = (
                f"Ingen jämförelse med {label} (kvartal {other_number} {other_year}): "
                + (f"data finns bara för {len(other_weeks)} av dess veckor." if other_weeks else
                   "det finns inga data för det kvartalet.")
                if len(other_weeks) < MIN_CHANGE_WEEKS else
                f"Ingen jämförelse med {label}: detta kvartal har data för bara {len(current_weeks)} veckor."
            )
            comparisons.append(info)
            continue
        info["shown"] = True
        comparisons.append(info)
        entries = []
        for code in list(areas["area_code"]):
            mine = now.get(code)
            n, suppressed, shown = mine["n"], mine["suppressed"], mine["count"]
            o_n, o_suppressed, o_shown = totals.get(code, (0, False, "0"))
            pop = population.get(code)
            change = None
            if not suppressed and not o_suppressed and pop is not None and not pd.isna(pop) and int(pop) > 0:
                change = 1000.0 * WEEKS_PER_QUARTER * (n / len(current_weeks) - o_n / len(other_weeks)) / int(pop)
            entries.append({
                "area_code": code, "n": n, "count": shown, "other_count": o_shown,
                "suppressed": bool(suppressed or o_suppressed), "rate": change,
                "rate_shown": DASH if change is None else _signed(change),
            })
        values = [abs(e["rate"]) for e in entries if e["rate"] is not None]
        edges = _change_edges(values)
        legend = []
        if edges:
            e1, e2 = edges
            texts = [f"Minskning mer än {format_decimal(e2, 1)}", f"Minskning {format_decimal(e1, 1)}–{format_decimal(e2, 1)}",
                     f"Ungefär oförändrat (±{format_decimal(e1, 1)})", f"Ökning {format_decimal(e1, 1)}–{format_decimal(e2, 1)}",
                     f"Ökning mer än {format_decimal(e2, 1)}"]
            legend = [{"colour": c, "label": t} for c, t in zip(CHANGE_COLOURS, texts)]
        for entry in entries:
            if entry["suppressed"]:
                entry["style_class"] = "suppressed"
            elif entry["rate"] is None or not edges:
                entry["style_class"] = "nodata"
            else:
                e1, e2 = edges
                value = entry["rate"]
                k = 0 if value < -e2 else 1 if value < -e1 else 2 if value <= e1 else 3 if value <= e2 else 4
                entry["style_class"] = f"c{k}"
        layers.append({
            "key": f"forandring_{key}",
            "label": f"Förändring mot {label}",
            "caption": f"Förändring i händelser per 1 000 invånare per 13 veckor, kvartal {number} {year} mot "
                       f"kvartal {other_number} {other_year}",
            "comparison": other,
            "entries": entries,
            "breaks": list(edges),
            "colours": list(CHANGE_COLOURS),
            "legend": legend,
            "has_suppressed": any(e["suppressed"] for e in entries),
            "has_zero": False,
            "has_no_data": any(e["style_class"] == "nodata" for e in entries),
            "is_change": True,
        })
    return layers, comparisons


def _change_edges(values: list[float]) -> tuple[float, float] | tuple[()]:
    """Symmetric class edges (e1, e2) of the absolute changes: their median and 80th percentile, rounded up
    to two significant digits; () when there is nothing to classify."""
    positive = [v for v in values if v > 0]
    if not positive:
        return ()
    e1 = _ceil_2g(float(np.quantile(positive, 0.5)))
    e2 = _ceil_2g(float(np.quantile(positive, 0.8)))
    if e2 <= e1:
        e2 = _ceil_2g(e1 * 2)
    return (e1, e2)


def _signed(value: float) -> str:
    text = format_decimal(abs(value), 1)
    if text.strip("0,") == "":
        return text
    return ("+" if value > 0 else "−") + text


def _style_class(entry: dict[str, Any], breaks: list[float]) -> str:
    if entry["suppressed"]:
        return "suppressed"
    if entry["n"] == 0:
        return "zero"
    if entry["rate"] is None:
        return "nodata"
    for k, upper in enumerate(breaks):
        if entry["rate"] <= upper:
            return f"c{k}"
    return f"c{len(breaks) - 1}"


def _sort_key(label: str) -> str:
    """Swedish alphabetical order for the few labels we sort: å, ä, ö after z."""
    return label.lower().translate(str.maketrans({"å": "{", "ä": "|", "ö": "}"}))


def _style(style_class: str, colours: list[str]) -> dict[str, Any]:
    if style_class == "suppressed":
        return {**_STYLE_BASE, "fillColor": f"url(#{HATCH_ID})", "fillOpacity": 1, "dashArray": "4 3"}
    if style_class == "zero":
        return {**_STYLE_BASE, "fillColor": ZERO_COLOUR}
    if style_class == "nodata":
        return {**_STYLE_BASE, "fillColor": NO_DATA_COLOUR}
    return {**_STYLE_BASE, "fillColor": colours[int(style_class[1:])]}


# --------------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------------


class _RawHtml(Element):
    """Already-escaped HTML from our own autoescaped template, inserted as is.

    branca would compile the text of an ordinary Element as a Jinja template (so a "{{" in it would run);
    this element returns its text unchanged.
    """

    def __init__(self, html: str):
        super().__init__()
        self._name = "RawHtml"
        self._html = html

    def render(self, **kwargs: Any) -> str:
        return self._html


class _TextTooltip(MacroElement):
    """Tooltips for a GeoJson layer built from DOM text nodes: a value is always text, never markup or code.

    folium's GeoJsonTooltip puts property values into HTML through JavaScript template strings (PRIVACY.md
    warns about those); here each value is set with ``textContent``. Fields and their Swedish labels are
    fixed by this module.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        {{ this._parent.get_name() }}.bindTooltip(function (layer) {
            var properties = layer.feature.properties;
            var table = document.createElement("table");
            {{ this.fields|tojson }}.forEach(function (field) {
                var row = table.insertRow();
                var name = document.createElement("th");
                name.textContent = field[1];
                row.appendChild(name);
                row.insertCell().textContent = String(properties[field[0]]);
            });
            return table;
        }, {"sticky": true, "className": "est-tooltip"});
        {% endmacro %}
        """
    )

    def __init__(self, fields: list[tuple[str, str]]):
        super().__init__()
        self._name = "TextTooltip"
        self.fields = [list(f) for f in fields]


class _LegendSwitch(MacroElement):
    """Moves the legends into a map control and shows the one of the layer chosen in the layer control.

    Also adds a metric-only scale bar (folium's ``control_scale`` shows feet and miles too).
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function (map) {
            L.control.scale({imperial: false}).addTo(map);
            var box = document.getElementById("est-legends");
            if (!box) { return; }
            var control = L.control({position: "bottomleft"});
            control.onAdd = function () { L.DomEvent.disableClickPropagation(box); return box; };
            control.addTo(map);
            function show(name) {
                box.querySelectorAll(".est-legend").forEach(function (legend) {
                    legend.hidden = legend.getAttribute("data-layer") !== name;
                });
            }
            map.on("baselayerchange", function (event) { show(event.name); });
            show({{ this.first|tojson }});
        })({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, first: str):
        super().__init__()
        self._name = "LegendSwitch"
        self.first = first


TOOLTIP_FIELDS = [("area_name", "Område"), ("area_code", "Kod"), ("count", "Antal"), ("rate", "Per 1 000 inv.")]


def _display_geometries(areas) -> list[dict[str, Any]]:
    """Area polygons as GeoJSON geometries in WGS 84: simplified in metres first, coordinates rounded."""
    simplified = areas.geometry.simplify(SIMPLIFY_METRES, preserve_topology=True)
    wgs84 = simplified.to_crs(CRS_WGS84)
    rounded = shapely.transform(wgs84.to_numpy(), lambda xy: np.round(xy, COORDINATE_DECIMALS))
    return [shapely.geometry.mapping(g) for g in rounded]


def _bounds(areas) -> list[list[float]]:
    minx, miny, maxx, maxy = areas.to_crs(CRS_WGS84).total_bounds
    return [[round(float(miny), 5), round(float(minx), 5)], [round(float(maxy), 5), round(float(maxx), 5)]]


CHANGE_TOOLTIP_FIELDS = [("area_name", "Område"), ("area_code", "Kod"), ("count", "Antal"),
                         ("rate", "Förändring per 1 000 inv.")]
OVERLAY_TOOLTIP_FIELDS = [("label", "Lager"), ("name", "Namn"), ("period", "Period")]


def tile_url() -> str | None:
    """The municipality's own tile server from EST_TILE_URL, checked; None (no background map) by default."""
    url = (os.environ.get(TILE_URL_ENV_VAR) or "").strip()
    if not url:
        return None
    if not re.match(r"^https?://[^\s\"'<>]+$", url) or not all(p in url for p in ("{z}", "{x}", "{y}")):
        raise ValueError(f"{TILE_URL_ENV_VAR} must be an http(s) URL template with {{z}}, {{x}} and {{y}}: {url!r}")
    return url


def vulnerable_areas() -> list[dict[str, Any]]:
    """The police's vulnerable areas from the file named by EST_VULNERABLE_AREAS (GeoPackage or GeoJSON), as
    GeoJSON features in WGS 84 with a fixed label each; [] when the setting is empty.

    The file is the user's; its attribute text is never shown (only the fixed labels of VULNERABLE_LABELS, picked
    by a ``klass``/``category`` column), so nothing from it reaches a tooltip as text.
    """
    import geopandas as gpd

    path = (os.environ.get(VULNERABLE_AREAS_ENV_VAR) or "").strip()
    if not path:
        return []
    if not Path(path).exists():
        raise ValueError(f"{VULNERABLE_AREAS_ENV_VAR}: no such file: {path}")
    layer = gpd.read_file(path)
    if layer.crs is None:
        raise ValueError(f"{VULNERABLE_AREAS_ENV_VAR}: {Path(path).name} has no coordinate reference system")
    layer = layer[layer.geometry.notna() & ~layer.geometry.is_empty]
    column = next((c for c in layer.columns if str(c).lower() in ("klass", "category", "kategori")), None)
    wgs84 = layer.to_crs(CRS_WGS84)
    rounded = shapely.transform(wgs84.geometry.to_numpy(), lambda xy: np.round(xy, COORDINATE_DECIMALS))
    features = []
    for number, geometry in enumerate(rounded):
        raw = str(layer[column].iloc[number]).strip().lower() if column else ""
        label = VULNERABLE_LABELS.get(raw, VULNERABLE_DEFAULT_LABEL)
        features.append({"type": "Feature", "id": f"utsatt-{number + 1}",
                         "properties": {"label": label, "name": label, "period": DASH},
                         "geometry": shapely.geometry.mapping(geometry)})
    return features


def _intervention_features(report: dict[str, Any], areas) -> list[dict[str, Any]]:
    geometries = dict(zip(areas["area_code"], _display_geometries(areas)))
    features = []
    for item in report["interventions"]:
        geometry = geometries.get(item["area_code"])
        if geometry is None:
            continue
        features.append({"type": "Feature", "id": item["intervention_id"],
                         "properties": {"label": f"Insats {item['intervention_id']}", "name": item["title"],
                                        "period": item["period"]},
                         "geometry": geometry})
    return features


def _add_overlay(folium_map, name: str, features: list[dict[str, Any]], colour: str, dash: str) -> None:
    style = {"color": colour, "weight": 3, "opacity": 1, "fill": False, "dashArray": dash}
    group = folium.FeatureGroup(name=name, overlay=True, control=True, show=True)
    geojson = folium.GeoJson(
        {"type": "FeatureCollection", "features": features},
        name=name,
        control=False,
        style_function=lambda feature, style=style: style,
        zoom_on_click=False,
        pane=OVERLAY_PANE,
    )
    geojson.add_child(_TextTooltip(OVERLAY_TOOLTIP_FIELDS))
    group.add_child(geojson)
    folium_map.add_child(group)


def build_map(report: dict[str, Any], areas, parts: dict[str, str]) -> str:
    """The folium map and its page, as one self-contained HTML string.

    ``parts`` are the page's own pieces, rendered by reports/quarterly.html.j2 with autoescape: ``page_style``
    (into <head>), ``intro`` (above the map), ``legend_box`` (moved into a map control by script) and ``table_section``.
    """
    figure = Figure(title=html_escape(report["title"]))
    figure.header.add_child(_RawHtml(parts["page_style"]), name="est_style")
    figure.html.add_child(_RawHtml(parts["intro"]), name="est_intro")
    folium_map = folium.Map(
        tiles=None,
        width="100%",
        height=MAP_HEIGHT_PX,
        prefer_canvas=False,  # SVG: the hatch pattern of suppressed areas is an SVG fill
        attribution_control=bool(report.get("tile_url")),
        zoom_snap=0.25,
    )
    # The map's own div goes between the introduction and the legend/table: reserve its place now (folium
    # adds it under the map's name when the page renders, replacing this entry in place).
    figure.add_child(folium_map)
    offline_assets.stable_ids(figure)
    figure.html.add_child(_RawHtml(""), name=folium_map.get_name())
    figure.html.add_child(_RawHtml(parts["legend_box"]), name="est_legends")
    figure.html.add_child(_RawHtml(parts["table_section"]), name="est_table")

    geometries = _display_geometries(areas)
    names = dict(zip(areas["area_code"], areas["area_name"]))
    for index, layer in enumerate(report["layers"] + report.get("change_layers", [])):
        features = []
        for geometry, entry in zip(geometries, layer["entries"]):  # entries list the areas first, in order
            code = entry["area_code"]
            features.append(
                {
                    "type": "Feature",
                    "id": code,
                    "properties": {
                        "area_code": code,
                        "area_name": str(names.get(code) or code),
                        "count": entry["count"],
                        "rate": entry["rate_shown"],
                        "style_class": entry["style_class"],
                    },
                    "geometry": geometry,
                }
            )
        group = folium.FeatureGroup(name=layer["label"], overlay=False, control=True, show=index == 0)
        colours = layer["colours"]
        geojson = folium.GeoJson(
            {"type": "FeatureCollection", "features": features},
            name=layer["label"],
            control=False,
            style_function=lambda feature, colours=colours: _style(feature["properties"]["style_class"], colours),
            highlight_function=lambda feature: {"weight": 3, "color": "#000000"},
            zoom_on_click=False,
        )
        geojson.add_child(_TextTooltip(CHANGE_TOOLTIP_FIELDS if layer.get("is_change") else TOOLTIP_FIELDS))
        group.add_child(geojson)
        folium_map.add_child(group)
    # Overlays in their own pane above the choropleth: outlines only, so the colours stay readable.
    folium.map.CustomPane(OVERLAY_PANE, z_index=450, pointer_events=True).add_to(folium_map)
    interventions = _intervention_features(report, areas)
    if interventions:
        _add_overlay(folium_map, "Insatser (insatsregistret)", interventions, INTERVENTION_COLOUR, "")
    if report.get("vulnerable"):
        _add_overlay(folium_map, "Utsatta områden (polisen)", report["vulnerable"], VULNERABLE_COLOUR, "6 4")
    if report.get("tile_url"):
        folium.TileLayer(tiles=_TILE_PLACEHOLDER, attr=report.get("tile_attribution") or "Kommunens bakgrundskarta",
                         name="Bakgrundskarta", overlay=True, control=True, show=True).add_to(folium_map)
    folium.LayerControl(collapsed=False, position="topright").add_to(folium_map)
    folium_map.add_child(_LegendSwitch(report["layers"][0]["label"]))
    folium_map.fit_bounds(report["bounds"])
    html = offline_assets.standalone_html(folium_map)
    if report.get("tile_url"):
        # Only now, after the check that nothing else is fetched: the one server the municipality named.
        quoted = json.dumps(_TILE_PLACEHOLDER)
        if html.count(quoted) != 1:
            raise RuntimeError("the tile layer did not render its URL once")
        html = html.replace(quoted, json.dumps(report["tile_url"]).replace("</", "<\\/"))
    return html.replace("<html>", '<html lang="sv">', 1)


def build_quarterly(con: duckdb.DuckDBPyConnection, quarter: str) -> tuple[dict[str, Any], Any]:
    from pipelines.geography import STAND_IN_LABEL, load_areas_from_db

    year, number = parse_quarter(quarter)
    weeks = quarter_weeks(year, number)
    labels_weeks = [w.label for w in weeks]
    areas = load_areas_from_db(con)
    if areas.empty:
        raise ValueError("the warehouse has no areas: load them first (est prepare-reference)")
    labels = dict(query(con, "weekly_categories").itertuples(index=False))
    cells = query(con, "quarterly_cells", {"weeks": labels_weeks})
    cells = cells.astype({"n": "int64", "sensitive": bool})
    layers, grid = build_layers(areas, cells, labels, weekly_published(con, labels_weeks))

    # Weeks of the quarter without a delivery, per expected partner: the map is only as complete as they are.
    weekly_cells = query(con, "weekly_cells", {"weeks": labels_weeks})
    delivered = delivered_weeks(con, weekly_cells, labels_weeks)
    partners = query(con, "weekly_partners", {"first": weeks[0].monday, "last": weeks[-1].sunday})
    # Weeks nobody delivered for (a quarter rendered before it ends) are said once, not once per partner.
    empty_weeks = [w for w in weeks if not any(week == w.label for _p, week in delivered)]
    gaps = []
    for row in partners.itertuples(index=False):
        missing = [w.week for w in weeks if (str(row.partner), w.label) not in delivered and w not in empty_weeks]
        if missing:
            gaps.append({"name": str(row.partner_name), "weeks": ", ".join(str(w) for w in missing),
                         "all": len(missing) == len(weeks) - len(empty_weeks)})
    deliveries = query(con, "weekly_deliveries", {"first": weeks[0].monday, "last": weeks[-1].sunday})
    last_received = max(deliveries["received_at"]).to_pydatetime() if len(deliveries) else None

    stand_in = bool(areas["is_stand_in"].astype(bool).any())
    everything = layers[0]
    with_data = weeks_with_data(con, labels_weeks)
    changes, comparisons = change_layers(con, quarter, areas, labels,
                                         {"layers": layers, "weeks_with_data": with_data})
    register = query(con, "quarterly_interventions")
    interventions = []
    for row in register.itertuples(index=False):
        starts = row.starts_on.date() if hasattr(row.starts_on, "date") else row.starts_on
        ends = None if row.ends_on is None or pd.isna(row.ends_on) else (
            row.ends_on.date() if hasattr(row.ends_on, "date") else row.ends_on)
        if starts > weeks[-1].sunday or (ends is not None and ends < weeks[0].monday):
            continue  # not active in the quarter
        interventions.append({
            "intervention_id": str(row.intervention_id), "title": str(row.title), "area_code": str(row.area_code),
            "period": f"{starts.isoformat()} {DASH} {ends.isoformat() if ends else 'tills vidare'}",
        })
    url = tile_url()
    names = dict(zip(areas["area_code"], areas["area_name"]))
    names[UNPLACED] = UNPLACED_LABEL
    populations = dict(zip(areas["area_code"], areas["population"]))
    table = [
        {
            "area_code": e["area_code"] if e["area_code"] != UNPLACED else DASH,
            "area_name": str(names.get(e["area_code"]) or e["area_code"]),
            "population": (
                format_int(int(populations[e["area_code"]]))
                if e["area_code"] in populations and not pd.isna(populations[e["area_code"]]) else DASH
            ),
            "count": e["count"],
            "rate": e["rate_shown"],
            "unplaced": e["area_code"] == UNPLACED,
        }
        for e in everything["entries"]
    ]
    report = {
        "quarter": quarter,
        "year": year,
        "number": number,
        "title": f"Karta kvartal {number} {year} – {MUNICIPALITY_NAME}",
        "municipality": MUNICIPALITY_NAME,
        "period": format_period(weeks[0].monday, weeks[-1].sunday),
        "first_week": weeks[0].week,
        "last_week": weeks[-1].week,
        "weeks": labels_weeks,
        "layers": layers,
        "change_layers": changes,
        "comparisons": comparisons,
        "weeks_with_data": with_data,
        "interventions": interventions,
        "vulnerable": vulnerable_areas(),
        "tile_url": url,
        "tile_host": re.sub(r"^https?://([^/]+).*$", r"\1", url) if url else "",
        "tile_attribution": (os.environ.get(TILE_ATTRIBUTION_ENV_VAR) or "").strip(),
        "table": table,
        "unplaced": everything["entries"][-1],
        "gaps": gaps,
        "empty_weeks": ", ".join(str(w.week) for w in empty_weeks),
        "stand_in": stand_in,
        "stand_in_label": STAND_IN_LABEL if stand_in else "",
        "delivery_ids": sorted(str(d) for d in deliveries["delivery_id"]),
        "last_received": format_local_time(last_received),
        "primary_threshold": privacy.PRIMARY_THRESHOLD,
        "sensitive_threshold": privacy.SENSITIVE_THRESHOLD,
        "hidden_label": privacy.HIDDEN_LABEL,
        "hatch_id": HATCH_ID,
        "zero_colour": ZERO_COLOUR,
        "no_data_colour": NO_DATA_COLOUR,
        "bounds": _bounds(areas),
        # The protected grid behind the layers (margins included), for the pack and the privacy tests.
        "grid": grid,
    }
    return report, areas


def _csv_table(report: dict[str, Any], areas) -> pd.DataFrame:
    names = dict(zip(areas["area_code"], areas["area_name"]))
    populations = dict(zip(areas["area_code"], areas["population"]))
    rows = []
    for layer in report["layers"]:
        for e in layer["entries"]:
            code = e["area_code"]
            rows.append(
                {
                    "Kategori (kod)": layer["key"],
                    "Kategori": layer["label"],
                    "Områdeskod": code,
                    "Område": UNPLACED_LABEL if code == UNPLACED else str(names.get(code) or code),
                    "Befolkning": (
                        str(int(populations[code])) if code in populations and not pd.isna(populations[code]) else DASH
                    ),
                    "Antal": e["count"].replace("\u00a0", ""),
                    "Per 1 000 invånare": e["rate_shown"].replace("\u00a0", ""),
                }
            )
    return pd.DataFrame(rows)


def _change_csv(report: dict[str, Any], areas) -> pd.DataFrame:
    names = dict(zip(areas["area_code"], areas["area_name"]))
    rows = []
    for layer in report["change_layers"]:
        for e in layer["entries"]:
            rows.append({
                "Jämförelse": layer["label"],
                "Jämförelsekvartal": layer["comparison"],
                "Områdeskod": e["area_code"],
                "Område": str(names.get(e["area_code"]) or e["area_code"]),
                f"Antal {report['quarter']}": e["count"].replace("\u00a0", ""),
                f"Antal {layer['comparison']}": e["other_count"].replace("\u00a0", ""),
                "Förändring per 1 000 invånare och 13 veckor": e["rate_shown"].replace("\u00a0", ""),
            })
    return pd.DataFrame(rows)


def render_map(con: duckdb.DuckDBPyConnection, home: Home, quarter: str) -> tuple[list[Path], dict[str, Any], Any]:
    """:func:`render_quarterly`, also returning the report and the areas (the pack draws its PNGs from them)."""
    report, areas = build_quarterly(con, quarter)
    module = template_environment().get_template("quarterly.html.j2").make_module(report)
    parts = {name: str(getattr(module, name)()) for name in ("page_style", "intro", "legend_box", "table_section")}
    html = build_map(report, areas, parts)
    folder = home.out / "quarterly" / quarter
    written = [write_atomic(folder / f"karta_{quarter}.csv", csv_bytes(_csv_table(report, areas)))]
    if report["change_layers"]:
        written.append(write_atomic(folder / f"forandring_{quarter}.csv", csv_bytes(_change_csv(report, areas))))
    html_path = folder / f"karta_{quarter}.html"
    written.append(write_atomic(html_path, html))
    warehouse.audit(
        con,
        "publish",
        str(html_path.relative_to(home.out)),
        audience=AUDIENCE,
        detail={
            "quarter": quarter,
            "iso_weeks": report["weeks"],
            "delivery_count": len(report["delivery_ids"]),
            "delivery_ids": report["delivery_ids"],
            "files": [p.name for p in written],
            "compared_with": [c["quarter"] for c in report["comparisons"] if c["shown"]],
        },
    )
    return written, report, areas


def render_quarterly(con: duckdb.DuckDBPyConnection, home: Home, quarter: str) -> list[Path]:
    """Write the quarter's map page and the tables behind it into out/quarterly/<YYYYQn>/, and log it.

    Returns the files written (the CSVs first, the map last). Each is replaced atomically; the same database
    gives the same bytes (element ids are fixed by position, nothing depends on the clock). The audit entry
    records the quarter, its weeks and the deliveries the numbers come from.
    """
    return render_map(con, home, quarter)[0]
