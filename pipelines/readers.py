"""Reading a delivered file as its partner's contract says: decoding, parsing, header checks.

Everything is read as text (a personnummer or case id must never become a number: leading zeros survive);
typing happens afterwards, column by column, in bulk. A file that cannot be read at all is refused with a
`DeliveryRefused` naming the file and the reason; rows that cannot be parsed (ragged rows) are reported with
their line numbers and end in quarantine, never silently skipped.
"""

from __future__ import annotations

import codecs
import functools
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines.contracts import Contract

# A delivery larger than this is refused before parsing (RELIABILITY.md: refuse before parsing); the same
# limit bounds what a compressed delivery may expand to.
MAX_DELIVERY_BYTES = 2 * 1024**3
# A gzip delivery may expand to at most this many times its compressed size: the polisen.se archive expands
# about 7 times (JSON lines), spreadsheets and CSV about 3-10 times; a compression bomb expands ~1,000 times.
MAX_EXPANSION_RATIO = 100
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
# Other kinds of file that are sometimes delivered under a wrong name (magic bytes -> what it is).
OTHER_MAGIC = {
    b"%PDF": "a PDF document",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office (.xls) file",
    b"BZh": "a bzip2 archive",
    b"\xfd7zXZ": "an xz archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}


class DeliveryRefused(Exception):
    """The whole file is refused: structurally broken, wrong kind, or a header the contract can't use."""


@dataclass
class RawDelivery:
    """A delivered file as a table of text columns, plus what could not be parsed."""

    table: pa.Table  # every column pa.string(); one row per parsed data record
    source_rows: np.ndarray  # 1-based data-row number of each table row (the header is not a row)
    encoding: str
    header: list[str]
    broken_rows: list[tuple[int, str]] = field(default_factory=list)  # (data row, reason)
    rows_in: int = 0  # every data record in the file, parsed or broken
    notes: list[str] = field(default_factory=list)  # what the partner should know (aliases used, gzip, ...)


def detect_encoding(head: bytes, declared: str) -> str:
    """The file's encoding: a byte-order mark always wins (Excel writes UTF-16 and UTF-8 with BOM)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if declared != "detect":
        return declared
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still UTF-8.
        if exc.start >= len(head) - 3:
            return "utf-8"
        return "windows-1252"


def decode(data: bytes, encoding: str, file_name: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DeliveryRefused(
            f"{file_name}: not valid {encoding} at line {line} (byte {exc.start}); "
            "the contract's file.encoding may be wrong"
        ) from exc


def sniff_delimiter(header_line: str, declared: str) -> str:
    if declared != "detect":
        return "\t" if declared in ("\\t", "tab") else declared
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    return max(counts, key=counts.get)


def _header_names(first_line: str, delimiter: str) -> list[str]:
    header = next(iter(pacsv.read_csv(
        io.BytesIO(first_line.encode("utf-8") + b"\n"),
        read_options=pacsv.ReadOptions(autogenerate_column_names=True, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
        convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
    ).to_pylist()), {})
    return [str(v).strip() for v in header.values()]


def one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The column as one Arrow array: a single chunk as it is. ``combine_chunks`` copies even a single chunk
    (about 17 ms for a 250,000-row staged file's columns here, on the loading thread)."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _text_options(width: int, column_type: pa.DataType = pa.string()) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types={f"c{i}": column_type for i in range(width)},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def _read_csv(data: bytes, contract: Contract, file_name: str) -> RawDelivery:
    """Read a CSV delivery: the fast path when it applies, else the careful one (same result either way)."""
    raw = _read_csv_fast(data, contract, file_name)
    return raw if raw is not None else _read_csv_careful(data, contract, file_name)


# Bytes that are whitespace both as ASCII bytes and as str (str.strip() also strips \x1c-\x1f and Unicode
# spaces, so a first "other" byte below 0x80 outside those proves the text is not blank).
_BLANK_BYTES = re.compile(rb"[^ \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f]")


def _read_csv_fast(data: bytes, contract: Contract, file_name: str) -> RawDelivery | None:
    """The common case in bulk: UTF-8 parsed straight from the bytes (no decode/encode round trip; pyarrow
    checks UTF-8 itself) or Windows-1252 parsed as bytes and transcoded column by column, multithreaded.

    Returns None whenever the careful single-threaded read might say something else: another encoding,
    ragged rows (their physical row numbers need the careful parse), bytes that are not valid in the
    encoding (the careful read names the line), an unusual delimiter or an odd start of the file. The
    careful read then runs from scratch, so every refusal and every broken row is reported exactly as before.
    """
    encoding = detect_encoding(data[:65536], contract.encoding)
    if encoding not in ("utf-8", "utf-8-sig", "windows-1252"):
        return None
    start = 0  # where the text starts (after byte-order marks), without copying the bytes
    if encoding == "utf-8-sig":
        # The codec drops one byte-order mark and the careful read drops a second one.
        for _ in range(2):
            if data.startswith(codecs.BOM_UTF8, start):
                start += len(codecs.BOM_UTF8)
    if _BLANK_BYTES.search(data, start) is None:
        return None  # blank: the careful read says so
    newline = data.find(b"\n", start)
    first = (data[start:] if newline < 0 else data[start:newline]).rstrip(b"\r")
    codec = "utf-8" if encoding.startswith("utf-8") else encoding
    try:
        first_line = first.decode(codec)
    except UnicodeDecodeError:
        return None
    if not first_line.strip():
        return None  # a blank first line: the careful read decides
    delimiter = sniff_delimiter(first_line, contract.delimiter)
    if len(delimiter) != 1 or not delimiter.isascii() or delimiter in "\"\r\n":
        return None
    names = _header_names(first_line, delimiter)
    width = len(names)
    single_byte = codec != "utf-8"
    body = pa.py_buffer(data).slice(start)  # read by Arrow in place: no copy, no Python file calls
    table = None
    # First without newlines_in_values: the file is cut into blocks at line ends, which is faster. Where a cut
    # falls inside a quoted value that holds a line break, the parser ends that block inside a quote and Arrow
    # raises ("parser got out of sync with chunker"), never a different table; the file is then read again
    # with newlines_in_values, the way it always was (as is any file this read refuses for another reason).
    for newlines_in_values in (False, True):
        try:
            table = pacsv.read_csv(
                pa.BufferReader(body),
                read_options=pacsv.ReadOptions(
                    column_names=[f"c{i}" for i in range(width)], skip_rows=1, use_threads=True,
                    block_size=1 << 20,
                ),
                # No invalid-row handler: a ragged row raises, and the careful read reports it with its number.
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=newlines_in_values),
                convert_options=_text_options(width, pa.binary() if single_byte else pa.string()),
            )
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    if table is None:
        return None
    if single_byte:
        columns = []
        for column in table.columns:
            converted = _transcode_column(column, codec)
            if converted is None:
                return None
            columns.append(converted)
        table = pa.table(columns, names=[f"c{i}" for i in range(width)])
    table = table.rename_columns(names)
    _refuse_runaway_quotes(table, delimiter, width, file_name)
    return RawDelivery(table, np.arange(1, table.num_rows + 1), encoding, names, [], table.num_rows)


def _string_view(chunk: pa.Array, data: pa.Buffer | None = None, offsets: pa.Buffer | None = None,
                 offset: int | None = None) -> pa.Array:
    buffers = chunk.buffers()
    return pa.Array.from_buffers(
        pa.string(), len(chunk), [buffers[0], offsets or buffers[1], data or buffers[2]],
        offset=chunk.offset if offset is None else offset,
    )


def _value_bytes(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets of each value, the bytes they index) of a binary/string array, without copying."""
    buffers = chunk.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[chunk.offset: chunk.offset + len(chunk) + 1]
    data = (np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None and buffers[2].size
            else np.zeros(0, dtype=np.uint8))
    return offsets.astype(np.int64), data


@functools.cache
def _utf8_extra(codec: str) -> np.ndarray:
    """For each byte of a single-byte codec: how many more bytes its character takes in UTF-8 (-1: undefined)."""
    extra = np.zeros(256, dtype=np.int64)
    for byte in range(128, 256):
        try:
            extra[byte] = len(bytes([byte]).decode(codec).encode("utf-8")) - 1
        except UnicodeDecodeError:
            extra[byte] = -1
    return extra


def _transcode_chunk(chunk: pa.Array, codec: str) -> pa.Array | None:
    """A binary array in a single-byte codec as a UTF-8 string array (None: a byte the codec lacks)."""
    if len(chunk) == 0:
        return pa.array([], pa.string())
    offsets, data = _value_bytes(chunk)
    blob = data[offsets[0]: offsets[-1]]
    high = np.flatnonzero(blob >= 0x80)
    if not len(high):
        return _string_view(chunk)  # plain ASCII is already UTF-8
    extra = _utf8_extra(codec)[blob[high]]
    if (extra < 0).any():
        return None
    try:
        utf8 = blob.tobytes().decode(codec).encode("utf-8")
    except UnicodeDecodeError:
        return None
    # Each value's start moves by the extra UTF-8 bytes of the non-ASCII bytes before it.
    before = np.concatenate(([0], np.cumsum(extra)))
    relative = offsets - offsets[0]
    moved = relative + before[np.searchsorted(high, relative, side="left")]
    if moved[-1] != len(utf8) or moved[-1] >= 2**31:
        return None
    validity = chunk.buffers()[0]
    if validity is not None:
        return None  # values are never null here (strings_can_be_null=False)
    return pa.Array.from_buffers(
        pa.string(), len(chunk), [None, pa.py_buffer(moved.astype(np.int32)), pa.py_buffer(utf8)]
    )


# A column whose first values hold at most one distinct value in this many is transcoded through its
# dictionary (categories, places); any other column as one blob.
_DICTIONARY_SAMPLE = 20_000
_DICTIONARY_SHARE = 4


def _transcode_column(column: pa.ChunkedArray, codec: str) -> pa.ChunkedArray | None:
    """A binary column in a single-byte codec as UTF-8 strings (None: a byte the codec lacks), in one piece
    (in pieces of the parser's blocks if very large): a plain ASCII column is only relabelled; one with few
    distinct values is transcoded once per value, any other as one blob."""
    if not any(len(chunk) and _holds_high_byte(chunk) for chunk in column.chunks):
        return pa.chunked_array([_string_view(chunk) for chunk in column.chunks], pa.string())
    pieces = [column.combine_chunks()] if column.nbytes < 2**29 else column.chunks
    converted = [_transcode_array(piece, codec) for piece in pieces]
    if any(piece is None for piece in converted):
        return None
    return pa.chunked_array(converted, pa.string())


def _transcode_array(values: pa.Array, codec: str) -> pa.Array | None:
    sample = values.slice(0, _DICTIONARY_SAMPLE)
    if len(pc.unique(sample)) * _DICTIONARY_SHARE <= len(sample):
        encoded = values.dictionary_encode()
        if len(encoded.dictionary) * _DICTIONARY_SHARE <= len(values):
            dictionary = _transcode_chunk(encoded.dictionary, codec)
            return None if dictionary is None else dictionary.take(encoded.indices)
    return _transcode_chunk(values, codec)


def _holds_high_byte(chunk: pa.Array) -> bool:
    offsets, data = _value_bytes(chunk)
    return bool((data[offsets[0]: offsets[-1]] >= 0x80).any())


def _read_csv_careful(data: bytes, contract: Contract, file_name: str) -> RawDelivery:
    encoding = detect_encoding(data[:65536], contract.encoding)
    text = decode(data, encoding, file_name)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        return RawDelivery(pa.table({}), np.array([], dtype=np.int64), encoding, [], [], 0)
    newline = text.find("\n")
    first_line = (text if newline < 0 else text[:newline]).rstrip("\r")
    delimiter = sniff_delimiter(first_line, contract.delimiter)
    names = _header_names(first_line, delimiter)
    broken: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # Physical line numbers (single-threaded parse); data row = line - 1 for the header.
        data_row = (row.number or 0) - 1
        broken.append((data_row, f"expected {row.expected_columns} fields, found {row.actual_columns}"))
        return "skip"

    utf8 = text.encode("utf-8")
    del text
    table = pacsv.read_csv(
        io.BytesIO(utf8),
        read_options=pacsv.ReadOptions(
            column_names=[f"c{i}" for i in range(len(names))], skip_rows=1, use_threads=False,
            block_size=1 << 24,
        ),
        # Quoted fields may hold line breaks (descriptions): one record, one data row. pyarrow's row numbers
        # are then record numbers (header = 1), so data row = number - 1 still holds.
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, invalid_row_handler=on_invalid, newlines_in_values=True
        ),
        convert_options=_text_options(len(names)),
    )
    table = table.rename_columns(names)
    _refuse_runaway_quotes(table, delimiter, len(names), file_name)
    rows_in = table.num_rows + len(broken)
    # Data-row numbers of parsed rows: every row number not taken by a broken row, in order.
    keep = np.ones(rows_in, dtype=bool)
    taken = np.array([r for r, _ in broken], dtype=np.int64)
    keep[taken[(taken >= 1) & (taken <= rows_in)] - 1] = False
    source_rows = np.flatnonzero(keep) + 1
    return RawDelivery(table, source_rows, encoding, names, sorted(broken), rows_in)


def _refuse_runaway_quotes(table: pa.Table, delimiter: str, width: int, file_name: str) -> None:
    """Refuse a file where a quote that is never closed swallowed the following rows into one field.

    A legitimate multi-line field (a description with line breaks) is one record; an unbalanced quote makes
    the parser read whole following records into the field, so they would silently vanish from the count.
    Only values holding a line break are looked at (found in bulk), and a line inside a field that has as many
    delimiters as a whole record is taken as a swallowed row."""
    if width < 2:
        return
    for number, column in enumerate(table.columns):
        if not _holds_byte(column, 0x0A):
            continue  # no line break anywhere in the column (checked on its bytes, without a kernel per value)
        has_break = pc.match_substring(column, "\n")
        if not pc.any(has_break).as_py():
            continue
        rows = np.flatnonzero(has_break.to_numpy(zero_copy_only=False))
        values = pc.filter(column, has_break).to_pylist()
        for row, value in zip(rows, values):
            if any(line.count(delimiter) >= width - 1 for line in value.split("\n")[1:]):
                raise DeliveryRefused(
                    f"{file_name}: a quote in data row {int(row) + 1} (column {table.column_names[number]!r}) is "
                    "never closed and swallows the following rows; check the file's quoting"
                )


def _holds_byte(column: pa.ChunkedArray, byte: int) -> bool:
    """Whether any value of a string column contains ``byte`` (a quick look at the data buffers)."""
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        offsets, data = _value_bytes(chunk)
        if (data[offsets[0]: offsets[-1]] == byte).any():
            return True
    return False


def _read_xlsx(data: bytes, contract: Contract, file_name: str) -> RawDelivery:
    import openpyxl  # imported here: only schools' deliveries need it

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise DeliveryRefused(f"{file_name}: not a readable .xlsx workbook ({type(exc).__name__})") from exc
    sheet = contract.sheet
    worksheet = workbook.worksheets[sheet] if isinstance(sheet, int) else workbook[sheet]
    rows = worksheet.iter_rows(values_only=True)
    header_row = next(rows, None)
    if header_row is None:
        return RawDelivery(pa.table({}), np.array([], dtype=np.int64), "xlsx", [], [], 0)
    names = [str(v).strip() if v is not None else "" for v in header_row]
    while names and names[-1] == "":
        names.pop()
    columns: list[list[str]] = [[] for _ in names]
    for values in rows:
        if values is None or all(v is None for v in values):
            continue
        for i in range(len(names)):
            value = values[i] if i < len(values) else None
            # Excel cells come typed: dates as datetime (ISO text keeps them exact), numbers as floats.
            if value is None:
                text = ""
            elif hasattr(value, "isoformat"):
                text = value.isoformat(sep=" ")
            elif isinstance(value, float) and value.is_integer():
                text = str(int(value))
            else:
                text = str(value)
            columns[i].append(text)
    workbook.close()
    table = pa.table({name: pa.array(col, pa.string()) for name, col in zip(names, columns)})
    return RawDelivery(table, np.arange(1, table.num_rows + 1), "xlsx", names, [], table.num_rows)


def _flatten(record: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = "" if value is None else str(value)
    return flat


def _read_polisen_json(data: bytes, contract: Contract, file_name: str) -> RawDelivery:
    """The polisen.se events API payload: a JSON array of event records (or one record per line)."""
    text = decode(data, detect_encoding(data[:4096], contract.encoding), file_name).lstrip("\ufeff")
    if not text.strip():
        return RawDelivery(pa.table({}), np.array([], dtype=np.int64), "utf-8", [], [], 0)
    try:
        records = json.loads(text)
    except json.JSONDecodeError:
        try:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise DeliveryRefused(f"{file_name}: not JSON (line {exc.lineno}: {exc.msg})") from exc
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise DeliveryRefused(f"{file_name}: expected a JSON array of event records")
    flat = [_flatten(r) if isinstance(r, dict) else {} for r in records]
    names: list[str] = []
    for row in flat:
        for key in row:
            if key not in names:
                names.append(key)
    table = pa.table({name: pa.array([row.get(name, "") for row in flat], pa.string()) for name in names})
    broken = [(i + 1, "not an event record (JSON object)") for i, r in enumerate(records) if not isinstance(r, dict)]
    keep = [i for i, r in enumerate(records) if isinstance(r, dict)]
    if broken:
        table = table.take(pa.array(keep))
    return RawDelivery(table, np.array(keep, dtype=np.int64) + 1, "utf-8", names, broken, len(records))


READERS = {"csv": _read_csv, "xlsx": _read_xlsx, "polisen_json": _read_polisen_json}


def gunzip_bounded(data: bytes, file_name: str, max_bytes: int = MAX_DELIVERY_BYTES,
                   max_ratio: int = MAX_EXPANSION_RATIO) -> bytes:
    """Expand a gzip delivery, refusing it as soon as it grows past the size or ratio limit (a bomb is
    never expanded in full) and when it is truncated or corrupt."""
    import zlib

    limit = min(max_bytes, max(len(data), 1) * max_ratio)
    out = bytearray()
    pending = data
    while pending:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one gzip member (concatenated members loop)
        chunk_in = pending
        while True:
            try:
                piece = inflater.decompress(chunk_in, 1 << 20)
            except zlib.error as exc:
                raise DeliveryRefused(f"{file_name}: corrupt gzip archive ({exc})") from exc
            out += piece
            if len(out) > limit:
                raise DeliveryRefused(
                    f"{file_name}: gzip archive expands past the limit of {limit} bytes "
                    f"(more than {max_ratio} times its {len(data)} bytes, or over {max_bytes}): refused as a "
                    "possible compression bomb"
                )
            chunk_in = inflater.unconsumed_tail
            if inflater.eof or not chunk_in and not piece:
                break
        if not inflater.eof:
            raise DeliveryRefused(f"{file_name}: truncated gzip archive (the file ends inside the archive)")
        pending = inflater.unused_data
    return bytes(out)


def unpack(data: bytes, contract: Contract, file_name: str) -> tuple[bytes, list[str]]:
    """The delivery's bytes after checking it is what its contract and name say: refused before parsing
    when it is another kind of file (a zip named .csv, a PDF), and expanded (bounded) when gzip."""
    notes: list[str] = []
    if data.startswith(GZIP_MAGIC):
        data = gunzip_bounded(data, file_name)
        notes.append("gzip archive, expanded")
    if contract.file_type == "xlsx":
        if data and not data.startswith(b"PK"):
            raise DeliveryRefused(f"{file_name}: not an .xlsx file (an .xlsx file is a zip archive)")
        return data, notes
    if data.startswith(ZIP_MAGIC):
        kind = "an .xlsx workbook" if b"xl/" in data[:4096] else "a zip archive"
        raise DeliveryRefused(f"{file_name}: is {kind}, not a {contract.file_type} file as the contract says")
    for magic, kind in OTHER_MAGIC.items():
        if data.startswith(magic):
            raise DeliveryRefused(f"{file_name}: is {kind}, not a {contract.file_type} file as the contract says")
    return data, notes


def read_delivery(path: Path, contract: Contract, content: bytes | None = None) -> RawDelivery:
    """Read one delivered file as the contract says, or refuse it whole with a reason naming the file.

    ``content``: the file's bytes when the caller has read them already (ingest.read_once)."""
    size = path.stat().st_size if content is None else len(content)
    if size > MAX_DELIVERY_BYTES:
        raise DeliveryRefused(f"{path.name}: {size} bytes is more than the limit of {MAX_DELIVERY_BYTES}")
    data, notes = unpack(path.read_bytes() if content is None else content, contract, path.name)
    raw = READERS[contract.file_type](data, contract, path.name)
    raw.notes.extend(notes)
    check_header(raw, contract, path.name)
    return raw


def resolve_columns(header: list[str], contract: Contract) -> dict[str, str]:
    """Map each source column the contract names to the header name found, accepting listed aliases."""
    found: dict[str, str] = {}
    present = set(header)
    for spec in contract.columns.values():
        if spec.source is None:
            continue
        for candidate in (spec.source, *contract.aliases.get(spec.source, ())):
            if candidate in present:
                found[spec.source] = candidate
                break
    return found


def check_header(raw: RawDelivery, contract: Contract, file_name: str) -> None:
    """Refuse a file whose header lacks a required column, naming what is missing and what is unknown."""
    if raw.rows_in == 0 and not raw.header:
        return  # empty delivery: nothing delivered, a clean receipt
    found = resolve_columns(raw.header, contract)
    expected = set(contract.source_columns())
    for aliases in contract.aliases.values():
        expected.update(aliases)
    unknown = [h for h in raw.header if h not in expected]
    missing_required = [c for c in contract.required_source_columns() if c not in found]
    if missing_required:
        missing_optional = [c for c in contract.source_columns() if c not in found and c not in missing_required]
        def names(columns: list[str]) -> str:
            return ", ".join(repr(c) for c in columns)

        raise DeliveryRefused(
            f"{file_name}: the header has changed: required column(s) missing: {names(missing_required)}"
            + (f"; optional column(s) missing: {names(missing_optional)}" if missing_optional else "")
            + f"; unknown column(s): {names(unknown) if unknown else 'none'}"
            + " (rename them back, or list the new names under aliases: in the contract)"
        )
    for source, header in found.items():
        if source != header:
            raw.notes.append(f"column {source!r} read from {header!r} (an alias in the contract)")
    missing_optional = [c for c in contract.source_columns() if c not in found]
    if missing_optional:
        raw.notes.append(f"optional column(s) missing, left empty: {', '.join(missing_optional)}")
