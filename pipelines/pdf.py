"""The PDF of a report, printed by headless Chromium from the same self-contained HTML file.

Issue 5, item 5: a PDF "of the same report" for archiving and mailing. Chromium is a system package (CI installs
it, README); no Python dependency is added. The browser runs with networking disabled (a proxy that does not
exist and a host resolver that resolves nothing), so printing can never fetch anything, and with a throw-away
profile. Chromium stamps the time of printing into the PDF (``/CreationDate``, ``/ModDate``); those are replaced,
byte for byte, by the report's own timestamp so the same HTML gives the same PDF bytes (a backfill reproduces
the original). The file is written atomically (:func:`pipelines.publish.write_atomic`).

:func:`pdf_text` pulls the text back out (for tests and checks) without a PDF library: Chromium (Skia) writes
Type0 fonts with Identity-H glyph codes and a ToUnicode map per font, which is all that is needed here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

from pipelines.publish import write_atomic

#: Chromium binaries looked for, in order (``EST_CHROMIUM`` overrides).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
#: Seconds a print may take before it is abandoned.
PRINT_TIMEOUT = 120


class PdfUnavailable(RuntimeError):
    """No Chromium to print with."""


def chromium() -> str | None:
    explicit = os.environ.get("EST_CHROMIUM")
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def print_pdf(html: Path, target: Path, timestamp: str = "20000101000000") -> Path:
    """Print ``html`` (a local, self-contained file) to ``target`` with headless Chromium, offline.

    ``timestamp`` (14 digits, YYYYMMDDHHMMSS) replaces the print time Chromium writes into the PDF's info
    dictionary, so the output depends on the HTML only.
    """
    binary = chromium()
    if binary is None:
        raise PdfUnavailable("no Chromium found (install the 'chromium' package or set EST_CHROMIUM)")
    if not re.fullmatch(r"\d{14}", timestamp):
        raise ValueError(f"timestamp must be 14 digits YYYYMMDDHHMMSS: {timestamp!r}")
    with tempfile.TemporaryDirectory(prefix="est-pdf-") as scratch:
        out = Path(scratch) / "report.pdf"
        command = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={Path(scratch) / 'profile'}", "--no-pdf-header-footer",
            f"--print-to-pdf={out}", Path(html).resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, timeout=PRINT_TIMEOUT, check=False)
        if not out.exists() or out.stat().st_size == 0:
            raise RuntimeError(f"Chromium printed no PDF (exit {done.returncode})")
        data = out.read_bytes()
    data = re.sub(rb"\(D:\d{14}", b"(D:" + timestamp.encode("ascii"), data)
    return write_atomic(target, data)


# --------------------------------------------------------------------------------------------------------
# Text back out of a Chromium PDF
# --------------------------------------------------------------------------------------------------------

_OBJECT = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)
_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)


def _stream(body: bytes) -> bytes:
    match = _STREAM.search(body)
    if not match:
        return b""
    raw = match.group(1)
    try:
        return zlib.decompress(raw) if b"/FlateDecode" in body[: match.start()] else raw
    except zlib.error:
        return b""


def _cmap(text: bytes) -> dict[int, str]:
    mapping: dict[int, str] = {}

    def chars(hexes: bytes) -> str:
        return bytes.fromhex(hexes.decode("ascii")).decode("utf-16-be", errors="replace")

    for block in re.findall(rb"beginbfchar(.*?)endbfchar", text, re.S):
        for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
            mapping[int(src, 16)] = chars(dst)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", text, re.S):
        for low, high, rest in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*(\[[^\]]*\]|<[0-9A-Fa-f]+>)", block):
            low_i, high_i = int(low, 16), int(high, 16)
            if rest.startswith(b"["):
                for offset, dst in enumerate(re.findall(rb"<([0-9A-Fa-f]+)>", rest)):
                    mapping[low_i + offset] = chars(dst)
            else:
                start = int(rest[1:-1], 16)
                width = len(rest) - 2
                for offset in range(high_i - low_i + 1):
                    mapping[low_i + offset] = chars(f"{start + offset:0{width}X}".encode("ascii"))
    return mapping


def pdf_text(data: bytes) -> str:
    """The text of a PDF printed by Chromium, one line per text object, in content-stream order."""
    objects = {int(number): body for number, body in _OBJECT.findall(data)}
    font_maps: dict[int, dict[int, str]] = {}
    for number, body in objects.items():
        match = re.search(rb"/ToUnicode (\d+) 0 R", body)
        if b"/Type /Font" in body and match and int(match.group(1)) in objects:
            font_maps[number] = _cmap(_stream(objects[int(match.group(1))]))
    names = {name: int(ref) for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", data)}
    lines: list[str] = []
    token = re.compile(rb"/(F\d+)\s+[\d.]+\s+Tf|<([0-9A-Fa-f]*)>|\b(ET)\b")
    for body in objects.values():
        content = _stream(body)
        if b"Tf" not in content:
            continue
        current: dict[int, str] = {}
        line: list[str] = []
        for match in token.finditer(content):
            font, hexes, end = match.groups()
            if font is not None:
                current = font_maps.get(names.get(font, -1), {})
            elif hexes is not None and current:
                line.extend(current.get(int(hexes[i:i + 4], 16), "") for i in range(0, len(hexes) - 3, 4))
            elif end is not None and line:
                lines.append("".join(line))
                line = []
        if line:
            lines.append("".join(line))
    return "\n".join(lines)
