"""The quarterly analysis pack (kvartalsanalys): one index page per quarter and everything it links to.

DESIGN.md section 6 and issue 6 item 5. For the quarter 'YYYYQn' it writes into out/quarterly/<YYYYQn>/:

- ``karta_<Q>.html`` and its CSVs (:mod:`pipelines.report_quarterly`): rates per 1,000 inhabitants per area,
  a layer per category, change against the previous quarter and the same quarter last year, interventions
  and (when given) the police's vulnerable areas as overlays;
- ``hotspots_<Q>.html`` and ``hotspots_<Q>.csv``: the 250 m grid cells that are significant hot (or cold)
  spots by Getis-Ord Gi* with false-discovery-rate correction (:mod:`pipelines.hotspots`), in the 90/95/99 %
  confidence bins. Grid cells are for the analysis meeting only (PRIVACY.md, "Geography"); a cell's count is
  shown with the same small-count rule as every other count ("<5" for 1-4);
- ``narhet_<Q>.csv``: the near-repeat (Knox) test (:mod:`pipelines.near_repeat`). The warehouse keeps no exact
  place, only the 250 m cell, so the test runs on cell centres with distance bands that are multiples of
  250 m: "same cell", "neighbouring cell" (centres 250-499 m apart, diagonal neighbours included), 500-749 m,
  750 m or more; time bands of 7 days. The band (0, 250) m cannot occur on cell centres and is left out. The
  page says this. Only Knox ratios and their Monte Carlo p-values are shown, no pair counts;
- ``insatser_<Q>.csv``: the intervention follow-up (:mod:`pipelines.intervention_effects`): estimate, 90 %
  interval and a verdict in plain Swedish for each intervention in the register;
- static PNGs for print (``karta_<Q>.png``, ``forandring_<key>_<Q>.png``, ``hotspots_<Q>.png``), drawn with
  matplotlib (Agg) from the same GeoDataFrame and the same classes as the HTML maps; suppressed areas hatched;
- ``index.html``: the index page, in Swedish, self-contained (inline CSS, no script, no image, no request
  anywhere when opened; it links to the files beside it).

Every file is written atomically; the pack's publication is one audit entry.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from pipelines import intervention_effects, privacy, warehouse
from pipelines import report_quarterly as rq
from pipelines.publish import write_atomic
from pipelines.report_weekly import DASH, csv_bytes, format_decimal, template_environment
from pipelines.settings import CRS_WGS84, GRID_CELL_METRES, MUNICIPALITY_NAME, Home

AUDIENCE = rq.AUDIENCE

#: Gi* bins (hotspots.CONFIDENCE_BINS: 3 = 99 %, 2 = 95 %, 1 = 90 %, FDR-corrected), their labels and colours
#: (ColorBrewer RdBu: red hot, blue cold, darker more certain).
GI_BINS = {
    3: ("Hot spot, 99 %", "#b2182b"), 2: ("Hot spot, 95 %", "#ef8a62"), 1: ("Hot spot, 90 %", "#fddbc7"),
    -1: ("Cold spot, 90 %", "#d1e5f0"), -2: ("Cold spot, 95 %", "#67a9cf"), -3: ("Cold spot, 99 %", "#2166ac"),
}

#: The Knox test on cell centres: bands of one cell (250 m) and one week, Monte Carlo with a fixed seed so the
#: same data gives the same page. 99 iterations give p-values down to 0.01, as the Near Repeat Calculator's
#: default does.
KNOX_SPATIAL_BANDS = 3
KNOX_TEMPORAL_BANDWIDTH = 7
KNOX_TEMPORAL_BANDS = 4
KNOX_ITERATIONS = 99
KNOX_SEED = 20260101
KNOX_ALPHA = 0.05
KNOX_ROW_LABELS = ["Samma ruta", None, "Grannruta (250–499 m)", "500–749 m", "750 m eller mer"]
KNOX_COLUMN_LABELS = ["0–6 dagar", "7–13 dagar", "14–20 dagar", "21–27 dagar", "28 dagar eller mer"]

PNG_DPI = 150


# --------------------------------------------------------------------------------------------------------
# Hot spots
# --------------------------------------------------------------------------------------------------------


def hot_spot_cells(con: duckdb.DuckDBPyConnection, quarter: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Gi* over the municipality's grid for the quarter; the significant cells (bin != 0) with their published
    count, and a summary (cells per bin, incidents without a cell)."""
    from pipelines import hotspots

    counts = hotspots.cell_counts_from_db(con, quarter=quarter)
    result = hotspots.hot_spots(counts)
    significant = result[result["gi_bin"] != 0].copy()
    shown, hidden = privacy.suppress_counts(significant["n"].astype("int64"), threshold=privacy.PRIMARY_THRESHOLD)
    significant["count"] = shown.to_numpy()
    significant["suppressed"] = hidden.to_numpy()
    significant = significant.sort_values(["gi_bin", "z", "grid_cell"], ascending=[False, False, True])
    summary = {
        "cells": int(len(result)),
        "without_cell": str(privacy.suppress_counts(pd.Series([int(counts.attrs.get("without_cell", 0))]))[0].iloc[0]),
        "outside": int(result.attrs.get("outside_cells", 0)),
        "bins": [{"bin": b, "label": GI_BINS[b][0], "colour": GI_BINS[b][1],
                  "cells": int((significant["gi_bin"] == b).sum())} for b in (3, 2, 1, -1, -2, -3)],
        "hot": int((significant["gi_bin"] > 0).sum()),
        "cold": int((significant["gi_bin"] < 0).sum()),
    }
    return significant.reset_index(drop=True), summary


def _hot_spot_csv(cells: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "Ruta (SCB Rutid, 250 m)": cells["grid_cell"].astype(str),
        "Klass": [GI_BINS[int(b)][0] for b in cells["gi_bin"]],
        "Antal": cells["count"].astype(str),
        "Gi* z": [format_decimal(float(z), 2) for z in cells["z"]],
        "p (FDR-justerat)": [f"{float(p):.4f}".replace(".", ",") for p in cells["p_fdr"]],
    })


def _hot_spot_geodataframe(cells: pd.DataFrame):
    from pipelines import geography

    polygons = geography.grid_cell_polygons(cells["grid_cell"].astype(str), GRID_CELL_METRES)
    for column in ("gi_bin", "count", "z"):
        polygons[column] = cells[column].to_numpy()
    return polygons


def _hot_spot_map(report: dict[str, Any], areas, cells: pd.DataFrame, parts: dict[str, str]) -> str:
    import folium
    import shapely
    from branca.element import Figure

    figure = Figure(title=report["title"])
    figure.header.add_child(rq._RawHtml(parts["page_style"]), name="est_style")
    figure.html.add_child(rq._RawHtml(parts["intro"]), name="est_intro")
    folium_map = folium.Map(tiles=None, width="100%", height=rq.MAP_HEIGHT_PX, prefer_canvas=False,
                            attribution_control=False, zoom_snap=0.25)
    figure.add_child(folium_map)
    rq.offline_assets.stable_ids(figure)
    figure.html.add_child(rq._RawHtml(""), name=folium_map.get_name())
    figure.html.add_child(rq._RawHtml(parts["legend_box"]), name="est_legends")
    figure.html.add_child(rq._RawHtml(parts["table_section"]), name="est_table")

    outlines = [{"type": "Feature", "id": code, "properties": {"area_name": str(name), "area_code": code},
                 "geometry": geometry}
                for code, name, geometry in zip(areas["area_code"], areas["area_name"], rq._display_geometries(areas))]
    base = folium.FeatureGroup(name="Områden", overlay=False, control=False, show=True)
    outline_layer = folium.GeoJson(
        {"type": "FeatureCollection", "features": outlines}, name="Områden", control=False,
        style_function=lambda feature: {"color": "#808080", "weight": 1, "fillColor": "#ffffff", "fillOpacity": 0.6},
        zoom_on_click=False,
    )
    outline_layer.add_child(rq._TextTooltip([("area_name", "Område"), ("area_code", "Kod")]))
    base.add_child(outline_layer)
    folium_map.add_child(base)
    if len(cells):
        grid = _hot_spot_geodataframe(cells).to_crs(CRS_WGS84)
        rounded = shapely.transform(grid.geometry.to_numpy(), lambda xy: np.round(xy, rq.COORDINATE_DECIMALS))
        features = [
            {"type": "Feature", "id": str(cell),
             "properties": {"grid_cell": str(cell), "class": GI_BINS[int(b)][0], "count": str(count),
                            "z": format_decimal(float(z), 2), "bin": int(b)},
             "geometry": shapely.geometry.mapping(geometry)}
            for cell, b, count, z, geometry in zip(cells["grid_cell"], cells["gi_bin"], cells["count"], cells["z"],
                                                    rounded)
        ]
        layer = folium.GeoJson(
            {"type": "FeatureCollection", "features": features}, name="Hot spots (Gi*)", control=False,
            style_function=lambda feature: {"color": "#4d4d4d", "weight": 0.5, "fillOpacity": 0.9,
                                            "fillColor": GI_BINS[feature["properties"]["bin"]][1]},
            zoom_on_click=False,
        )
        layer.add_child(rq._TextTooltip([("class", "Klass"), ("grid_cell", "Ruta"), ("count", "Antal"),
                                         ("z", "Gi* z")]))
        group = folium.FeatureGroup(name="Hot spots (Gi*)", overlay=True, control=True, show=True)
        group.add_child(layer)
        folium_map.add_child(group)
        folium.LayerControl(collapsed=False, position="topright").add_to(folium_map)
    folium_map.fit_bounds(report["bounds"])
    html = rq.offline_assets.standalone_html(folium_map)
    return html.replace("<html>", '<html lang="sv">', 1)


# --------------------------------------------------------------------------------------------------------
# Near repeats
# --------------------------------------------------------------------------------------------------------


def knox(con: duckdb.DuckDBPyConnection, quarter: str) -> dict[str, Any] | None:
    """The Knox test on grid-cell centres for the quarter's incidents with a cell; None with fewer than 2."""
    from pipelines import hotspots, near_repeat

    start, end = hotspots.quarter_range(quarter)
    events = con.execute(warehouse.sql_text("knox_cell_events"), {"start": start, "end": end}).df()
    if events.empty or int(events["n"].sum()) < 2:
        return None
    ids = events["grid_cell"].astype(str)
    half = GRID_CELL_METRES / 2
    e = ids.str[:-7].astype("int64").to_numpy() + half
    n = ids.str[-7:].astype("int64").to_numpy() + half
    repeat = events["n"].astype("int64").to_numpy()
    days = np.repeat(pd.to_datetime(events["day"]).to_numpy().astype("datetime64[D]"), repeat)
    result = near_repeat.knox_test(
        np.repeat(e, repeat), np.repeat(n, repeat), days, GRID_CELL_METRES, KNOX_SPATIAL_BANDS,
        KNOX_TEMPORAL_BANDWIDTH, KNOX_TEMPORAL_BANDS, iterations=KNOX_ITERATIONS, seed=KNOX_SEED, precision="exact",
    )
    rows = []
    for r, label in enumerate(KNOX_ROW_LABELS):
        if label is None:
            continue  # (0, 250) m: impossible between cell centres
        cells = []
        for c, column in enumerate(KNOX_COLUMN_LABELS):
            ratio = result.knox_ratio.iat[r, c]
            p = float(result.p_value.iat[r, c])
            cells.append({
                "column": column,
                "ratio": DASH if pd.isna(ratio) else format_decimal(float(ratio), 2),
                "p": f"{p:.2f}".replace(".", ","),
                "significant": bool(not pd.isna(ratio) and ratio > 1 and p < KNOX_ALPHA),
            })
        rows.append({"label": label, "cells": cells})
    return {"rows": rows, "columns": KNOX_COLUMN_LABELS, "events": int(result.n_events),
            "without_cell": None, "iterations": KNOX_ITERATIONS, "alpha": format_decimal(KNOX_ALPHA, 2)}


def _knox_csv(table: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([
        {"Avstånd (rutornas mittpunkter)": row["label"], "Tid mellan händelserna": cell["column"],
         "Knox-kvot": cell["ratio"], "p-värde": cell["p"], "Signifikant nära upprepning": "ja" if cell["significant"] else "nej"}
        for row in table["rows"] for cell in row["cells"]
    ])


# --------------------------------------------------------------------------------------------------------
# Intervention follow-up
# --------------------------------------------------------------------------------------------------------


def _percent(ratio: float | None) -> str:
    if ratio is None:
        return DASH
    value = (ratio - 1) * 100
    text = f"{abs(value):.0f}"
    return "0 %" if text == "0" else ("+" if value > 0 else "\u2212") + text + "\u00a0%"


def intervention_rows(effects: list[intervention_effects.Effect], labels: dict[str, str]) -> list[dict[str, str]]:
    rows = []
    for effect in effects:
        rows.append({
            "id": effect.intervention_id,
            "title": effect.title,
            "area": f"{effect.area_name} ({effect.area_code})",
            "categories": ", ".join(labels.get(c, c) for c in effect.categories) or "Alla kategorier",
            "start": effect.starts_on.isoformat(),
            "weeks": f"{effect.pre_weeks} / {effect.post_weeks}",
            "comparison": str(len(effect.comparison_areas)) if effect.comparison_areas else DASH,
            "estimate": _percent(effect.estimate),
            "interval": DASH if effect.low is None else f"{_percent(effect.low)} till {_percent(effect.high)}",
            "verdict": effect.verdict_sv,
            "verdict_key": effect.verdict,
        })
    return rows


def _intervention_csv(effects: list[intervention_effects.Effect], labels: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame([
        {"Insats": e.intervention_id, "Titel": e.title, "Områdeskod": e.area_code, "Område": e.area_name,
         "Kategorier": ", ".join(labels.get(c, c) for c in e.categories) or "Alla kategorier",
         "Start": e.starts_on.isoformat(), "Veckor före": str(e.pre_weeks), "Veckor efter": str(e.post_weeks),
         "Jämförelseområden": " ".join(e.comparison_areas),
         "Effekt (kvot)": DASH if e.estimate is None else format_decimal(e.estimate, 2),
         "90 % intervall, lägre": DASH if e.low is None else format_decimal(e.low, 2),
         "90 % intervall, övre": DASH if e.high is None else format_decimal(e.high, 2),
         "Bedömning": e.verdict_sv}
        for e in effects
    ])


# --------------------------------------------------------------------------------------------------------
# Static PNGs (matplotlib, Agg)
# --------------------------------------------------------------------------------------------------------


def _png_of_layer(areas, layer: dict[str, Any], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    styles = {e["area_code"]: e["style_class"] for e in layer["entries"]}
    frame = areas[["area_code", "geometry"]].copy()
    frame["style_class"] = frame["area_code"].map(styles).fillna("nodata")
    frame["fill"] = [rq._style(c, layer["colours"])["fillColor"] if c != "suppressed" else "#e6e6e6"
                     for c in frame["style_class"]]
    figure, axis = plt.subplots(figsize=(8.27, 9.0))
    plain = frame[frame["style_class"] != "suppressed"]
    if len(plain):
        plain.plot(ax=axis, color=list(plain["fill"]), edgecolor="#4d4d4d", linewidth=0.4)
    hidden = frame[frame["style_class"] == "suppressed"]
    if len(hidden):
        hidden.plot(ax=axis, facecolor="#e6e6e6", edgecolor="#4d4d4d", linewidth=0.4, hatch="////")
    handles = [Patch(facecolor=item["colour"], edgecolor="#4d4d4d", label=item["label"]) for item in layer["legend"]]
    if layer.get("has_zero"):
        handles.append(Patch(facecolor=rq.ZERO_COLOUR, edgecolor="#4d4d4d", label="0 (inga händelser)"))
    if layer.get("has_suppressed"):
        handles.append(Patch(facecolor="#e6e6e6", edgecolor="#4d4d4d", hatch="////", label="Litet antal, visas inte"))
    if layer.get("has_no_data"):
        handles.append(Patch(facecolor=rq.NO_DATA_COLOUR, edgecolor="#4d4d4d",
                             label="Ingen jämförelse möjlig" if layer.get("is_change") else "Befolkning saknas"))
    if handles:
        axis.legend(handles=handles, loc="lower left", fontsize=7, title=layer["caption"], title_fontsize=7,
                    frameon=True)
    axis.set_title(title, fontsize=11)
    axis.set_axis_off()
    axis.set_aspect("equal")
    figure.tight_layout()
    figure.savefig(path, dpi=PNG_DPI, metadata={"Software": None})
    plt.close(figure)
    return path


def _png_of_hot_spots(areas, cells: pd.DataFrame, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    figure, axis = plt.subplots(figsize=(8.27, 9.0))
    areas.plot(ax=axis, facecolor="#ffffff", edgecolor="#808080", linewidth=0.4)
    handles = []
    if len(cells):
        grid = _hot_spot_geodataframe(cells)
        grid.plot(ax=axis, color=[GI_BINS[int(b)][1] for b in grid["gi_bin"]], edgecolor="#4d4d4d", linewidth=0.2)
        handles = [Patch(facecolor=colour, edgecolor="#4d4d4d", label=label)
                   for b, (label, colour) in GI_BINS.items() if (cells["gi_bin"] == b).any()]
    if handles:
        axis.legend(handles=handles, loc="lower left", fontsize=7, title="Getis-Ord Gi*, FDR-korrigerat",
                    title_fontsize=7)
    axis.set_title(title, fontsize=11)
    axis.set_axis_off()
    axis.set_aspect("equal")
    figure.tight_layout()
    figure.savefig(path, dpi=PNG_DPI, metadata={"Software": None})
    plt.close(figure)
    return path


# --------------------------------------------------------------------------------------------------------
# The pack
# --------------------------------------------------------------------------------------------------------


def render_pack(con: duckdb.DuckDBPyConnection, home: Home, quarter: str) -> list[Path]:
    """Render the whole pack for 'YYYYQn' (module docstring). Returns the files written, the index last.

    The seconds each part took are in the audit entry (issue 6 asks for the render time).
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    folder = home.out / "quarterly" / quarter
    mark = time.perf_counter()
    written, report, areas = rq.render_map(con, home, quarter)
    mark = lap("map", mark)
    labels = dict(rq.query(con, "weekly_categories").itertuples(index=False))

    pngs = [_png_of_layer(areas, report["layers"][0], f"{report['layers'][0]['label']}, per 1 000 invånare, "
                          f"kvartal {report['number']} {report['year']}", folder / f"karta_{quarter}.png")]
    for layer in report["change_layers"]:
        key = layer["key"].removeprefix("forandring_")
        pngs.append(_png_of_layer(areas, layer, f"{layer['label']} (kvartal {report['number']} {report['year']})",
                                  folder / f"forandring_{key}_{quarter}.png"))
    mark = lap("map_png", mark)

    cells, hot_summary = hot_spot_cells(con, quarter)
    mark = lap("hot_spots", mark)
    env = template_environment()
    hot_context = {**report, "title": f"Hot spots kvartal {report['number']} {report['year']} – {MUNICIPALITY_NAME}",
                   "hot": hot_summary, "hot_rows": _hot_spot_csv(cells).to_dict("records") if len(cells) else []}
    module = env.get_template("quarterly_hotspots.html.j2").make_module(hot_context)
    parts = {name: str(getattr(module, name)()) for name in ("page_style", "intro", "legend_box", "table_section")}
    hot_html = folder / f"hotspots_{quarter}.html"
    written.append(write_atomic(folder / f"hotspots_{quarter}.csv", csv_bytes(_hot_spot_csv(cells))))
    written.append(write_atomic(hot_html, _hot_spot_map(hot_context, areas, cells, parts)))
    pngs.append(_png_of_hot_spots(areas, cells, hot_context["title"], folder / f"hotspots_{quarter}.png"))
    mark = lap("hot_spot_page", mark)

    knox_table = knox(con, quarter)
    if knox_table is not None:
        written.append(write_atomic(folder / f"narhet_{quarter}.csv", csv_bytes(_knox_csv(knox_table))))
    mark = lap("near_repeat", mark)

    last = rq.quarter_weeks(report["year"], report["number"])[-1]
    register = intervention_effects.register(con)
    begun = pd.to_datetime(register["starts_on"]).dt.date <= last.sunday  # not those that start later
    effects = intervention_effects.evaluate(con, last.label, register[begun.to_numpy()])
    written.append(write_atomic(folder / f"insatser_{quarter}.csv", csv_bytes(_intervention_csv(effects, labels))))
    mark = lap("interventions", mark)

    files = {p.name for p in written + pngs}
    context = {
        **report,
        "title": f"Kvartalsanalys kvartal {report['number']} {report['year']} – {MUNICIPALITY_NAME}",
        "hot": hot_summary,
        "knox": knox_table,
        "knox_iterations": KNOX_ITERATIONS,
        "effects": intervention_rows(effects, labels),
        "confidence": "90",
        "min_count": intervention_effects.MIN_COUNT,
        "comparison_areas": intervention_effects.COMPARISON_AREAS,
        "files": files,
        "csv_files": sorted(p.name for p in written if p.suffix == ".csv"),
        "png_files": sorted(p.name for p in pngs),
    }
    index = env.get_template("quarterly_pack.html.j2").render(context)
    index_path = write_atomic(folder / "index.html", index)
    lap("index", mark)
    timings["total"] = round(time.perf_counter() - started, 3)
    all_files = written + pngs + [index_path]
    warehouse.audit(
        con, "publish", str(index_path.relative_to(home.out)), audience=AUDIENCE,
        detail={"quarter": quarter, "iso_weeks": report["weeks"], "delivery_ids": report["delivery_ids"],
                "files": [p.name for p in all_files], "seconds": timings},
    )
    return all_files
