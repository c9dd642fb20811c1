"""Hot spots on the 250 m grid: Getis-Ord Gi* with false-discovery-rate correction (DESIGN.md section 6).

The statistic is the classic Gi* of Getis & Ord (1995), "Local spatial autocorrelation statistics:
distributional issues and an application", Geographical Analysis 27(4), eq. 14-15, as ArcGIS' "Hot Spot
Analysis (Getis-Ord Gi*)" reports it: for cell i with binary weights w_ij that include the cell itself,

    z_i = (sum_j w_ij x_j - xbar * W_i) / (S * sqrt((n * S1_i - W_i**2) / (n - 1)))

with W_i = sum_j w_ij, S1_i = sum_j w_ij**2, xbar the mean and S the (population) standard deviation of all
n cells' counts. It is computed for every cell at once with one sparse matrix product; there is no loop
over cells or pairs. tests/test_hotspots.py checks it against esda.G_Local(star=True).

Which cells: every 250 m cell of the municipality (``geography.municipality_grid``), zeros included: Gi*
compares a neighbourhood with the whole study area, so leaving out the empty cells would make the busy
ones look ordinary. Cells are clipped to the municipal boundary; an incident is counted in its cell
whatever part of the cell lies inside.

p-values: ArcGIS reads them from the normal distribution (``p_normal``, reported). For incident counts on
250 m cells that is anti-conservative (see :func:`count_p_values`): a spatially random control gets 7 to 43
FDR-significant "hot spots" with it (6 seeds), none with the count-aware p-value used by default
(``p_method="count"``; ``"normal"`` gives ArcGIS' behaviour). z is the classic Gi* z either way.

Multiple testing: Örebro kommun has about 24,500 cells, so at p < 0.05 about 1,200 would come out "hot"
by chance alone. The p-values (two-sided) are corrected with Benjamini & Hochberg (1995):
``significant`` is True where the cell survives BH at ``fdr`` (default 0.05). The confidence bins follow
ArcGIS with its "Apply False Discovery Rate (FDR) Correction" option: a cell gets +/-3 when it survives BH
at 0.01, +/-2 at 0.05, +/-1 at 0.10, else 0; the sign is the sign of z. So a bin is never given to a cell
that is only "significant" before correction, and a cell with ``significant`` True has |bin| >= 2 when
``fdr`` is 0.05.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from pipelines import settings

#: ArcGIS' confidence bins: (bin, FDR level). A cell gets the highest bin whose level it survives.
CONFIDENCE_BINS = ((3, 0.01), (2, 0.05), (1, 0.10))

#: Queen contiguity on the lattice: the cell and its 8 neighbours (Gi* includes the cell itself).
QUEEN = "queen"


# --------------------------------------------------------------------------------------------------------
# The statistic
# --------------------------------------------------------------------------------------------------------


def gi_star(counts: np.ndarray, weights: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray]:
    """Getis-Ord Gi* z-scores and two-sided normal p-values for every cell, in bulk.

    ``weights``: an n x n sparse matrix whose row i holds the weights of cell i's neighbours *including
    itself* (the diagonal must be set; that is what makes it Gi* rather than Gi). Binary weights give the
    textbook statistic; other weights are used as given. The formula is in the module docstring.
    """
    x = np.asarray(counts, dtype="float64").ravel()
    w = sp.csr_array(weights, dtype="float64")
    n = x.size
    if w.shape != (n, n):
        raise ValueError(f"weights are {w.shape}, counts have {n} cells")
    if n < 3:
        raise ValueError("Gi* needs at least 3 cells")
    mean = x.mean()
    s = np.sqrt((x * x).mean() - mean * mean)
    wi = np.asarray(w.sum(axis=1)).ravel()
    s1 = np.asarray(w.multiply(w).sum(axis=1)).ravel()
    numerator = w @ x - mean * wi
    denominator = s * np.sqrt((n * s1 - wi * wi) / (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(denominator > 0, numerator / denominator, 0.0)
    p = 2.0 * stats.norm.sf(np.abs(z))
    return z, p


def count_p_values(counts: np.ndarray, weights: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Two-sided p-values of Gi* for counts, from a negative binomial matched to the window sum's moments.

    Gi*'s normal p-value assumes the window sum sum_j w_ij x_j is near normal. With incident counts on 250 m
    cells it is not: most of a municipality's cells are empty, the sums are small and skewed to the right,
    and the normal tail is far too thin. The random control in tests/test_hotspots.py shows it: the same
    number of incidents as the generated season, placed uniformly at random, gives 8 "hot spots" that
    survive FDR with the normal p-value. Here the window sum keeps the mean (W_i * xbar) and variance
    (S**2 * (n W_i - W_i**2) / (n - 1)) that Gi*'s z uses (so z and the ranking are unchanged), but its tails
    come from the negative binomial with those two moments (Poisson when the variance does not exceed the
    mean), a distribution on the counts 0, 1, 2, ... As the counts grow it tends to the normal, and the two
    p-values agree where the normal one is valid. Binary weights only (the window sum must be a count).
    """
    x = np.asarray(counts, dtype="float64").ravel()
    w = sp.csr_array(weights, dtype="float64")
    if not np.all(np.isin(w.data, (0.0, 1.0))):
        raise ValueError("count p-values need binary weights")
    n = x.size
    mean = x.mean()
    s2 = (x * x).mean() - mean * mean
    wi = np.asarray(w.sum(axis=1)).ravel()
    window = w @ x
    m = wi * mean
    v = s2 * (n * wi - wi * wi) / (n - 1)
    upper = np.empty(n)
    lower = np.empty(n)
    over = v > m
    if over.any():
        r = m[over] ** 2 / (v[over] - m[over])
        q = m[over] / v[over]
        upper[over] = stats.nbinom.sf(window[over] - 1, r, q)
        lower[over] = stats.nbinom.cdf(window[over], r, q)
    if (~over).any():
        upper[~over] = stats.poisson.sf(window[~over] - 1, m[~over])
        lower[~over] = stats.poisson.cdf(window[~over], m[~over])
    return np.minimum(1.0, 2.0 * np.minimum(upper, lower))


def benjamini_hochberg(p: np.ndarray, q: float) -> np.ndarray:
    """True where a p-value is rejected by the Benjamini-Hochberg step-up procedure at FDR level ``q``."""
    p = np.asarray(p, dtype="float64")
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    below = p[order] <= q * np.arange(1, m + 1) / m
    out = np.zeros(m, dtype=bool)
    if below.any():
        k = np.flatnonzero(below).max()  # the largest rank k with p_(k) <= q k / m: reject 1..k
        out[order[: k + 1]] = True
    return out


def confidence_bins(z: np.ndarray, p: np.ndarray, fdr_corrected: bool = True) -> np.ndarray:
    """ArcGIS' Gi_Bin: +/-3 (99 %), +/-2 (95 %), +/-1 (90 %), 0 (not significant), with or without FDR."""
    z = np.asarray(z, dtype="float64")
    level = np.zeros(z.size, dtype="int8")
    for bin_, alpha in reversed(CONFIDENCE_BINS):  # 1, then 2, then 3 overwrite
        passed = benjamini_hochberg(p, alpha) if fdr_corrected else (np.asarray(p) < alpha)
        level[passed] = bin_
    return (level * np.sign(z)).astype("int8")


# --------------------------------------------------------------------------------------------------------
# Weights on the lattice
# --------------------------------------------------------------------------------------------------------


def _cell_corners(cell_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lower-left corners of SCB-style ids (easting digits, then 7 northing digits; geography.grid_cell_ids)."""
    ids = pd.Series(list(cell_ids), dtype=object).astype(str)
    return ids.str[:-7].astype("int64").to_numpy(), ids.str[-7:].astype("int64").to_numpy()


def lattice_weights(cell_ids: Any, size: int = settings.GRID_CELL_METRES, kind: str = QUEEN,
                    distance: float | None = None) -> sp.csr_array:
    """Binary weights among the given cells, self included: queen contiguity, or a distance band.

    ``kind="queen"``: the 3 x 3 block around each cell. ``distance`` (metres, overrides ``kind``): every cell
    whose centre lies within ``distance`` of the cell's centre. Neighbours that are not among ``cell_ids``
    (outside the municipality) are simply absent. Built by offset look-ups on the integer lattice, vectorised.
    """
    e0, n0 = _cell_corners(cell_ids)
    col = (e0 // size).astype("int64")
    row = (n0 // size).astype("int64")
    span = int(row.max() - row.min() + 3) if row.size else 1
    key = (col - col.min() + 1) * span + (row - row.min() + 1)
    index = pd.Index(key)
    if not index.is_unique:
        raise ValueError("duplicate grid cells")
    if distance is not None:
        reach = int(np.floor(distance / size))
        offsets = [(dx, dy) for dx in range(-reach, reach + 1) for dy in range(-reach, reach + 1)
                   if (dx * dx + dy * dy) * size * size <= distance * distance]
    elif kind == QUEEN:
        offsets = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]
    else:
        raise ValueError(f"unknown weights kind {kind!r}")
    rows, cols = [], []
    n = len(key)
    for dx, dy in offsets:  # at most a few dozen offsets, each a vectorised look-up over all cells
        j = index.get_indexer(key + dx * span + dy)
        ok = j >= 0
        rows.append(np.flatnonzero(ok))
        cols.append(j[ok])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    return sp.csr_array((np.ones(r.size), (r, c)), shape=(n, n))


# --------------------------------------------------------------------------------------------------------
# Hot spots over the municipality
# --------------------------------------------------------------------------------------------------------


def hot_spots(cell_counts: pd.DataFrame, cell_size: int = settings.GRID_CELL_METRES, fdr: float = 0.05,
              kind: str = QUEEN, distance: float | None = None, grid: pd.DataFrame | None = None,
              p_method: str = "count") -> pd.DataFrame:
    """Gi* over every cell of the municipality (zeros included), with FDR-corrected significance and bins.

    ``cell_counts``: columns ``grid_cell``, ``n`` (cells missing there count 0). Counts in cells outside the
    municipal grid (a wrongly placed incident) are left out and reported in ``attrs["outside_cells"]``.
    ``grid``: the cells to use (default ``geography.municipality_grid(cell_size)``; tests pass a smaller one).

    Returns one row per cell: grid_cell, n, z, p (``p_method``), p_normal (ArcGIS'), p_fdr (BH-adjusted p),
    significant (BH at ``fdr``),
    hot (significant and z > 0), cold (significant and z < 0), gi_bin (-3..3, FDR-corrected, module docstring).
    """
    if grid is None:
        from pipelines import geography

        grid = geography.municipality_grid(cell_size)
    cells = pd.Index(pd.Series(grid["grid_cell"], dtype=object).astype(str), name="grid_cell")
    counts = (cell_counts.assign(grid_cell=cell_counts["grid_cell"].astype(str))
              .groupby("grid_cell")["n"].sum())
    outside = counts.index.difference(cells)
    x = counts.reindex(cells, fill_value=0).to_numpy(dtype="float64")
    weights = lattice_weights(cells, cell_size, kind=kind, distance=distance)
    z, p_normal = gi_star(x, weights)
    if p_method == "count":
        p = count_p_values(x, weights)
    elif p_method == "normal":
        p = p_normal
    else:
        raise ValueError(f"p_method must be 'count' or 'normal', not {p_method!r}")
    significant = benjamini_hochberg(p, fdr)
    out = pd.DataFrame({
        "grid_cell": cells.to_numpy(),
        "n": x.astype("int64"),
        "z": z,
        "p": p,
        "p_normal": p_normal,
        "p_fdr": bh_adjusted(p),
        "significant": significant,
        "hot": significant & (z > 0),
        "cold": significant & (z < 0),
        "gi_bin": confidence_bins(z, p, fdr_corrected=True),
    })
    out.attrs["outside_cells"] = int(counts.loc[outside].sum()) if len(outside) else 0
    out.attrs["fdr"] = fdr
    out.attrs["p_method"] = p_method
    return out


def bh_adjusted(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (a cell is significant at level q when its value is <= q)."""
    p = np.asarray(p, dtype="float64")
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    return out


# --------------------------------------------------------------------------------------------------------
# Reading counts from the warehouse
# --------------------------------------------------------------------------------------------------------


def quarter_range(quarter: str) -> tuple[dt.date, dt.date]:
    """First day and the day after the last of a calendar quarter 'YYYYQn'."""
    year, q = int(quarter[:4]), int(quarter[-1])
    start = dt.date(year, 3 * q - 2, 1)
    end = dt.date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
    return start, end


def cell_counts_from_db(con: Any, quarter: str | None = None, start: dt.date | None = None,
                        end: dt.date | None = None, categories: list[str] | None = None) -> pd.DataFrame:
    """Incidents per grid cell from ``incidents.grid_cell`` (sql/hotspot_cell_counts.sql, bound parameters).

    Give either ``quarter`` ('YYYYQn', calendar quarter) or ``start``/``end`` (dates, end exclusive), on the
    local (Europe/Stockholm) date of ``occurred_from``. ``categories``: only those taxonomy codes (None: all).
    Incidents without a grid cell (placed to an area only, or unplaced) are not in the result; their number
    is in ``attrs["without_cell"]``.
    """
    from pipelines.warehouse import sql_text

    if quarter is not None:
        start, end = quarter_range(quarter)
    if start is None or end is None:
        raise ValueError("give a quarter or both start and end")
    params = {"start": start, "end": end, "categories": list(categories) if categories else None}
    frame = con.execute(sql_text("hotspot_cell_counts"), params).df()
    cells = frame[frame["grid_cell"].notna()].reset_index(drop=True)
    cells["n"] = cells["n"].astype("int64")
    cells.attrs["without_cell"] = int(frame.loc[frame["grid_cell"].isna(), "n"].sum())
    return cells[["grid_cell", "n"]]
