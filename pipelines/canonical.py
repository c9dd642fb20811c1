"""From a partner's text columns to the canonical incident, in bulk (pandas/numpy, no loop per row).

Each field is parsed as the contract says. Where a value cannot be used the row is not dropped here: a status
column says why ("missing", "not_a_date", "unknown_value", ...), and validation (Great Expectations) turns
the statuses into quarantine reasons. Status columns carry codes, never the partner's values, so validation
results can be kept and shown without copying anything personal.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from pipelines.contracts import Contract
from pipelines.readers import RawDelivery, resolve_columns

# Sweden's extent with a margin: coordinates outside it are errors (swapped, zero, or another CRS).
WGS84_LAT_RANGE = (55.0, 69.2)
WGS84_LON_RANGE = (10.5, 24.3)
SWEREF_N_RANGE = (6_100_000.0, 7_700_000.0)
SWEREF_E_RANGE = (250_000.0, 950_000.0)
# Excel serial day numbers accepted as dates: 20000 = 1954-10-03, 80000 = 2119-01-10.
EXCEL_SERIAL_RANGE = (20000, 80000)
# How far in the future (against the delivery's receipt) an occurrence may be: clocks and time zones drift.
FUTURE_TOLERANCE = timedelta(days=1)


def _column(raw: RawDelivery, contract: Contract, field: str, found: dict[str, str]) -> pd.Series | None:
    """The field's text values (stripped, '' for empty), a constant, or None when the contract lacks it."""
    spec = contract.columns.get(field)
    n = raw.table.num_rows
    if spec is None:
        return None
    if spec.value is not None:
        return pd.Series([spec.value] * n, dtype="string")
    header = found.get(spec.source)
    if header is None:
        return pd.Series([""] * n, dtype="string")
    return raw.table.column(header).to_pandas().astype("string").str.strip().fillna("")


def parse_times(text: pd.Series, formats: tuple[str, ...], tz: str) -> tuple[pd.Series, pd.Series]:
    """Parse with the contract's formats, then ISO 8601. Local times are in ``tz``; returns UTC and day flags.

    On the autumn night when clocks go back, a local time such as 02:30 happens twice; we take the first
    (summer time) so that the incident lands in the right ISO week whichever it was. In spring, a local time
    that does not exist (02:30) is moved forward to the first valid time.
    """
    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    todo = text.ne("")
    for fmt in (*formats, "ISO8601"):
        if not todo.any():
            break
        aware = "%z" in fmt or fmt == "ISO8601"
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce", utc=aware and fmt != "ISO8601")
        if fmt == "ISO8601":
            # ISO text may or may not carry an offset; parse both kinds apart.
            has_offset = text[todo].str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True)
            with_offset = pd.to_datetime(text[todo][has_offset], format=fmt, errors="coerce", utc=True)
            naive = pd.to_datetime(text[todo][~has_offset], format=fmt, errors="coerce")
            local = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
            parsed = pd.concat([with_offset, local.dt.tz_convert("UTC")]).reindex(text[todo].index)
        elif not aware:
            parsed = parsed.dt.tz_localize(
                tz, ambiguous=np.ones(len(parsed), dtype=bool), nonexistent="shift_forward"
            ).dt.tz_convert("UTC")
        parsed = parsed.astype("datetime64[us, UTC]")
        ok = parsed.notna()
        result.loc[ok[ok].index] = parsed[ok]
        todo = todo & result.isna()
    serial_with_time = None
    if todo.any():
        # Excel serial dates (a date cell exported as its number, e.g. 46083.5 = 2026-03-01 12:00 local):
        # days since 1899-12-30, in local time. Only plausible serials (1954..2119) count as dates.
        serial = pd.to_numeric(text[todo].str.replace(",", ".", regex=False), errors="coerce")
        serial = serial[(serial >= EXCEL_SERIAL_RANGE[0]) & (serial <= EXCEL_SERIAL_RANGE[1])]
        if len(serial):
            naive = pd.Timestamp("1899-12-30") + pd.to_timedelta((serial * 86400).round(), unit="s")
            local = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
            result.loc[serial.index] = local.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
            serial_with_time = serial.index[(serial % 1) != 0]
            todo = todo & result.isna()
    is_day = text.str.len().le(10) & result.notna()
    if serial_with_time is not None and len(serial_with_time):
        is_day.loc[serial_with_time] = False  # 46082.5 is a date and a time of day
    return result, is_day


def parse_numbers(text: pd.Series, decimal: str) -> pd.Series:
    """Numbers with the contract's decimal mark; spaces and non-breaking spaces as thousands separators."""
    cleaned = text.str.replace(r"[\s\u00a0\u202f]", "", regex=True)
    if decimal == ",":
        cleaned = cleaned.str.replace(",", ".", regex=False)
    return pd.to_numeric(cleaned.where(cleaned.ne(""), None), errors="coerce").astype("float64")


def _status(index: pd.Index) -> pd.Series:
    return pd.Series("ok", index=index, dtype="string")


def to_canonical(
    raw: RawDelivery,
    contract: Contract,
    received_at: datetime,
    municipality_names: set[str] | None = None,
    canonical_personnummer=None,
) -> pd.DataFrame:
    """The canonical frame for one delivery: typed fields plus one status column per rule.

    ``canonical_personnummer`` is privacy's canonicaliser (passed in so this module stays free of keys).
    """
    found = resolve_columns(raw.header, contract)
    frame = pd.DataFrame({"source_row": np.asarray(raw.source_rows, dtype=np.int64)})
    idx = frame.index

    def text(field: str) -> pd.Series | None:
        values = _column(raw, contract, field, found)
        if values is not None:
            values.index = idx
        return values

    # record id: present, and once per file (the highest revision wins; see revision below).
    record_id = text("record_id")
    if contract.record_id_missing == "row_hash" and record_id.eq("").any():
        # A blank id (police.uk anti-social-behaviour rows) gets one derived from the row's whole content and
        # its ordinal among identical rows: the same rows in any order give the same ids (CONTRACTS.md).
        blank = record_id.eq("")
        rows = raw.table.to_pandas().astype("string").fillna("")
        rows.index = idx
        hashed = pd.util.hash_pandas_object(rows[blank], index=False).map("{:016x}".format)
        ordinal = hashed.groupby(hashed).cumcount().astype(str)
        record_id = record_id.copy()
        record_id[blank] = ("row:" + hashed + "." + ordinal).astype("string")
    frame["record_id"] = record_id.where(record_id.ne(""), None)
    frame["record_id_status"] = _status(idx).mask(record_id.eq(""), "missing")

    revision_text = text("revision")
    if revision_text is None:
        frame["revision"] = 1
        frame["revision_status"] = _status(idx)
    else:
        revision = parse_numbers(revision_text, ".")
        frame["revision"] = revision.fillna(1).astype("int64")
        bad = revision_text.ne("") & (revision.isna() | (revision % 1 != 0))
        frame["revision_status"] = _status(idx).mask(bad, "not_a_whole_number")

    repeated = frame["record_id"].notna() & frame.sort_values(
        ["revision", "source_row"], ascending=[False, True]
    ).duplicated("record_id").reindex(idx)
    frame.loc[repeated, "record_id_status"] = "repeated_in_file"

    # When.
    tz = contract.timezone
    for field in ("occurred_from", "occurred_to", "reported_at"):
        values = text(field)
        if values is None:
            frame[field] = pd.Series(pd.NaT, index=idx, dtype="datetime64[us, UTC]")
            frame[f"{field}_status"] = _status(idx)
            if field == "occurred_from":
                frame["occurred_day_only"] = False
            continue
        spec = contract.columns[field]
        parsed, is_day = parse_times(values, spec.formats, tz)
        frame[field] = parsed
        status = _status(idx).mask(values.ne("") & parsed.isna(), "not_a_date")
        if field == "occurred_from":
            status = status.mask(values.eq(""), "missing")
            future = parsed > pd.Timestamp(received_at + FUTURE_TOLERANCE)
            status = status.mask(future.fillna(False), "in_the_future")
            frame["occurred_day_only"] = is_day
        frame[f"{field}_status"] = status
    # occurred_to before occurred_from is a Great Expectations column-pair rule (validate.py).
    has_to = frame["occurred_to"].notna() & frame["occurred_to"].ne(frame["occurred_from"])
    frame["time_precision"] = np.where(has_to, "interval", np.where(frame["occurred_day_only"], "day", "exact"))
    frame = frame.drop(columns="occurred_day_only")

    # What.
    partner_category = text("category")
    frame["partner_category"] = partner_category.where(partner_category.ne(""), None)
    if contract.columns["category"].value is not None:
        frame["category"] = partner_category
    else:
        frame["category"] = partner_category.map(contract.category_map).astype("string")
    frame["category_status"] = (
        _status(idx).mask(frame["category"].isna(), "unknown_value").mask(partner_category.eq(""), "missing")
    )
    place = text("place_type")
    if place is None:
        frame["place_type"] = None
    elif contract.columns["place_type"].value is not None:
        frame["place_type"] = place
    else:
        frame["place_type"] = place.map(contract.place_type_map).astype("string").where(place.ne(""), None)
        frame["place_type"] = frame["place_type"].fillna("other").where(place.ne(""), None)

    # Where: coordinates are checked against Sweden's extent; placing happens after validation.
    coordinate_status = _status(idx)
    for field in ("latitude", "longitude", "sweref99_n", "sweref99_e"):
        values = text(field)
        if values is None:
            frame[field] = np.nan
            continue
        numbers = parse_numbers(values, contract.decimal)
        frame[field] = numbers
        coordinate_status = coordinate_status.mask(values.ne("") & numbers.isna(), "not_a_number")
    latlon = text("latlon")
    if latlon is not None:
        parts = latlon.str.split(",", n=1, expand=True).reindex(columns=[0, 1]).fillna("")
        lat = pd.to_numeric(parts[0].str.strip().where(parts[0].ne(""), None), errors="coerce")
        lon = pd.to_numeric(parts[1].str.strip().where(parts[1].ne(""), None), errors="coerce")
        frame["latitude"] = frame["latitude"].fillna(lat)
        frame["longitude"] = frame["longitude"].fillna(lon)
        coordinate_status = coordinate_status.mask(latlon.ne("") & (lat.isna() | lon.isna()), "not_a_number")
    # Sweden's extent is a Great Expectations range rule on these columns (validate.py).
    frame["coordinates_status"] = coordinate_status
    for field in ("address", "area_code"):
        values = text(field)
        frame[field] = None if values is None else values.where(values.ne(""), None)

    municipality = text("municipality")
    frame["municipality_status"] = _status(idx)
    if municipality is not None and municipality_names:
        other = municipality.ne("") & ~municipality.isin(municipality_names)
        frame["municipality_status"] = frame["municipality_status"].mask(other, "another_municipality")
        # A county ("Örebro län"): the event may be anywhere in the county, so it cannot be counted for the
        # municipality; quarantined with its own code so receipts and `est quarantine list` tell it apart.
        county = other & municipality.str.endswith(" län")
        frame["municipality_status"] = frame["municipality_status"].mask(county, "county_level_only")

    # Who: personnummer are canonicalised now and keyed later; the clear value never leaves this frame.
    person = text("person_id")
    if person is None or canonical_personnummer is None:
        frame["person_id"] = None
        frame["person_id_status"] = _status(idx)
    else:
        canonical, status = canonical_personnummer(person.where(person.ne(""), None))
        frame["person_id"] = pd.Series(canonical, index=idx)
        status = pd.Series(status, index=idx).astype("string")
        frame["person_id_status"] = status.mask(status.isin(["valid", "missing"]), "ok")

    description = text("description")
    frame["description"] = None if description is None else description.where(description.ne(""), None)
    return frame


STATUS_COLUMNS = {
    "record_id_status": "record_id",
    "revision_status": "revision",
    "occurred_from_status": "occurred_from",
    "occurred_to_status": "occurred_to",
    "reported_at_status": "reported_at",
    "category_status": "category",
    "coordinates_status": "coordinates",
    "municipality_status": "municipality",
    "person_id_status": "person_id",
}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
