"""Validation of canonical rows with Great Expectations, and the quarantine reasons it yields.

Great Expectations runs on a pandas frame that holds only what the rules need and nothing that identifies a
person: status codes (from parsing, see canonical.py), timestamps and coordinates. Identifier and free-text
columns are never handed to it, because GX copies failing values into its results (PRIVACY.md). It runs on
the pandas datasource: its SQL datasource returns nothing on DuckDB (it reads after closing the connection).
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.canonical import (
    STATUS_COLUMNS,
    SWEREF_E_RANGE,
    SWEREF_N_RANGE,
    WGS84_LAT_RANGE,
    WGS84_LON_RANGE,
)

VALIDATED_COLUMNS = [
    "source_row", *STATUS_COLUMNS, "occurred_from", "occurred_to",
    "latitude", "longitude", "sweref99_n", "sweref99_e",
]

# Human-readable reasons for the range and pair rules (status rules read "<field>: <status code>").
RANGE_RULES = {
    "latitude": (WGS84_LAT_RANGE, "coordinates: latitude outside Sweden (swapped, zero, or another CRS?)"),
    "longitude": (WGS84_LON_RANGE, "coordinates: longitude outside Sweden (swapped, zero, or another CRS?)"),
    "sweref99_n": (SWEREF_N_RANGE, "coordinates: SWEREF 99 TM northing outside Sweden"),
    "sweref99_e": (SWEREF_E_RANGE, "coordinates: SWEREF 99 TM easting outside Sweden"),
}
PAIR_REASON = "occurred_to: before occurred_from"

# Great Expectations validates every delivery up to this many rows: all weekly deliveries, by far (Örebro's
# partners send hundreds of rows a week). Above it (a history reload, a national export, the benchmark) the
# same suite is evaluated in bulk by :func:`bulk_validate`, a vectorised reading of each expectation: GX costs
# about 5 s per million rows here, the bulk reading 0.05 s. Both read one definition (:func:`suite_rules`: GX's
# suite is built from it and from nothing else), tests/test_validate_bulk.py shows both give the same reasons on
# the same rows, and bulk_validate refuses an expectation type it cannot read, so the two cannot drift apart
# silently.
GX_MAX_ROWS = 200_000


def _quiet_gx() -> None:
    # GX logs every function it registers at import when a root handler exists (Airflow installs one).
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


_GX_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _batch_definition():
    """One ephemeral GX context per process: no files, no Data Docs (nothing to leak), no analytics."""
    _quiet_gx()
    import great_expectations as gx  # 2-3 s import: only where validation runs

    context = gx.get_context(mode="ephemeral")
    try:
        context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    except AttributeError:  # older layouts: progress bars are cosmetic
        pass
    source = context.data_sources.add_pandas(name="est_deliveries")
    asset = source.add_dataframe_asset(name="canonical_rows")
    return asset.add_batch_definition_whole_dataframe("whole_delivery")


class Rule:
    """One expectation of the suite as plain data: the Great Expectations class name, its arguments (also
    readable as attributes, like a GX expectation's) and its meta."""

    def __init__(self, kind: str, meta: dict, **kwargs):
        self.kind = kind
        self.meta = meta
        self.kwargs = kwargs
        for name, value in kwargs.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return f"Rule({self.kind}, {self.kwargs}, meta={self.meta})"


@lru_cache(maxsize=8)
def suite_rules(extent: tuple[tuple[str, float, float], ...] = ()) -> tuple[Rule, ...]:
    """The rules every contract gets (schemas/CONTRACTS.md), each with its reason in meta: the one definition
    both engines read. :func:`expectation_suite` builds the Great Expectations suite from exactly these (and
    nothing else), :func:`bulk_validate` evaluates them without importing Great Expectations (its import
    alone takes 3-4 s, more than checking ten million rows in bulk).

    ``extent`` overrides the coordinate ranges (a contract's ``extent:``, for a partner outside Sweden)."""
    rules = [
        Rule("ExpectColumnValuesToBeInSet", {"field": field}, column=column, value_set=["ok"])
        for column, field in STATUS_COLUMNS.items()
    ]
    override = {name: (low, high) for name, low, high in extent}
    for column, ((low, high), reason) in RANGE_RULES.items():
        if column in override:
            low, high = override[column]
            reason = f"coordinates: {column} outside the contract's extent [{low}, {high}] (swapped or zero?)"
        rules.append(Rule("ExpectColumnValuesToBeBetween", {"reason": reason},
                          column=column, min_value=low, max_value=high))
    rules.append(Rule(
        "ExpectColumnPairValuesAToBeGreaterThanB", {"reason": PAIR_REASON},
        column_A="occurred_to", column_B="occurred_from", or_equal=True, ignore_row_if="either_value_is_missing",
    ))
    return tuple(rules)


@lru_cache(maxsize=8)
def expectation_suite(extent: tuple[tuple[str, float, float], ...] = ()):
    """The Great Expectations suite of :func:`suite_rules` (the rules every contract gets, each with its
    reason in meta). ``extent`` overrides the coordinate ranges (a contract's ``extent:``)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    _batch_definition()  # GX builds suites only inside an active data context
    suite = gx.ExpectationSuite(name="est_canonical_incident")
    for rule in suite_rules(extent):
        suite.add_expectation(getattr(gxe, rule.kind)(**rule.kwargs, meta=dict(rule.meta)))
    return suite


def _extent_key(extent: dict[str, tuple[float, float]] | None) -> tuple[tuple[str, float, float], ...]:
    return tuple(sorted((k, float(lo), float(hi)) for k, (lo, hi) in (extent or {}).items()))


def validate(frame: pd.DataFrame, extent: dict[str, tuple[float, float]] | None = None) -> dict[int, list[str]]:
    """{source_row: [reasons]} for every failing row (no personal values in reasons): Great Expectations up to
    GX_MAX_ROWS rows, the same suite read in bulk above (see GX_MAX_ROWS)."""
    if len(frame) > GX_MAX_ROWS:
        return bulk_validate(frame, extent)
    return gx_validate(frame, extent)


def gx_validate(frame: pd.DataFrame, extent: dict[str, tuple[float, float]] | None = None) -> dict[int, list[str]]:
    """Run the suite with Great Expectations; return {source_row: [reasons]} for every failing row."""
    if frame.empty:
        return {}
    checked = frame[VALIDATED_COLUMNS].copy()
    for column in STATUS_COLUMNS:
        checked[column] = checked[column].astype(object)
    # One validation at a time per process: the context, its one dataframe asset and the suite are shared, and
    # Great Expectations is not made for threads. Two files validated at once in two preparing threads
    # (jobs.PREPARING_THREADS) got each other's results: a row with no category passed as valid.
    with _GX_LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": checked})
        result = batch.validate(
            expectation_suite(_extent_key(extent)),
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": ["source_row"],
                "return_unexpected_index_query": False,
                "partial_unexpected_count": 0,
            },
        )
    reasons: dict[int, list[str]] = {}
    for outcome in result.results:
        if outcome.success:
            continue
        meta = outcome.expectation_config.meta or {}
        if not outcome.result.get("unexpected_index_list") and outcome.result.get("unexpected_count", 0) == 0:
            # An expectation that failed to run at all is a bug, not a data problem: never pass it silently.
            raise RuntimeError(f"validation rule {outcome.expectation_config.type} did not run: {outcome.exception_info}")
        for item in outcome.result.get("unexpected_index_list", []):
            row = int(item["source_row"])
            if "field" in meta:
                column = next(k for k, v in STATUS_COLUMNS.items() if v == meta["field"])
                reason = f"{meta['field']}: {item[column]}"
            else:
                reason = meta["reason"]
            reasons.setdefault(row, []).append(reason)
    return {row: sorted(set(found)) for row, found in reasons.items()}


def _unexpected(expectation, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows an expectation fails (a boolean mask) and, for status rules, the codes found in those rows.

    Each branch reads the expectation the way Great Expectations does: missing values are not checked by
    in-set and range rules (GX skips nulls), and the pair rule ignores a row where either value is missing
    (``ignore_row_if="either_value_is_missing"``)."""
    kind = getattr(expectation, "kind", type(expectation).__name__)
    if kind == "ExpectColumnValuesToBeInSet":
        # In the column's own dtype (Arrow-backed strings compare in bulk; object would hash every value).
        values = frame[expectation.column]
        allowed = list(expectation.value_set)
        if len(allowed) == 1 and isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
            # The status rules allow one value ("ok"): one comparison a row instead of a hash lookup (0.8
            # against 1.9 ms for 300,000 rows here, nine status columns a file). Nulls are not checked.
            unequal = pc.not_equal(pa.array(values.array), allowed[0])
            mask = pc.fill_null(unequal, False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
        else:
            mask = (values.notna() & ~values.isin(allowed)).to_numpy(dtype=bool)
        return mask, values[mask].astype(object).to_numpy()
    if kind == "ExpectColumnValuesToBeBetween":
        values = pd.to_numeric(frame[expectation.column], errors="coerce").to_numpy(dtype=float)
        present = ~np.isnan(values)
        with np.errstate(invalid="ignore"):
            outside = (values < expectation.min_value) | (values > expectation.max_value)
        return present & outside, None
    if kind == "ExpectColumnPairValuesAToBeGreaterThanB":
        if expectation.ignore_row_if != "either_value_is_missing":
            raise NotImplementedError("bulk validation reads only ignore_row_if='either_value_is_missing'")
        a, b = frame[expectation.column_A], frame[expectation.column_B]
        both = (a.notna() & b.notna()).to_numpy()
        ok = (a >= b) if expectation.or_equal else (a > b)
        return both & ~ok.fillna(False).to_numpy(dtype=bool), None
    raise NotImplementedError(
        f"bulk validation cannot read {kind}: add it to validate._unexpected (and its agreement test) "
        "before adding it to the suite"
    )


def bulk_validate(frame: pd.DataFrame, extent: dict[str, tuple[float, float]] | None = None) -> dict[int, list[str]]:
    """The rules of :func:`suite_rules` (the Great Expectations suite's definition), evaluated column-wise with
    numpy: the same reasons as :func:`gx_validate` on the same rows, at bulk speed (Great Expectations is
    neither run nor imported)."""
    if frame.empty:
        return {}
    rows = frame["source_row"].to_numpy()
    found: list[tuple[np.ndarray, np.ndarray]] = []  # (rows, reasons) per expectation
    for expectation in suite_rules(_extent_key(extent)):
        mask, codes = _unexpected(expectation, frame)
        if not mask.any():
            continue
        meta = expectation.meta or {}
        if "field" in meta:
            reasons = np.char.add(f"{meta['field']}: ", codes.astype(str))
        else:
            reasons = np.full(int(mask.sum()), meta["reason"], dtype=object)
        found.append((rows[mask], reasons.astype(object)))
    if not found:
        return {}
    failing = pd.DataFrame({"row": np.concatenate([r for r, _ in found]),
                            "reason": np.concatenate([r for _, r in found])})
    # Failing rows are few next to the delivery: grouping them in pandas is cheap.
    grouped = failing.drop_duplicates().sort_values(["row", "reason"]).groupby("row", sort=True)["reason"]
    return {int(row): list(reasons) for row, reasons in grouped}

