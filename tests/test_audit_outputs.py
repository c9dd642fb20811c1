"""`est audit-outputs`: each kind of leak planted into a temporary folder is found, a clean folder passes, and a
finding never prints the value it found (PRIVACY.md; issue 4 item 8). The key here is obviously fake."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines import audit_outputs as ao
from pipelines import privacy
from pipelines.cli import main
from pipelines.settings import Home
from tests.conftest import TEST_KEY

CLEAN_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Vecka 2026-W10</title>
<style>body{font:14px sans-serif}</style></head><body>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>
<p>Inrapporterat 2026-03-08 22:30, ärende 5000-K123456-25, 1 234 händelser, kod 1880C1010.</p>
<div class="leaflet-control-attribution"><a href="https://leafletjs.com" title="A JavaScript library">Leaflet</a></div>
<script>var coords=[59.2741234567, 15.2134512345]; var id="a1b2c3d4e5f60718293a4b5c6d7e8f90";</script>
</body></html>
"""


def _folder(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    root = tmp_path / "out"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return root


def _kinds(report: ao.Report) -> list[str]:
    return sorted(f.kind for f in report.findings)


def test_a_clean_folder_passes(tmp_path):
    root = _folder(tmp_path, {
        "weekly/report.html": CLEAN_HTML,
        "weekly/areas.csv": "area,category,n\n1880C1010,graffiti,<5\n1880C1020,assault,12\n",
        "receipts/r.json": json.dumps({"delivery_id": "ab" * 32, "rows": 1200}),
        "logs/task.log": "2026-11-27T22:12:42 INFO loaded 1203 rows from guards_2026-W34.csv\n",
    })
    report = ao.audit_outputs([root], key=TEST_KEY, canaries=list(ao.CANARY_NAMES))
    assert report.clean, [str(f) for f in report.findings]
    assert report.files == 4


@pytest.mark.parametrize("written", [
    "198507099805", "850709-9805", "8507099805", "850709 9805", "850709\u20139805", "850709+9805",
    "19850709-9805", "\uff18\uff15\uff10\uff17\uff10\uff19-\uff19\uff18\uff10\uff15",  # full-width digits
    "850769-9802",  # samordningsnummer (day + 60)
])
@pytest.mark.parametrize("suffix", ["html", "csv", "json", "log"])
def test_a_personnummer_in_any_form_is_found_and_masked(tmp_path, written, suffix):
    canonical, status = privacy.canonical_personnummer([written.replace(" ", "")])
    assert status[0] == privacy.STATUS_VALID  # the planted number is a real-shaped one
    body = f"line one\nsome text then {written} in the middle\n"
    if suffix == "json":
        body = "{\n" + json.dumps({"x": written}) + "\n}"  # JSON may escape non-ASCII as \\uXXXX
    root = _folder(tmp_path, {f"f.{suffix}": body})
    report = ao.audit_outputs([root])
    assert _kinds(report) == ["personnummer"]
    finding = report.findings[0]
    assert finding.line == 2
    printed = str(finding)
    digits = "".join(ch for ch in privacy.fold_digits(written) if ch.isdigit())
    assert digits[-4:] not in printed and digits[-10:-4] not in printed


def test_an_html_escaped_personnummer_is_found(tmp_path):
    root = _folder(tmp_path, {"a.html": "<p>850709&#8211;9805</p>\n<p>850709&ndash;9805</p>"})
    assert _kinds(ao.audit_outputs([root])) == ["personnummer", "personnummer"]


@pytest.mark.parametrize("not_a_number", [
    "8507099806",  # Luhn fails
    "851332-1234",  # no such month
    "2026-03-08 22:30", "5000-K123456-25", "59.2741234567", "0701234567", "1764281234",
])
def test_what_is_not_a_valid_personnummer_is_not_a_finding(tmp_path, not_a_number):
    root = _folder(tmp_path, {"a.csv": f"x\n{not_a_number}\n"})
    assert ao.audit_outputs([root]).clean


def _key_forms(key: bytes) -> dict[str, str]:
    return {
        "hex": key.hex(), "HEX": key.hex().upper(), "repr": repr(key),
        "b64": base64.b64encode(key).decode(), "b64url": base64.urlsafe_b64encode(key).decode().rstrip("="),
        "b64-shift1": base64.b64encode(b"x" + key + b"yz").decode(),
        "b64-shift2": base64.b64encode(b"xy" + key).decode(),
    }


@pytest.mark.parametrize("form", list(_key_forms(TEST_KEY)))
def test_the_key_in_hex_or_base64_is_found(tmp_path, form):
    text = _key_forms(TEST_KEY)[form]
    root = _folder(tmp_path, {"log/task.log": f"start\nkey is {text}\n"})
    report = ao.audit_outputs([root], key=TEST_KEY)
    assert _kinds(report)[:1] == ["key"] and report.findings[0].line == 2
    assert text not in str(report.findings[0]) and TEST_KEY.hex() not in str(report.findings[0])


def test_raw_key_bytes_in_a_binary_file_and_a_derived_domain_key_are_found(tmp_path):
    analysis = privacy.derive_key(TEST_KEY, "analysis").key
    root = _folder(tmp_path, {"db.bin": b"\0\1\2" + TEST_KEY + b"\0", "x.txt": analysis.hex()})
    report = ao.audit_outputs([root], key=TEST_KEY)
    assert _kinds(report) == ["key", "key"]
    assert any("analysis key" in f.masked for f in report.findings)


def test_canary_names_are_found_escaped_or_not_and_not_printed(tmp_path):
    name = ao.CANARY_NAMES[0]  # has an å
    root = _folder(tmp_path, {
        "a.html": f"<td>{name.upper()}</td>",
        "b.json": json.dumps({"d": name}),  # \u00e5
        "c.html": "<td>Kanarie F&aring;gels&aring;ngsson</td>",
    })
    report = ao.audit_outputs([root], canaries=[name])
    assert _kinds(report) == ["canary"] * 3
    assert all(name not in str(f) for f in report.findings)


@pytest.mark.parametrize("reference", [
    '<script src="https://cdn.jsdelivr.net/npm/leaflet.js"></script>',
    '<link rel="stylesheet" href="//unpkg.com/leaflet.css">',
    '<img src="http://tile.openstreetmap.org/1/1/1.png">',
    "<style>.x{background:url(//evil.example/x.png)}</style>",
    "<style>@import 'https://fonts.googleapis.com/css';</style>",
    "<script>L.tileLayer('https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png')</script>",
])
def test_a_reference_to_another_host_is_found(tmp_path, reference):
    root = _folder(tmp_path, {"map.html": CLEAN_HTML.replace("</body>", reference + "</body>")})
    assert _kinds(ao.audit_outputs([root])) == ["url"]


def test_a_pdf_with_a_personnummer_in_its_text_is_found(tmp_path):
    content = zlib.compress(b"BT /F1 12 Tf 72 712 Td (Kanarie 850709-9805) Tj ET")
    pdf = (b"%PDF-1.4\n1 0 obj << /Length " + str(len(content)).encode() + b" /Filter /FlateDecode >>\nstream\n"
           + content + b"\nendstream\nendobj\n%%EOF\n")
    root = _folder(tmp_path, {"r.pdf": pdf})
    report = ao.audit_outputs([root], canaries=["Kanarie"])
    assert _kinds(report) == ["canary", "personnummer"]


def test_cli_exits_2_listing_findings_and_0_when_clean(tmp_path, monkeypatch):
    monkeypatch.delenv("EST_PSEUDONYM_KEY", raising=False)
    key_file = tmp_path / "key.hex"
    key_file.write_text(TEST_KEY.hex() + "\n")
    canaries = ao.write_canaries_file(tmp_path / "canaries.txt")
    clean = _folder(tmp_path / "c", {"a.html": CLEAN_HTML})
    runner = CliRunner()
    ok = runner.invoke(main, ["audit-outputs", str(clean), "--key-file", str(key_file), "--canaries", str(canaries)])
    assert ok.exit_code == 0, ok.output
    leaky = _folder(tmp_path / "l", {"a.csv": f"x\n{ao.CANARY_NAMES[1]} 850709-9805\n",
                                     "b.log": "k=" + TEST_KEY.hex()})
    bad = runner.invoke(main, ["audit-outputs", str(leaky), "--key-file", str(key_file), "--canaries", str(canaries)])
    assert bad.exit_code == 2
    assert "a.csv:2: personnummer" in bad.output and "a.csv:2: canary" in bad.output and "b.log:1: key" in bad.output
    assert "850709" not in bad.output and TEST_KEY.hex() not in bad.output and ao.CANARY_NAMES[1] not in bad.output


def test_plant_canaries_appends_rows_in_the_partners_encoding(tmp_path):
    home = Home(tmp_path / "home").ensure()
    folder = home.partner_inbox("home_care")
    folder.mkdir(parents=True, exist_ok=True)
    header = ("record_id;occurred_at;occurred_to;category;place_type;latitude;longitude;sweref99_n;sweref99_e;"
              "address;area_code;description;person_id")
    original = (header + "\r\nHT-1;2026-08-17 09:04;;Övrigt;Bostad;;;;;Torpbacken 23;;Hund lös.;550201-6115\r\n")
    (folder / "hc.csv").write_bytes(original.encode("windows-1252"))
    assert ao.plant_canaries(home, partners=["home_care"]) == len(ao.CANARY_PERSONNUMMER)
    data = (folder / "hc.csv").read_bytes()
    assert data.startswith(original.encode("windows-1252"))
    text = data.decode("windows-1252")
    assert ao.CANARY_NAMES[0] in text and "CANARY-home_care-0-0" in text and "\r\n" in text
    assert all(line.count(";") == header.count(";") for line in text.splitlines())


def test_each_key_of_a_rotated_chain_is_looked_for_alone(tmp_path, monkeypatch):
    """After `est keys rotate` the secret is "<new hex>,<old hex>": the old key alone (or one of its derived
    domain keys) in an output is a finding, whether the chain comes from the environment or a key file."""
    new = bytes.fromhex("c3" * 32)
    chain_text = f"{new.hex()},{TEST_KEY.hex()}"
    chain = privacy.load_key("test", value=chain_text)
    old_record = privacy.derive_key(TEST_KEY, "record").key
    root = _folder(tmp_path, {
        "a.log": f"x\nold {TEST_KEY.hex().upper()}\n",
        "b.json": json.dumps({"k": base64.b64encode(TEST_KEY).decode()}),
        "c.txt": f"{old_record.hex()}\n",
    })
    report = ao.audit_outputs([root], key=chain)
    assert _kinds(report) == ["key", "key", "key"]
    assert any("previous master #1" in f.masked for f in report.findings)
    assert ao.audit_outputs([root], key=new).clean  # the current key alone would miss all three
    key_file = tmp_path / "chain.hex"
    key_file.write_text(chain_text + "\n")
    monkeypatch.delenv("EST_PSEUDONYM_KEY", raising=False)
    result = CliRunner().invoke(main, ["audit-outputs", str(root), "--key-file", str(key_file)])
    assert result.exit_code == 2 and result.output.count(": key:") == 3, result.output
    monkeypatch.setenv("EST_PSEUDONYM_KEY", chain_text)
    assert CliRunner().invoke(main, ["audit-outputs", str(root)]).exit_code == 2
