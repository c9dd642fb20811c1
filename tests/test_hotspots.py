"""Getis-Ord Gi* hot spots (pipelines/hotspots.py): the statistic against esda, the planted truth, a random control."""

from __future__ import annotations

import json
import time
import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest
import shapely

from pipelines import geography, hotspots

#: esda computes the same z with other algebra (G / sum, expected value and variance of G): agreement to
#: rounding of doubles, far below any meaningful difference in z.
ESDA_ATOL = 1e-8


def _lattice_ids(cols: int, rows: int, e0: int = 500_000, n0: int = 6_560_000, size: int = 250) -> np.ndarray:
    e, n = np.meshgrid(e0 + size * np.arange(cols), n0 + size * np.arange(rows))
    return geography.grid_cell_ids(e.ravel() + 1, n.ravel() + 1)


def test_lattice_weights_queen_and_distance_band():
    ids = _lattice_ids(4, 3)
    w = hotspots.lattice_weights(ids).toarray()
    assert (np.diag(w) == 1).all() and (w == w.T).all()
    assert w.sum(axis=1).tolist() == [4, 6, 6, 4, 6, 9, 9, 6, 4, 6, 6, 4]
    band = hotspots.lattice_weights(ids, distance=500).toarray()  # centres within 500 m: rook 2 + diagonal 1
    assert band[5].sum() == 10  # cell (1,1) of a 4 x 3 lattice: itself, 8 queen neighbours, (3,1) at 500 m
    assert (hotspots.lattice_weights(ids, distance=250).toarray().sum(axis=1) <= 5).all()


@pytest.mark.parametrize("distance", [None, 600.0])  # queen; a 600 m band (21 cells)
def test_gi_star_z_matches_esda(distance):
    esda = pytest.importorskip("esda")
    from libpysal.weights import WSP

    rng = np.random.default_rng(7)
    ids = _lattice_ids(30, 25)
    counts = rng.poisson(rng.gamma(0.6, 2.0, ids.size))
    counts[40:44] += 25  # a cluster, so that z ranges widely
    w = hotspots.lattice_weights(ids, distance=distance)
    z, p = hotspots.gi_star(counts, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = esda.G_Local(counts.astype(float), WSP(w.tocsr()).to_W(silence_warnings=True), transform="B",
                           star=True, permutations=0)
    assert np.max(np.abs(z - ref.Zs)) < ESDA_ATOL
    np.testing.assert_allclose(p, 2 * ref.p_norm, rtol=1e-6, atol=1e-300)  # esda's p_norm is one-sided


def test_benjamini_hochberg_and_bins():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert hotspots.benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 8
    adjusted = hotspots.bh_adjusted(p)
    assert (hotspots.benjamini_hochberg(p, 0.05) == (adjusted <= 0.05)).all()
    z = np.array([4.0, -3.0, 2.0])
    assert hotspots.confidence_bins(z, np.array([0.001, 0.01, 0.2]), fdr_corrected=False).tolist() == [3, -2, 0]
    # With FDR (m = 3): 0.001 <= 0.01/3 -> 3; 0.01 <= 0.05*2/3 -> 2 (negative); 0.2 > 0.1 -> 0.
    assert hotspots.confidence_bins(z, np.array([0.001, 0.01, 0.2])).tolist() == [3, -2, 0]


def _season_counts(home):
    with duckdb.connect(str(home.db_path), read_only=True) as con:
        first, last = con.execute("SELECT min(occurred_from)::DATE, max(occurred_from)::DATE FROM incidents").fetchone()
        return hotspots.cell_counts_from_db(con, start=first, end=last + pd.Timedelta(days=1))


def test_planted_hot_spots_found_and_random_control_clean(generated_season):
    truth = json.loads((generated_season.work / "generator_truth.json").read_text(encoding="utf-8"))
    planted = [h["grid_cell_250m"] for h in truth["hot_spots"]]
    counts = _season_counts(generated_season)
    grid = geography.municipality_grid()

    started = time.perf_counter()
    result = hotspots.hot_spots(counts, grid=grid).set_index("grid_cell")
    seconds = time.perf_counter() - started
    print(f"Gi* on {len(result)} cells: {seconds:.3f} s")
    assert seconds < 5
    assert len(result) == len(grid) and result["n"].sum() == counts["n"].sum()
    assert result.loc[planted, "hot"].all(), result.loc[planted]
    assert (result.loc[planted, "gi_bin"] == 3).all()

    # The same number of incidents, uniformly at random in the municipality: nothing survives FDR.
    boundary = geography.municipality_boundary()
    minx, miny, maxx, maxy = boundary.bounds
    rng = np.random.default_rng(20261127)
    n = int(counts["n"].sum())
    points = np.empty((0, 2))
    while len(points) < n:
        e, nn = rng.uniform(minx, maxx, 3 * n), rng.uniform(miny, maxy, 3 * n)
        inside = shapely.contains_xy(boundary, e, nn)
        points = np.vstack([points, np.column_stack([e[inside], nn[inside]])])
    cells = pd.Series(geography.grid_cell_ids(points[:n, 0], points[:n, 1])).value_counts()
    control = hotspots.hot_spots(cells.rename_axis("grid_cell").reset_index(name="n"), grid=grid)
    assert not control["significant"].any()
    assert (control["gi_bin"] == 0).all()
    # The classic normal p-value is what makes sparse counts look hot (documented in hotspots.py).
    classic = hotspots.hot_spots(cells.rename_axis("grid_cell").reset_index(name="n"), grid=grid,
                                 p_method="normal")
    print(f"random control: {int(classic['significant'].sum())} false hot spots with the normal p-value")


def test_cell_counts_from_db_filters(generated_season):
    with duckdb.connect(str(generated_season.db_path), read_only=True) as con:
        total = con.execute("SELECT count(grid_cell) FROM incidents").fetchone()[0]
        all_cells = hotspots.cell_counts_from_db(con, quarter="2026Q3")
        one = hotspots.cell_counts_from_db(con, quarter="2026Q3", categories=["robbery"])
        q3 = con.execute("SELECT count(grid_cell) FROM incidents WHERE category = 'robbery' AND "
                         "timezone('Europe/Stockholm', occurred_from)::DATE BETWEEN '2026-07-01' AND '2026-09-30'"
                         ).fetchone()[0]
    assert 0 < all_cells["n"].sum() < total
    assert one["n"].sum() == q3 > 0
    assert hotspots.quarter_range("2026Q4") == (pd.Timestamp("2026-10-01").date(), pd.Timestamp("2027-01-01").date())
