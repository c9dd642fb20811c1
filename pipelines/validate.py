"""Validation of canonical rows with Great Expectations, and the quarantine reasons it yields.

Great Expectations runs on a pandas frame that holds only what the rules need and nothing that identifies a
person: status codes (from parsing, see canonical.py), timestamps and coordinates. Identifier and free-text
columns are never handed to it, because GX copies failing values into its results (PRIVACY.md). It runs on
the pandas datasource: its SQL datasource returns nothing on DuckDB (it reads after closing the connection).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import pandas as pd

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


def _quiet_gx() -> None:
    # GX logs every function it registers at import when a root handler exists (Airflow installs one).
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


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


@lru_cache(maxsize=8)
def expectation_suite(extent: tuple[tuple[str, float, float], ...] = ()):
    """The rules every contract gets (schemas/CONTRACTS.md). Each carries its reason in meta.

    ``extent`` overrides the coordinate ranges (a contract's ``extent:``, for a partner outside Sweden)."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name="est_canonical_incident")
    for column, field in STATUS_COLUMNS.items():
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeInSet(column=column, value_set=["ok"], meta={"field": field})
        )
    override = {name: (low, high) for name, low, high in extent}
    for column, ((low, high), reason) in RANGE_RULES.items():
        if column in override:
            low, high = override[column]
            reason = f"coordinates: {column} outside the contract's extent [{low}, {high}] (swapped or zero?)"
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high, meta={"reason": reason})
        )
    suite.add_expectation(
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="occurred_to", column_B="occurred_from", or_equal=True,
            ignore_row_if="either_value_is_missing", meta={"reason": PAIR_REASON},
        )
    )
    return suite


def validate(frame: pd.DataFrame, extent: dict[str, tuple[float, float]] | None = None) -> dict[int, list[str]]:
    """Run the suite; return {source_row: [reasons]} for every failing row (no personal values in reasons)."""
    if frame.empty:
        return {}
    checked = frame[VALIDATED_COLUMNS].copy()
    for column in STATUS_COLUMNS:
        checked[column] = checked[column].astype(object)
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": checked})
    result = batch.validate(
        expectation_suite(tuple(sorted((k, float(lo), float(hi)) for k, (lo, hi) in (extent or {}).items()))),
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


def failing_mask(frame: pd.DataFrame, reasons: dict[int, list[str]]) -> np.ndarray:
    return frame["source_row"].isin(list(reasons)).to_numpy()
