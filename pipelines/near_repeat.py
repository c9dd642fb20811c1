"""Repeat and near-repeat places: the Knox test as Ratcliffe's Near Repeat Calculator (NRC 1.3) does it.

Every pair of events is put in a spatial band x temporal band cell by its distance and its day difference;
the observed pair counts are compared with the counts after Monte Carlo permutation of the dates across the
locations (the places stay, the dates are shuffled), as in Johnson et al. (2007), "Space-time patterns of
risk", J. Quant. Criminol. 23(3). Per cell: expected = mean of the simulated counts, Knox ratio = observed /
expected, p = (number of simulations with a count >= observed + 1) / (iterations + 1).

Band conventions, matched to the NRC's own output (../shared/data/near-repeat, checked exactly in
tests/test_near_repeat.py). With spatial bandwidth b and k spatial bands, temporal bandwidth t and m bands:

- rows: "Same location" is a distance of exactly 0; "1 to b" is (0, b);
  "b+1 to 2b" is [b, 2b); ... "(k-1)b+1 to kb" is [(k-1)b, kb); "More than kb" is >= kb.
- columns: "0 to t" is a day difference in [0, t), i.e. 0 .. t-1 days; "t+1 to 2t" is [t, 2t); ...
  "More than mt" is >= mt days.

So a band labelled "a to b" holds [a-1, b): the NRC's labels are one unit off its arithmetic. This was found
by T. Davies (github.com/tobydavies/NearRepeat, notebook "Inconsistency with Near Repeat Calculator", whose
``interval_side="right"`` reproduces the NRC) and is confirmed here by the published observed counts and the
two-event pathological example (100 m and 3 days apart: NRC puts it in "101 to 200" m with bandwidth 100 and
in "4 to 6" days with bandwidth 3). We keep the NRC's labels and arithmetic so results can be compared with
the literature that used it; say so when reporting. Dates are whole days (time of day is ignored, as in the
NRC). The "More than" row and column count every remaining pair of the data set, as the NRC's do.

Bulk computation, no loop over pairs: the pairs closer than k*b are found once with a k-d tree
(scipy.spatial.cKDTree.query_pairs, Euclidean p=2 or Manhattan p=1); the permutations reuse those pairs and
only permute the dates, a batch of iterations at a time as one (iterations x pairs) array, binned with one
``np.bincount``. The pairs beyond k*b are never listed: the day-difference histogram of all n(n-1)/2 pairs
follows from the histogram of dates (a correlation), and it does not change under a permutation of dates,
so the "More than kb" row is that histogram minus the rows within k*b, observed and simulated alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

DISTANCES = {"euclidean": 2, "manhattan": 1}
#: The NRC holds coordinates in single precision (float32): its published Chicago counts are reproduced exactly
#: only with coordinates rounded to float32 first (with float64 coordinates 10 of 73,458 pairs in the "More than
#: 4 days" column change distance band). ``precision="nrc"`` (default) does that; ``"exact"`` keeps float64.
#: float32 spacing is 0.03 m at 300,000 and 0.5 m at SWEREF 99 TM northings (6.5 million): band edges move by
#: that much, and points that close count as the same location.
PRECISIONS = ("nrc", "exact")
EPOCH = np.datetime64("1970-01-01", "D")
#: Work size of one batch of permutations: iterations x pairs values (int64); a handful of such arrays, ~200 MB.
BATCH_VALUES = 5_000_000


class NearRepeatInputError(ValueError):
    """Input the test cannot use (one line naming the file, row or column)."""


@dataclass
class KnoxResult:
    """The NRC's tables, rows = spatial bands, columns = temporal bands, labelled as the NRC labels them."""

    observed: pd.DataFrame
    expected: pd.DataFrame
    knox_ratio: pd.DataFrame
    p_value: pd.DataFrame
    simulated: np.ndarray  # (rows, columns, iterations) simulated counts
    parameters: dict[str, Any] = field(default_factory=dict)
    n_events: int = 0

    @property
    def n_pairs(self) -> int:
        return int(self.observed.to_numpy().sum())


# --------------------------------------------------------------------------------------------------------
# Bands
# --------------------------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:g}"


def spatial_edges(bandwidth: float, bands: int) -> np.ndarray:
    """[b, 2b, ..., kb]: a distance d > 0 falls in row searchsorted(edges, d, 'right') + 1; kb starts "More than"."""
    return bandwidth * np.arange(1, bands + 1)


def temporal_edges(bandwidth: int, bands: int) -> np.ndarray:
    """[t, 2t, ..., mt]: a day difference d falls in column searchsorted(edges, d, 'right')."""
    return bandwidth * np.arange(1, bands + 1)


def spatial_labels(bandwidth: float, bands: int) -> list[str]:
    labels = ["Same location", f"1 to {_fmt(bandwidth)}"]
    labels += [f"{_fmt(i * bandwidth + 1)} to {_fmt((i + 1) * bandwidth)}" for i in range(1, bands)]
    return labels + [f"More than {_fmt(bands * bandwidth)}"]


def temporal_labels(bandwidth: int, bands: int) -> list[str]:
    labels = [f"0 to {bandwidth}"]
    labels += [f"{i * bandwidth + 1} to {(i + 1) * bandwidth}" for i in range(1, bands)]
    return labels + [f"More than {bands * bandwidth}"]


# --------------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------------


def _lag_histogram(days: np.ndarray) -> np.ndarray:
    """Number of unordered pairs of events per day difference 0, 1, ..., span (exact integers)."""
    offset = days - days.min()
    c = np.bincount(offset).astype("int64")
    lags = np.correlate(c, c, mode="full")[c.size - 1:].astype("int64")  # lag L: sum_d c[d] c[d+L]
    lags[0] = int((c * (c - 1) // 2).sum())  # same day: pairs within a day, not an event with itself
    return lags


def knox_test(x: Any, y: Any, days: Any, spatial_bandwidth: float, spatial_bands: int,
              temporal_bandwidth: int, temporal_bands: int, iterations: int = 99,
              distance: str = "euclidean", seed: int | None = None, precision: str = "nrc") -> KnoxResult:
    """The Knox test with the NRC's bands (module docstring). ``days``: whole days (int, or datetime64)."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, not {distance!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if not spatial_bandwidth > 0 or spatial_bands < 1:
        raise ValueError("spatial bandwidth must be above 0 and there must be at least one spatial band")
    if int(temporal_bandwidth) != temporal_bandwidth or temporal_bandwidth < 1 or temporal_bands < 1:
        raise ValueError("temporal bandwidth must be a whole number of days >= 1, with at least one band")
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    temporal_bandwidth = int(temporal_bandwidth)
    xy = np.column_stack([np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")])
    t = np.asarray(days)
    if np.issubdtype(t.dtype, np.datetime64):
        t = (t.astype("datetime64[D]") - EPOCH).astype("int64")
    t = t.astype("int64")
    n = len(t)
    if xy.shape[0] != n:
        raise ValueError("x, y and days must have the same length")
    if n < 2:
        raise ValueError("the Knox test needs at least two events")
    if not np.isfinite(xy).all():
        raise ValueError("x and y must be finite numbers")
    if precision == "nrc":
        xy = xy.astype("float32").astype("float64")

    s_edges = spatial_edges(spatial_bandwidth, spatial_bands)
    t_edges = temporal_edges(temporal_bandwidth, temporal_bands)
    rows, cols = spatial_bands + 2, temporal_bands + 1
    within_rows = rows - 1  # all but "More than kb"

    # Pairs closer than k*b, once. query_pairs includes distance == r, which belongs to "More than": dropped.
    p_norm = DISTANCES[distance]
    pairs = cKDTree(xy).query_pairs(r=float(s_edges[-1]), p=p_norm, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    d = np.linalg.norm(xy[i] - xy[j], ord=p_norm, axis=1) if len(i) else np.zeros(0)
    s_band = np.where(d == 0, 0, np.searchsorted(s_edges, d, side="right") + 1)
    keep = s_band < within_rows
    i, j, s_band = i[keep], j[keep], s_band[keep]

    # Every pair by day difference (invariant under permutation of the dates).
    lag_counts = _lag_histogram(t)
    col_totals = np.bincount(np.searchsorted(t_edges, np.arange(lag_counts.size), side="right"),
                             weights=lag_counts, minlength=cols).astype("int64")

    def table(within: np.ndarray) -> np.ndarray:
        """Within-bandwidth counts (within_rows x cols [x k]) completed with the 'More than' row."""
        rest = col_totals.reshape((cols,) + (1,) * (within.ndim - 2)) - within.sum(axis=0)
        return np.concatenate([within, rest[None]], axis=0)

    base = s_band * cols
    obs_t = np.searchsorted(t_edges, np.abs(t[i] - t[j]), side="right")
    observed = table(np.bincount(base + obs_t, minlength=within_rows * cols).reshape(within_rows, cols))

    rng = np.random.default_rng(seed)
    cells = within_rows * cols
    simulated = np.empty((rows, cols, iterations), dtype="int64")
    batch = max(1, min(iterations, BATCH_VALUES // max(1, len(i))))
    done = 0
    while done < iterations:
        k = min(batch, iterations - done)
        shuffled = rng.permuted(np.broadcast_to(t, (k, n)), axis=1)  # each row: the dates, permuted
        sim_t = np.searchsorted(t_edges, np.abs(shuffled[:, i] - shuffled[:, j]), side="right")
        codes = (np.arange(k)[:, None] * cells + base[None, :] + sim_t).ravel()
        within = np.bincount(codes, minlength=k * cells).reshape(k, within_rows, cols).transpose(1, 2, 0)
        simulated[:, :, done:done + k] = table(within)
        done += k

    expected = simulated.mean(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(expected > 0, observed / expected, np.nan)
    p_value = ((simulated >= observed[:, :, None]).sum(axis=2) + 1) / (iterations + 1)

    r_labels = spatial_labels(spatial_bandwidth, spatial_bands)
    c_labels = temporal_labels(temporal_bandwidth, temporal_bands)

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, index=pd.Index(r_labels, name="distance"),
                            columns=pd.Index(c_labels, name="days"))

    parameters = {"spatial_bandwidth": spatial_bandwidth, "spatial_bands": spatial_bands,
                  "temporal_bandwidth": temporal_bandwidth, "temporal_bands": temporal_bands,
                  "iterations": iterations, "distance": distance, "seed": seed, "precision": precision}
    return KnoxResult(frame(observed), frame(expected), frame(ratio), frame(p_value), simulated, parameters, n)


# --------------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------------


def read_events(path: Path | str, x: str, y: str, date: str, date_format: str = "%d/%m/%Y") -> pd.DataFrame:
    """x, y (float) and day (datetime64[D]) from a CSV; raises NearRepeatInputError naming file, row, column.

    Every row must be usable: a silently dropped row would change every count. Rows that are entirely
    empty are skipped (spreadsheets leave them at the end).
    """
    path = Path(path)
    name = path.name
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True,
                            encoding="utf-8-sig")
    except FileNotFoundError:
        raise NearRepeatInputError(f"{name}: no such file ({path})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise NearRepeatInputError(f"{name}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in (x, y, date) if c not in frame.columns]
    if missing:
        raise NearRepeatInputError(
            f"{name}: no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})")
    frame = frame[(frame[[x, y, date]].apply(lambda s: s.str.strip()) != "").any(axis=1)]
    if len(frame) < 2:
        raise NearRepeatInputError(f"{name}: fewer than two events")
    out = pd.DataFrame(index=frame.index)
    for column in (x, y):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype="float64"))
        if bad.any():
            row = int(frame.index[bad][0]) + 2  # 1-based, after the header line
            raise NearRepeatInputError(
                f"{name} row {row}: column {column!r} is not a number ({int(bad.sum())} such rows)")
        out[column] = values.astype("float64")
    days = pd.to_datetime(frame[date].str.strip(), format=date_format, errors="coerce")
    bad = days.isna().to_numpy()
    if bad.any():
        row = int(frame.index[bad][0]) + 2
        raise NearRepeatInputError(
            f"{name} row {row}: column {date!r} is not a date in {date_format} ({int(bad.sum())} such rows)")
    return pd.DataFrame({"x": out[x].to_numpy(), "y": out[y].to_numpy(),
                         "day": days.dt.normalize().to_numpy().astype("datetime64[D]")})


TABLES = {"observed": "observed", "expected": "expected", "knox_ratio": "knox_ratio", "significance": "p_value"}


def write_tables(result: KnoxResult, out_dir: Path | str) -> list[Path]:
    """observed.csv, expected.csv, knox_ratio.csv, significance.csv: rows = distance bands, columns = days."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, attribute in TABLES.items():
        table: pd.DataFrame = getattr(result, attribute)
        if attribute in ("expected", "knox_ratio"):
            table = table.round(3)
        path = out / f"{file_name}.csv"
        table.to_csv(path, encoding="utf-8", lineterminator="\n")
        written.append(path)
    return written


def summary_lines(result: KnoxResult, alpha: float = 0.05) -> list[str]:
    """A few lines for the terminal: events, pairs, and the cells over-represented at ``alpha``."""
    p = result.parameters
    lines = [f"{result.n_events} events, {result.n_pairs} pairs; {p['iterations']} iterations, "
             f"{p['distance']} distance, smallest possible p = {1 / (p['iterations'] + 1):.3g}"]
    hits = []
    for r_label in result.observed.index[:-1]:
        for c_label in result.observed.columns[:-1]:
            ratio = result.knox_ratio.loc[r_label, c_label]
            if result.p_value.loc[r_label, c_label] <= alpha and ratio > 1:
                hits.append(f"{r_label} x {c_label} days: Knox ratio {ratio:.2f}, "
                            f"p = {result.p_value.loc[r_label, c_label]:.3g}")
    lines.append(f"over-represented at p <= {alpha}: " + ("none" if not hits else str(len(hits))))
    lines += ["  " + h for h in hits]
    return lines
