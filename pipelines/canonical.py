"""From a partner's text columns to the canonical incident, in bulk (pandas/numpy, no loop per row).

Each field is parsed as the contract says. Where a value cannot be used the row is not dropped here: a status
column says why ("missing", "not_a_date", "unknown_value", ...), and validation (Great Expectations) turns
the statuses into quarantine reasons. Status columns carry codes, never the partner's values, so validation
results can be kept and shown without copying anything personal.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import Contract
from pipelines.readers import RawDelivery, one_array, resolve_columns

# Sweden's extent with a margin: coordinates outside it are errors (swapped, zero, or another CRS).
WGS84_LAT_RANGE = (55.0, 69.2)
WGS84_LON_RANGE = (10.5, 24.3)
SWEREF_N_RANGE = (6_100_000.0, 7_700_000.0)
SWEREF_E_RANGE = (250_000.0, 950_000.0)
# Excel serial day numbers accepted as dates: 20000 = 1954-10-03, 80000 = 2119-01-10.
EXCEL_SERIAL_RANGE = (20000, 80000)
# How far in the future (against the delivery's receipt) an occurrence may be: clocks and time zones drift.
FUTURE_TOLERANCE = timedelta(days=1)
# time_precision values, in the order of their codes here (0: an interval, 1: a day only, 2: an exact time).
TIME_PRECISIONS = ("interval", "day", "exact")
# The years an occurrence may fall in: the warehouse's calendar of ISO weeks (warehouse.incident_vocabularies)
# covers them, and an occurrence outside them is quarantined ("year_outside_1900_2199").
FIRST_YEAR, LAST_YEAR = 1900, 2199


# ---------------------------------------------------------------------------------------------------------
# Text columns stay Arrow arrays (pyarrow.compute) until the frame is built; pandas is used only where its
# exact behaviour is the rule (an unusual date or number falls back to the pandas code below, per value or
# per column, so the result never depends on which path a value took).

_STRING = pa.large_string()  # what pandas' "string" dtype holds


def _text(raw: RawDelivery, contract: Contract, field: str, found: dict[str, str]) -> pa.Array | None:
    """The field's text values (stripped, '' for empty), a constant, or None when the contract lacks it."""
    spec = contract.columns.get(field)
    n = raw.table.num_rows
    if spec is None:
        return None
    if spec.value is not None:
        return _repeat(spec.value, n)
    header = found.get(spec.source)
    if header is None:
        return _repeat("", n)
    column = raw.table.column(header)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return pa.array(column.to_pandas().astype("string").str.strip().fillna(""), pa.string())
    if not column.null_count and not any(may_need_strip(chunk) for chunk in column.chunks):
        return one_array(column)  # nothing to strip: the kernel would copy the column unchanged
    # pandas' str.strip() on Arrow strings is this very kernel.
    stripped = pc.fill_null(pc.utf8_trim_whitespace(column), "")
    return one_array(stripped)


def may_need_strip(chunk: pa.Array) -> bool:
    """Whether some value may start or end with whitespace. A value whose first and last bytes are printable
    ASCII other than the space (0x21-0x7e) starts and ends with characters no strip removes; any other byte (a
    space, a control byte, part of a multi-byte character such as a no-break space) leaves the value to the
    Unicode kernel. Reads two bytes a value from the Arrow buffers, where the kernel decodes every character
    (about a fifth of the canonical stage's time on the bench's files)."""
    if len(chunk) == 0:
        return False
    buffers = chunk.buffers()
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(buffers[1], dtype=width)[chunk.offset: chunk.offset + len(chunk) + 1]
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    if not filled.any():
        return False
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    edges = np.concatenate((data[starts[filled]], data[ends[filled] - 1]))
    return bool(((edges < 0x21) | (edges > 0x7E)).any())


def _repeat(value: str, n: int) -> pa.Array:
    return pa.array([value], pa.string()).take(pa.array(np.zeros(n, dtype=np.int32)))


def _np_bool(array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _strings(array: pa.Array, na_value=pd.NA) -> pd.Series:
    """An Arrow string array as the pandas column to_canonical has always produced (dtype "string")."""
    dtype = pd.StringDtype("pyarrow", na_value=na_value)
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([array.cast(_STRING)]), dtype=dtype))


def _or_null(array: pa.Array) -> pa.Array:
    """'' -> null (pandas: values.where(values.ne(""), None)): the same buffers with a validity bitmap."""
    if array.null_count or array.offset:
        return pc.if_else(pc.equal(array, ""), pa.scalar(None, array.type), array)
    present = pc.binary_length(array).to_numpy(zero_copy_only=False) > 0
    if present.all():
        return array
    validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    buffers = array.buffers()
    return pa.Array.from_buffers(array.type, len(array), [validity, buffers[1], buffers[2]])


def _codes(labels: tuple[str, ...], codes: np.ndarray, na_value=pd.NA, shared: dict | None = None) -> pd.Series:
    """A status-like column from small integer codes into ``labels``. Columns that hold one value throughout
    share one (immutable) Arrow array through ``shared``."""
    if shared is not None and len(codes) and not codes.any():
        key = (labels[0], len(codes), na_value is pd.NA)
        if key not in shared:
            shared[key] = pa.array(labels[:1], _STRING).take(pa.array(np.zeros(len(codes), dtype=np.int32)))
        return _strings(shared[key], na_value)
    dictionary = pa.array(labels, _STRING)
    return _strings(dictionary.take(pa.array(codes.astype(np.int32, copy=False))), na_value)


def _may_repeat(values: pa.Array) -> bool:
    """Whether some non-null value occurs more than once. Counting distinct values (polars: a parallel hash
    count, no dictionary built) answers "no" for the usual file of distinct ids at a fraction of the cost of
    the dictionary encoding that finds the repeated ones."""
    present = len(values) - values.null_count
    if present < 2:
        return False
    if present < 10_000:
        return True  # small: the dictionary encoding costs nothing
    import polars as pl

    distinct = pl.Series("v", values).n_unique() - (1 if values.null_count else 0)
    return distinct < present


def _mapped(values: pa.Array, mapping: dict[str, str]) -> pa.Array:
    """values.map(mapping): the mapped value, or null where the value is not a key."""
    if not mapping:
        return pa.nulls(len(values), pa.string())
    keys = pa.array(list(mapping.keys()), values.type)
    targets = pa.array(list(mapping.values()), pa.string())
    return targets.take(pc.index_in(values, value_set=keys))


# --- numbers -------------------------------------------------------------------------------------------------

# Numbers with at most 15 digits are exact in a double, and both pandas' parser and Arrow's cast give the
# correctly rounded value; anything else (exponents, signs, more digits, words) takes pandas' own path.
_SIMPLE_NUMBER = {".": r"^-?[0-9]{1,15}(\.[0-9]{1,15})?$", ",": r"^-?[0-9]{1,15}(,[0-9]{1,15})?$"}
_PANDAS_SPACE = r"[\s\u00a0\u202f]"


def _parse_numbers_pandas(text: pd.Series, decimal: str) -> pd.Series:
    """The reference: numbers with the contract's decimal mark; spaces and non-breaking spaces as thousands
    separators (Python's Unicode \\s)."""
    cleaned = text.str.replace(_PANDAS_SPACE, "", regex=True)
    if decimal == ",":
        cleaned = cleaned.str.replace(",", ".", regex=False)
    return pd.to_numeric(cleaned.where(cleaned.ne(""), None), errors="coerce").astype("float64")


def _parse_numbers_arrow(values: pa.Array, decimal: str) -> np.ndarray:
    n = len(values)
    result = np.full(n, np.nan)
    nonempty = ~_np_bool(pc.equal(values, ""))
    if not nonempty.any():
        return result
    pattern = _SIMPLE_NUMBER.get(decimal)
    if pattern is None:
        return _parse_numbers_pandas(_strings(values), decimal).to_numpy()
    # Plain digits (coordinates in metres, revisions) need no regex; the others are checked by one.
    simple = _np_bool(pc.ascii_is_decimal(values)) & (pc.binary_length(values).to_numpy(zero_copy_only=False) <= 15)
    other = nonempty & ~simple
    if other.any():
        positions = np.flatnonzero(other)
        simple[positions] = _np_bool(pc.match_substring_regex(values.take(pa.array(positions)), pattern))
    cleaned = values
    rest = nonempty & ~simple
    if rest.any():
        # Thousands separators and other spaces: pandas' own cleaning of just these values.
        positions = np.flatnonzero(rest)
        text = _strings(values.take(pa.array(positions)))
        fixed = text.str.replace(_PANDAS_SPACE, "", regex=True)
        fixed_arrow = pa.array(fixed.array, values.type) if len(fixed) else pa.array([], values.type)
        good = _np_bool(pc.match_substring_regex(fixed_arrow, pattern))
        blank = _np_bool(pc.equal(fixed_arrow, ""))
        if not (good | blank).all():
            return _parse_numbers_pandas(_strings(values), decimal).to_numpy()
        cleaned = pc.replace_with_mask(values, pa.array(rest), fixed_arrow)
        nonempty = nonempty.copy()
        nonempty[positions[blank]] = False
    if decimal == ",":
        cleaned = pc.replace_substring(cleaned, ",", ".")
    take = slice(None) if nonempty.all() else np.flatnonzero(nonempty)
    subset = cleaned if nonempty.all() else cleaned.take(pa.array(take))
    numbers = pc.cast(subset, pa.float64()).to_numpy(zero_copy_only=False)
    if np.any((numbers == 0) & np.signbit(numbers)):
        # "-0": pandas gives 0.0 or -0.0 depending on the rest of the column; let it decide.
        return _parse_numbers_pandas(_strings(values), decimal).to_numpy()
    result[take] = numbers
    return result


def parse_numbers(text: pd.Series, decimal: str) -> pd.Series:
    """Numbers with the contract's decimal mark; spaces and non-breaking spaces as thousands separators."""
    values = pa.array(text.astype("string").array, _STRING) if len(text) else pa.array([], _STRING)
    if values.null_count:
        return _parse_numbers_pandas(text, decimal)
    return pd.Series(_parse_numbers_arrow(values, decimal), index=text.index, dtype="float64")


# --- times ---------------------------------------------------------------------------------------------------

# Text shapes read in bulk without pandas (year 1900-2199, a real day and time of day). A value of another
# shape, or an impossible date, goes through pandas' to_datetime exactly as it always did.
_SHAPES = {1: 10, 2: 16, 3: 19}  # shape id: length of YYYY-MM-DD, YYYY-MM-DD HH:MM, YYYY-MM-DD HH:MM:SS
_SEPARATORS = {4: ord("-"), 7: ord("-"), 10: ord(" "), 13: ord(":"), 16: ord(":")}
# Contract formats that accept exactly one of those shapes (and reject the others).
_FORMAT_SHAPE = {"%Y-%m-%d": 1, "%Y-%m-%d %H:%M": 2, "%Y-%m-%d %H:%M:%S": 3}
# FIRST_YEAR-01-01 and (LAST_YEAR + 1)-01-01 in UTC microseconds: the occurrences the warehouse can hold.
_YEARS_US = tuple(int((datetime(year, 1, 1, tzinfo=timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc))
                      / timedelta(microseconds=1)) for year in (FIRST_YEAR, LAST_YEAR + 1))
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorised."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@functools.cache
def _months() -> tuple[np.ndarray, np.ndarray]:
    """Day number (since 1970-01-01) of the first of each month 1900-01..2199-12, and the month's length."""
    years = np.repeat(np.arange(FIRST_YEAR, LAST_YEAR + 1), 12)
    months = np.tile(np.arange(1, 13), LAST_YEAR + 1 - FIRST_YEAR)
    starts = _days_from_civil(years, months, np.ones_like(years)).astype(np.int64)
    leap = (years % 4 == 0) & ((years % 100 != 0) | (years % 400 == 0))
    lengths = _DAYS_IN_MONTH[months] + (leap & (months == 2))
    return starts, lengths


def _shaped_local_times(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(shape id per value, 0 for anything else; naive local time in microseconds where shaped), read
    straight from the bytes: every value of one shape has the same length, so they form a byte matrix."""
    n = len(values)
    shape = np.zeros(n, dtype=np.int8)
    local = np.zeros(n, dtype=np.int64)
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False)
    for shape_id, width in _SHAPES.items():
        candidates = lengths == width
        count = int(candidates.sum())
        if not count:
            continue
        subset = values if count == n else values.filter(pa.array(candidates))
        buffers = subset.buffers()
        offset_type = np.int64 if pa.types.is_large_string(subset.type) else np.int32
        start = int(np.frombuffer(buffers[1], dtype=offset_type)[subset.offset])
        matrix = np.frombuffer(buffers[2], dtype=np.uint8)[start: start + count * width].reshape(count, width)
        ok = np.ones(count, dtype=bool)
        digit: dict[int, np.ndarray] = {}
        for k in range(width):
            column = matrix[:, k]
            if k in _SEPARATORS:
                ok &= column == _SEPARATORS[k]
            else:
                value = column - np.uint8(48)  # a non-digit wraps to > 9
                ok &= value <= 9
                digit[k] = value.astype(np.int32)

        def number(first: int, last: int) -> np.ndarray:
            if first >= width:
                return np.zeros(count, dtype=np.int32)
            out = digit[first]
            for k in range(first + 1, last):
                out = out * 10 + digit[k]
            return out

        year, month, day = number(0, 4), number(5, 7), number(8, 10)
        hour, minute, second = number(11, 13), number(14, 16), number(17, 19)
        month_starts, month_lengths = _months()
        ok &= (year >= FIRST_YEAR) & (year <= LAST_YEAR) & (month >= 1) & (month <= 12)
        month_index = np.where(ok, (year - FIRST_YEAR) * 12 + month - 1, 0)
        ok &= (day >= 1) & (day <= month_lengths[month_index]) & (hour <= 23) & (minute <= 59) & (second <= 59)
        days = month_starts[month_index] + (day - 1)
        seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
        micros = seconds * 1_000_000
        if count == n and ok.all():
            shape[:] = shape_id
            local[:] = micros
        else:
            rows = np.flatnonzero(candidates)[ok]
            shape[rows] = shape_id
            local[rows] = micros[ok]
    return shape, local


_HOUR_US = 3_600_000_000


def _localize_pandas(naive_us: np.ndarray, tz: str) -> np.ndarray:
    naive = pd.Series(naive_us.astype("datetime64[us]"))
    local = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
    return local.dt.tz_convert("UTC").astype("datetime64[us, UTC]").array.asi8


def _localize(naive_us: np.ndarray, tz: str) -> np.ndarray:
    """Local wall times -> UTC (int64 microseconds) by pandas' rules: autumn's repeated hour is the first
    (summer time), spring's missing hour moves forward to the first valid time.

    pandas localizes the first and the last microsecond of every local hour in the span once; an hour whose
    two ends are 1 h - 1 us apart in UTC as well is shifted as a whole; the values in any other hour (a
    clock change) are localized by pandas one by one."""
    if not len(naive_us):
        return naive_us.astype(np.int64)
    hours = np.floor_divide(naive_us, _HOUR_US)
    first, last = int(hours.min()), int(hours.max())
    if last - first > max(4 * len(naive_us), 24 * 366):
        return _localize_pandas(naive_us, tz)
    starts = np.arange(first, last + 1, dtype=np.int64) * _HOUR_US
    utc_starts = _localize_pandas(starts, tz)
    utc_ends = _localize_pandas(starts + (_HOUR_US - 1), tz)
    regular = (utc_ends - utc_starts) == _HOUR_US - 1
    slot = hours - first
    result = naive_us + (utc_starts - starts)[slot]
    odd = ~regular[slot]
    if odd.any():
        result[odd] = _localize_pandas(naive_us[odd], tz)
    return result


def _parse_format_pandas(text: pd.Series, fmt: str, tz: str) -> pd.Series:
    """One format of the reference algorithm (pandas), as datetime64[us, UTC] (NaT where it does not parse)."""
    aware = "%z" in fmt or fmt == "ISO8601"
    parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=aware and fmt != "ISO8601")
    if fmt == "ISO8601":
        # ISO text may or may not carry an offset; parse both kinds apart.
        has_offset = text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True)
        with_offset = pd.to_datetime(text[has_offset], format=fmt, errors="coerce", utc=True)
        naive = pd.to_datetime(text[~has_offset], format=fmt, errors="coerce")
        local = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="shift_forward")
        parsed = pd.concat([with_offset, local.dt.tz_convert("UTC")]).reindex(text.index)
    elif not aware:
        parsed = parsed.dt.tz_localize(
            tz, ambiguous=np.ones(len(parsed), dtype=bool), nonexistent="shift_forward"
        ).dt.tz_convert("UTC")
    return parsed.astype("datetime64[us, UTC]")


def _parse_times_arrow(values: pa.Array, formats: tuple[str, ...], tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(UTC microseconds, NaT as int64 min; day-only flags) of stripped text values."""
    n = len(values)
    nat = np.iinfo(np.int64).min
    result = np.full(n, nat, dtype=np.int64)
    todo = ~_np_bool(pc.equal(values, ""))
    shape, local = _shaped_local_times(values) if todo.any() else (np.zeros(n, np.int8), None)
    shaped_hit = np.zeros(n, dtype=bool)
    text = None

    def pandas_text(rows: np.ndarray) -> pd.Series:
        nonlocal text
        if text is None:
            text = _strings(values)
        return text[rows]

    for fmt in (*formats, "ISO8601"):
        if not todo.any():
            break
        if fmt == "ISO8601" or fmt in _FORMAT_SHAPE:
            hit = todo & (shape > 0) if fmt == "ISO8601" else todo & (shape == _FORMAT_SHAPE[fmt])
            slow = todo & (shape == 0)
            if fmt == "ISO8601" and slow.any() and hit.any():
                # The reference parses all remaining values at once here first (and fails on naive and
                # offset times mixed): do the same so that a file it refused with an error still is.
                pd.to_datetime(pandas_text(todo), format=fmt, errors="coerce", utc=False)
            shaped_hit |= hit
            todo &= ~hit
        else:
            slow = todo
        if slow.any():
            parsed = _parse_format_pandas(pandas_text(slow), fmt, tz)
            ok = parsed.notna().to_numpy()
            rows = np.flatnonzero(slow)[ok]
            result[rows] = parsed.array.asi8[ok]
            todo[rows] = False
    if shaped_hit.any():
        result[shaped_hit] = _localize(local[shaped_hit], tz)
    serial_with_time = None
    if todo.any():
        # Excel serial dates (a date cell exported as its number, e.g. 46083.5 = 2026-03-01 12:00 local):
        # days since 1899-12-30, in local time. Only plausible serials (1954..2119) count as dates.
        rows = np.flatnonzero(todo)
        serial = pd.to_numeric(pandas_text(rows).str.replace(",", ".", regex=False), errors="coerce")
        serial = serial[(serial >= EXCEL_SERIAL_RANGE[0]) & (serial <= EXCEL_SERIAL_RANGE[1])]
        if len(serial):
            naive = pd.Timestamp("1899-12-30") + pd.to_timedelta((serial * 86400).round(), unit="s")
            local_serial = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool),
                                                nonexistent="shift_forward")
            utc = local_serial.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
            positions = serial.index.to_numpy()
            result[positions] = utc.array.asi8
            serial_with_time = positions[((serial % 1) != 0).to_numpy()]
    parsed = result != nat
    is_day = (pc.utf8_length(values).to_numpy(zero_copy_only=False) <= 10) & parsed
    if serial_with_time is not None and len(serial_with_time):
        is_day[serial_with_time] = False  # 46082.5 is a date and a time of day
    return result, is_day


def _utc_series(micros: np.ndarray, index: pd.Index | None = None) -> pd.Series:
    return pd.Series(micros.view("datetime64[us]"), index=index).dt.tz_localize("UTC")


def parse_times(text: pd.Series, formats: tuple[str, ...], tz: str) -> tuple[pd.Series, pd.Series]:
    """Parse with the contract's formats, then ISO 8601. Local times are in ``tz``; returns UTC and day flags.

    On the autumn night when clocks go back, a local time such as 02:30 happens twice; we take the first
    (summer time) so that the incident lands in the right ISO week whichever it was. In spring, a local time
    that does not exist (02:30) is moved forward to the first valid time. Excel serial day numbers (local
    time) are dates too.
    """
    values = pa.array(text.astype("string").array, _STRING) if len(text) else pa.array([], _STRING)
    micros, is_day = _parse_times_arrow(pc.fill_null(values, ""), formats, tz)
    return _utc_series(micros, text.index), pd.Series(is_day, index=text.index)


def to_canonical(
    raw: RawDelivery,
    contract: Contract,
    received_at: datetime,
    municipality_names: set[str] | None = None,
    canonical_personnummer=None,
) -> pd.DataFrame:
    """The canonical frame for one delivery: typed fields plus one status column per rule.

    ``canonical_personnummer`` is privacy's canonicaliser (passed in so this module stays free of keys).
    Columns are computed on Arrow arrays and numpy in bulk and become pandas columns once, at the end.
    """
    found = resolve_columns(raw.header, contract)
    n = raw.table.num_rows
    source_row = np.asarray(raw.source_rows, dtype=np.int64)
    out: dict[str, object] = {"source_row": source_row}
    shared: dict = {}  # one "ok" array for every status column that is all "ok"

    def text(field: str) -> pa.Array | None:
        return _text(raw, contract, field, found)

    # record id: present, and once per file (the highest revision wins; see revision below).
    record_id = text("record_id")
    if contract.record_id_missing == "row_hash" and pc.any(pc.equal(record_id, "")).as_py():
        # A blank id (police.uk anti-social-behaviour rows) gets one derived from the row's whole content and
        # its ordinal among identical rows: the same rows in any order give the same ids (CONTRACTS.md).
        idx = pd.RangeIndex(n)
        ids = _strings(record_id)
        blank = ids.eq("")
        rows = raw.table.to_pandas().astype("string").fillna("")
        rows.index = idx
        hashed = pd.util.hash_pandas_object(rows[blank], index=False).map("{:016x}".format)
        ordinal = hashed.groupby(hashed).cumcount().astype(str)
        ids = ids.copy()
        ids[blank] = ("row:" + hashed + "." + ordinal).astype("string")
        record_id = pa.array(ids.array, pa.string())
    missing_id = _np_bool(pc.equal(record_id, ""))
    record_id_or_null = _or_null(record_id)
    out["record_id"] = _strings(record_id_or_null)
    record_status = missing_id.astype(np.int8)  # 0 ok, 1 missing, 2 repeated_in_file

    revision_text = text("revision")
    if revision_text is None:
        revision = np.ones(n, dtype=np.int64)
        out["revision"] = revision
        out["revision_status"] = _codes(("ok",), np.zeros(n, np.int8), shared=shared)
    else:
        numbers = _parse_numbers_arrow(revision_text, ".")
        revision = pd.Series(numbers).fillna(1).astype("int64").to_numpy()
        with np.errstate(invalid="ignore"):
            bad = ~_np_bool(pc.equal(revision_text, "")) & (np.isnan(numbers) | (np.remainder(numbers, 1) != 0))
        out["revision"] = revision
        out["revision_status"] = _codes(("ok", "not_a_whole_number"), bad.astype(np.int8), shared=shared)

    # The same record id more than once: the highest revision wins, then the first row.
    if n and _may_repeat(record_id_or_null):
        codes = pc.dictionary_encode(record_id_or_null).indices
        codes = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        present = codes >= 0
        counts = np.bincount(codes[present]) if present.any() else np.zeros(0, np.int64)
        if len(counts) and counts.max() > 1:
            rows = np.flatnonzero(present & (counts[np.where(present, codes, 0)] > 1))
            rank = np.unique(revision[rows], return_inverse=True)[1].reshape(-1)
            order = np.lexsort((source_row[rows], -rank, codes[rows]))  # stable: ties keep row order
            grouped = codes[rows][order]
            later = np.concatenate(([False], grouped[1:] == grouped[:-1]))
            record_status[rows[order[later]]] = 2
    out["record_id_status"] = _codes(("ok", "missing", "repeated_in_file"), record_status, shared=shared)
    out = {k: out[k] for k in ("source_row", "record_id", "record_id_status", "revision", "revision_status")}

    # When.
    tz = contract.timezone
    limit = pd.Timestamp(received_at + FUTURE_TOLERANCE)
    limit_us = None
    if limit.tzinfo is not None:
        since_epoch = (received_at + FUTURE_TOLERANCE) - datetime(1970, 1, 1, tzinfo=timezone.utc)
        limit_us = (since_epoch.days * 86400 + since_epoch.seconds) * 1_000_000 + since_epoch.microseconds
    times: dict[str, np.ndarray] = {}
    day_only = np.zeros(n, dtype=bool)
    nat = np.iinfo(np.int64).min
    for field in ("occurred_from", "occurred_to", "reported_at"):
        values = text(field)
        if values is None:
            times[field] = np.full(n, nat, dtype=np.int64)
            out[field] = _utc_series(times[field])
            out[f"{field}_status"] = _codes(("ok",), np.zeros(n, np.int8), shared=shared)
            continue
        spec = contract.columns[field]
        micros, is_day = _parse_times_arrow(values, spec.formats, tz)
        times[field] = micros
        out[field] = _utc_series(micros)
        empty = _np_bool(pc.equal(values, ""))
        missing = micros == nat
        status = np.where(~empty & missing, 1, 0).astype(np.int8)  # 1 not_a_date
        if field == "occurred_from":
            status[empty] = 2  # missing
            if limit_us is None:
                future = (out[field] > limit).fillna(False).to_numpy(dtype=bool)
            else:
                future = ~missing & (micros > limit_us)
            # A date pandas reads but the warehouse's calendar does not hold (e.g. 1850, a typo for 1950).
            status[~missing & ((micros < _YEARS_US[0]) | (micros >= _YEARS_US[1]))] = 4
            status[future] = 3
            day_only = is_day
        out[f"{field}_status"] = _codes(("ok", "not_a_date", "missing", "in_the_future", "year_outside_1900_2199"),
                                        status, shared=shared)
    # occurred_to before occurred_from is a Great Expectations column-pair rule (validate.py).
    occurred_to, occurred_from = times["occurred_to"], times["occurred_from"]
    has_to = (occurred_to != nat) & ((occurred_to != occurred_from) | (occurred_from == nat))
    precision = np.where(has_to, 0, np.where(day_only, 1, 2)).astype(np.int8)
    out["time_precision"] = _codes(TIME_PRECISIONS, precision, na_value=np.nan, shared=shared)

    # What.
    partner_category = text("category")
    out["partner_category"] = _strings(_or_null(partner_category))
    if contract.columns["category"].value is not None:
        category = partner_category
    else:
        category = _mapped(partner_category, contract.category_map)
    out["category"] = _strings(category)
    category_status = np.where(_np_bool(pc.is_null(category)), 1, 0).astype(np.int8)
    category_status[_np_bool(pc.equal(partner_category, ""))] = 2
    out["category_status"] = _codes(("ok", "unknown_value", "missing"), category_status, shared=shared)
    place = text("place_type")
    if place is None:
        out["place_type"] = np.full(n, None, dtype=object)
    elif contract.columns["place_type"].value is not None:
        out["place_type"] = _strings(place)
    else:
        mapped = pc.fill_null(_mapped(place, contract.place_type_map), "other")
        out["place_type"] = _strings(pc.if_else(pc.equal(place, ""), pa.scalar(None, mapped.type), mapped))

    # Where: coordinates are checked against Sweden's extent; placing happens after validation.
    not_a_number = np.zeros(n, dtype=bool)
    for field in ("latitude", "longitude", "sweref99_n", "sweref99_e"):
        values = text(field)
        if values is None:
            out[field] = np.full(n, np.nan)
            continue
        numbers = _parse_numbers_arrow(values, contract.decimal)
        out[field] = numbers
        not_a_number |= ~_np_bool(pc.equal(values, "")) & np.isnan(numbers)
    latlon = text("latlon")
    if latlon is not None:
        latlon = _strings(latlon)
        parts = latlon.str.split(",", n=1, expand=True).reindex(columns=[0, 1]).fillna("")
        lat = pd.to_numeric(parts[0].str.strip().where(parts[0].ne(""), None), errors="coerce")
        lon = pd.to_numeric(parts[1].str.strip().where(parts[1].ne(""), None), errors="coerce")
        out["latitude"] = pd.Series(out["latitude"]).fillna(lat).to_numpy()
        out["longitude"] = pd.Series(out["longitude"]).fillna(lon).to_numpy()
        not_a_number |= (latlon.ne("") & (lat.isna() | lon.isna())).to_numpy(dtype=bool)
    # Sweden's extent is a Great Expectations range rule on these columns (validate.py).
    out["coordinates_status"] = _codes(("ok", "not_a_number"), not_a_number.astype(np.int8), shared=shared)
    for field in ("address", "area_code"):
        values = text(field)
        out[field] = np.full(n, None, dtype=object) if values is None else _strings(_or_null(values))

    municipality = text("municipality")
    municipality_status = np.zeros(n, dtype=np.int8)
    if municipality is not None and municipality_names:
        names = list(municipality_names)
        if all(isinstance(name, str) for name in names):
            known = _np_bool(pc.is_in(municipality, value_set=pa.array(names, municipality.type)))
        else:
            known = _strings(municipality).isin(municipality_names).to_numpy(dtype=bool)
        other = ~_np_bool(pc.equal(municipality, "")) & ~known
        municipality_status[other] = 1
        # A county ("Örebro län"): the event may be anywhere in the county, so it cannot be counted for the
        # municipality; quarantined with its own code so receipts and `est quarantine list` tell it apart.
        municipality_status[other & _np_bool(pc.ends_with(municipality, " län"))] = 2
    out["municipality_status"] = _codes(
        ("ok", "another_municipality", "county_level_only"), municipality_status, shared=shared
    )

    # Who: personnummer are canonicalised now and keyed later; the clear value never leaves this frame.
    person = text("person_id")
    if person is None or canonical_personnummer is None:
        out["person_id"] = np.full(n, None, dtype=object)
        out["person_id_status"] = _codes(("ok",), np.zeros(n, np.int8), shared=shared)
    else:
        canonical, status = canonical_personnummer(_strings(_or_null(person)))
        out["person_id"] = pd.Series(canonical, index=pd.RangeIndex(n))
        status = pd.Series(status, index=pd.RangeIndex(n)).astype("string")
        out["person_id_status"] = status.mask(status.isin(["valid", "missing"]), "ok")

    description = text("description")
    out["description"] = np.full(n, None, dtype=object) if description is None else _strings(_or_null(description))
    return pd.DataFrame(out, index=pd.RangeIndex(n))


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

