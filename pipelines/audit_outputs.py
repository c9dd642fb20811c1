"""`est audit-outputs DIR...`: prove that nothing personal or secret left the restricted layer.

Scans every file under the given folders (reports, maps, CSV tables, receipts, JSON, PDF text, Airflow and task
logs) for what must never be there (PRIVACY.md, issue 4 item 8):

- ``personnummer``: a personnummer or samordningsnummer in any written form (century or not, dash, plus, space,
  en dash, full-width or other Unicode digits). Candidates are found with the scrubber's pattern and then
  judged by :func:`pipelines.privacy.canonical_personnummer`: only a valid date with a passing Luhn check
  counts, so dates, times and case numbers are not findings.
- ``key``: the pseudonym master key (or one of its derived domain keys) as raw bytes, hexadecimal (either case)
  or base64 (standard or URL-safe, at any alignment inside a longer base64 text).
- ``canary``: the names (any string) listed one per line in a canaries file. CI plants them in the partners'
  free text before ingest (:func:`plant_canaries`); none may come out.
- ``url``: a reference to another host: ``http(s)://`` or a protocol-relative ``//host`` (in ``src``, ``href``,
  ``url(...)``, ``@import`` or anywhere in a text file), except :data:`ALLOWED_URLS`, which a browser never fetches
  when the file is opened (XML namespace names; Leaflet's attribution link, which is only a link).

A finding names file, line and kind and never prints the value itself: a personnummer is shown as its shape
(``NNNNNN-NNNN``), a canary by its line number in the canaries file, the key by its form only. A URL is printed
(it is not personal), cut to 100 characters.

PDF: pypdf is not installed, so the text of a PDF is taken from its content streams directly (FlateDecode
decompressed, the strings of ``Tj``/``TJ`` operators); a PDF whose fonts use custom glyph codes yields no text
that way, and the audit says so in a note instead of passing it silently. Other binary files (PNG, databases)
are checked for the raw key bytes only, with a note.
"""

from __future__ import annotations

import base64
import bisect
import csv
import html
import json
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from pipelines import privacy

# Suffixes read as text. Anything else holding a NUL byte in its first 8 KB is binary.
TEXT_SUFFIXES = {
    ".html", ".htm", ".svg", ".css", ".js", ".json", ".jsonl", ".csv", ".tsv", ".txt", ".log", ".md", ".xml",
    ".yaml", ".yml", ".ndjson",
}

# References a browser never fetches when the file is opened. Namespace names are identifiers, not addresses;
# Leaflet's attribution control writes a plain link to its own site (fetched only if a reader clicks it).
ALLOWED_URLS = (
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/1999/xhtml",
    "http://www.w3.org/XML/1998/namespace",
    "http://www.w3.org/2000/xmlns/",
    "http://www.w3.org/1998/Math/MathML",
    "https://leafletjs.com",
)

# Derived domain keys are as secret as the master key: whoever holds one can reverse that domain's pseudonyms.
KEY_DOMAINS = ("analysis", "record")

_PNR_CANDIDATE = re.compile(
    # The scrubber's personnummer shape, but not inside a word or hex string and not the decimals of a number.
    r"(?<![0-9A-Za-z])(?<!\d[.,])" + privacy._PNR_TEXT_RE.pattern.replace("(?<!\\d)", "").replace("(?!\\d)", "")
    + r"(?![0-9A-Za-z])(?![.,]\d)"
)
_URL = re.compile(r"""(?i)(?:https?:)?//[a-z0-9\-._~%{}$\[\]]+(?::\d+)?[^\s"'<>()\\`]*""")
# Where a protocol-relative //host means a fetch: src=, href=, url(, @import, srcset=.
_FETCH_CONTEXT = re.compile(
    r"""(?i)(?:src|href|srcset|action|data|poster)\s*=\s*["']?\s*$|url\(\s*["']?\s*$|@import\s+["']?\s*$"""
)


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    kind: str  # personnummer | key | canary | url
    masked: str  # what may be printed: never the personal value or the key

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}: {self.masked}"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings


# --------------------------------------------------------------------------------------------------------------
# What to look for
# --------------------------------------------------------------------------------------------------------------

def key_needles(master: bytes | None) -> dict[bytes, str]:
    """The byte strings that betray a key, each with the name of its form (never the key itself)."""
    if not master:
        return {}
    keys = {"master": bytes(master)}
    for k, older in enumerate(getattr(master, "previous", ()), 1):  # a rotated key chain: every key in it
        keys[f"previous master #{k}"] = bytes(older)
    for name, one in list(keys.items()):
        for domain in KEY_DOMAINS:
            keys[f"{domain} ({name})" if name != "master" else domain] = privacy.derive_key(one, domain).key
    needles: dict[bytes, str] = {}
    for name, key in keys.items():
        needles[key] = f"{name} key (raw bytes)"
        needles[key.hex().encode()] = f"{name} key (hex)"
        needles[key.hex().upper().encode()] = f"{name} key (HEX)"
        needles[repr(key)[2:-1].encode()] = f"{name} key (bytes repr)"
        for shift in range(3):
            for encoder, label in ((base64.b64encode, "base64"), (base64.urlsafe_b64encode, "base64url")):
                encoded = encoder(b"\0" * shift + key)
                # Characters touched by the padding prefix or by the end are not stable inside a longer text.
                start = (shift * 4 + 2) // 3 if shift else 0
                core = encoded.rstrip(b"=")[start:-2] if shift else encoded.rstrip(b"=")
                needles[core] = f"{name} key ({label})"
    return needles


def read_canaries(path: Path | None) -> list[str]:
    if path is None:
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _shape(value: str) -> str:
    return re.sub(r"\d", "N", privacy.fold_digits(value))


def _unescaped(text: str) -> str:
    """HTML entities and JSON \\uXXXX escapes undone, so an escaped personal value is found as well."""
    if "&" in text:
        text = html.unescape(text)
    if "\\u" in text:
        text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)
    return text


# --------------------------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------------------------

class _Lines:
    def __init__(self, text: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)


def scan_text(text: str, path: Path, *, needles: dict[bytes, str], canaries: list[str], urls: bool,
              line_of=None) -> list[Finding]:
    """Findings in one text. ``line_of(offset)`` maps an offset to a line number (default: count newlines)."""
    found: list[Finding] = []
    line_of = line_of or _Lines(text).line
    variants = [text]
    plain = _unescaped(text)
    if plain != text:
        variants.append(plain)  # offsets may shift a little; line numbers stay (escapes hold no newline)
    seen: set[tuple[int, str, str]] = set()

    def add(offset: int, kind: str, masked: str, source: str) -> None:
        line = line_of(offset) if source is text else _Lines(source).line(offset)
        if (line, kind, masked) not in seen:
            seen.add((line, kind, masked))
            found.append(Finding(path, line, kind, masked))

    for source in variants:
        folded = privacy.fold_digits(source)
        same_length = len(folded) == len(source)
        candidates = list(_PNR_CANDIDATE.finditer(folded))
        if candidates:
            canonical, status = privacy.canonical_personnummer(
                pd.Series([m.group(0).replace(" ", "") for m in candidates], dtype=object))
            for match, st in zip(candidates, status):
                if st == privacy.STATUS_VALID:
                    offset = match.start() if same_length else 0
                    add(offset, "personnummer", f"a personnummer written as {_shape(match.group(0))}", source)
        lowered = source.casefold()
        for number, name in enumerate(canaries, 1):
            start = lowered.find(name.casefold())
            while start >= 0:
                add(start, "canary", f"canary #{number} of the canaries file", source)
                start = lowered.find(name.casefold(), start + 1)
        for needle, form in needles.items():
            if len(needle) < 16:
                continue
            try:
                as_text = needle.decode("ascii")
            except UnicodeDecodeError:
                continue
            start = source.find(as_text)
            while start >= 0:
                add(start, "key", f"the pseudonym {form}", source)
                start = source.find(as_text, start + 1)
        if urls and source is text:
            for match in _URL.finditer(source):
                url = match.group(0)
                if not url.lower().startswith(("http:", "https:")):
                    # //host only counts where it is fetched: an attribute, url(...) or @import.
                    before = source[max(0, match.start() - 40):match.start()]
                    if not _FETCH_CONTEXT.search(before):
                        continue
                    if match.start() > 0 and source[match.start() - 1] in ":/":
                        continue
                if any(url.startswith(allowed) for allowed in ALLOWED_URLS):
                    continue
                add(match.start(), "url", f"a reference to another host: {url[:100]}", source)
    return found


def _scan_bytes_for_key(data: bytes, path: Path, needles: dict[bytes, str]) -> list[Finding]:
    found = []
    for needle, form in needles.items():
        start = data.find(needle)
        if start >= 0:
            found.append(Finding(path, data.count(b"\n", 0, start) + 1, "key", f"the pseudonym {form}"))
    return found


_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\n?endstream", re.S)
_PDF_STRING = re.compile(rb"\((?:\\.|[^\\)])*\)|<([0-9A-Fa-f\s]+)>")


def pdf_text(data: bytes) -> list[str]:
    """The text of each content stream of a PDF: strings shown by text operators, escapes undone. Crude on
    purpose (no pypdf here): enough for text written with standard fonts, which is what a leak would be."""
    texts = []
    for match in _PDF_STREAM.finditer(data):
        raw = match.group(1)
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        parts = []
        for piece in _PDF_STRING.finditer(raw):
            if piece.group(1) is not None:
                hexed = re.sub(rb"\s", b"", piece.group(1))
                try:
                    parts.append(bytes.fromhex(hexed.decode()).decode("latin-1"))
                except ValueError:
                    continue
            else:
                body = piece.group(0)[1:-1]
                body = re.sub(rb"\\([nrtbf()\\])", lambda m: {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"",
                                                               b"f": b""}.get(m.group(1), m.group(1)), body)
                body = re.sub(rb"\\([0-7]{1,3})", lambda m: bytes([int(m.group(1), 8) & 0xFF]), body)
                parts.append(body.decode("latin-1"))
        if parts:
            texts.append("".join(parts))
    return texts


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("cp1252", errors="replace")


def scan_file(path: Path, *, needles: dict[bytes, str], canaries: list[str], report: Report) -> None:
    data = path.read_bytes()
    report.files += 1
    report.findings += _scan_bytes_for_key(data, path, {n: f for n, f in needles.items() if len(n) == 32})
    suffix = path.suffix.lower()
    if suffix == ".pdf" or data[:5] == b"%PDF-":
        texts = pdf_text(data)
        if not texts:
            report.notes.append(f"{path}: no text could be read from this PDF (checked for the raw key only)")
        for number, text in enumerate(texts, 1):
            for finding in scan_text(text, path, needles=needles, canaries=canaries, urls=False,
                                     line_of=lambda _offset, n=number: n):
                report.findings.append(Finding(path, finding.line, finding.kind, finding.masked + " (PDF stream)"))
        return
    if suffix not in TEXT_SUFFIXES and b"\0" in data[:8192]:
        report.notes.append(f"{path}: binary file, checked for the raw key only")
        return
    text = _decode(data)
    report.findings += scan_text(text, path, needles=needles, canaries=canaries, urls=True)


def audit_outputs(folders: Iterable[Path], *, key: bytes | None = None, canaries: Iterable[str] = ()) -> Report:
    """Scan every file under ``folders`` (files given directly are scanned too). See the module docstring."""
    report = Report()
    needles = key_needles(key)
    canaries = [c for c in canaries if c]
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            paths = [folder]
        elif folder.is_dir():
            paths = sorted(p for p in folder.rglob("*") if p.is_file())
        else:
            raise FileNotFoundError(f"{folder}: no such file or folder")
        for path in paths:
            scan_file(path, needles=needles, canaries=canaries, report=report)
    if key is None:
        report.notes.append("no key given (EST_PSEUDONYM_KEY or --key-file): the key check was skipped")
    return report


# --------------------------------------------------------------------------------------------------------------
# Canaries for the CI run (issue 4 item 8)
# --------------------------------------------------------------------------------------------------------------

# Canary personnummer: valid (Luhn and date), in the forms partners write them; samordningsnummer included.
# They are test numbers of made-up persons; the audit finds any valid personnummer, canary or not.
CANARY_PERSONNUMMER = ("19121212-1212", "201212121212", "121212+1212", "8112289874", "850769 9802")
CANARY_NAMES = ("Kanarie Fågelsångsson", "Zelmira Canarydotter", "Tjippe Kvittersson")
CANARY_PARTNERS = ("social_services", "home_care")


def write_canaries_file(path: Path) -> Path:
    """The canaries file for ``est audit-outputs --canaries``: the planted names and the personnummer digits."""
    lines = list(CANARY_NAMES) + [re.sub(r"\D", "", p)[-10:] for p in CANARY_PERSONNUMMER]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plant_canaries(home, partners: Iterable[str] = CANARY_PARTNERS) -> int:
    """Append canary rows to each partner's delivered CSV files in ``home``'s inbox, before any ingest.

    Each canary row is a copy of the file's last data row with a new record id, a canary personnummer as the
    person and a description naming a canary person with their personnummer, phone and e-mail: everything the
    pipeline must keep out of every output. The file keeps its contract's encoding, delimiter and line ending.
    Returns the number of rows planted.
    """
    from pipelines.contracts import load_contracts

    contracts = load_contracts()
    planted = 0
    for partner in partners:
        contract = contracts[partner]
        folder = home.partner_inbox(partner)
        encoding = getattr(contract, "encoding", None) or "utf-8"
        delimiter = getattr(contract, "delimiter", None) or ","
        for number, path in enumerate(sorted(folder.glob("*.csv"))):
            raw = path.read_bytes()
            newline = "\r\n" if b"\r\n" in raw else "\n"
            text = raw.decode(encoding)
            rows = list(csv.reader(text.lstrip("\ufeff").splitlines(), delimiter=delimiter))
            if len(rows) < 2:
                continue
            header = rows[0]
            columns = {name: i for i, name in enumerate(header)}
            whole = [row for row in rows[1:] if len(row) == len(header)]
            if not whole or "person_id" not in columns or "description" not in columns:
                continue
            new_rows = []
            for k, (pnr, name) in enumerate(zip(CANARY_PERSONNUMMER, CANARY_NAMES * 2)):
                row = list(whole[-1])
                if "record_id" in columns:
                    row[columns["record_id"]] = f"CANARY-{partner}-{number}-{k}"
                row[columns["person_id"]] = pnr
                row[columns["description"]] = (
                    f"{name} ({pnr}) ringde 070-123 45 67, {name.split()[0].lower()}@example.se"
                )
                new_rows.append(row)
            # Append only: the delivered rows stay byte for byte (some are broken on purpose).
            prefix = "" if text.endswith(("\n", "\r")) else newline
            with path.open("ab") as handle:
                handle.write((prefix + _csv_lines(new_rows, delimiter, newline)).encode(encoding))
            planted += len(new_rows)
    return planted


def _csv_lines(rows: list[list[str]], delimiter: str, newline: str) -> str:
    import io

    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buffer.getvalue()


def summary(report: Report) -> str:
    return json.dumps({"files": report.files, "findings": len(report.findings)})
