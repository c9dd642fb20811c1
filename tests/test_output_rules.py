"""PRIVACY.md "Reports and maps": one test per rule that tries to break it (issue 4 item 6).

- templates autoescape: a <script> title fed into the weekly report comes out as text;
- CSV formula cells are neutralised in every CSV writer (reports and partner exports);
- Great Expectations results hold no identifier values: the result object of a real validation is inspected;
- no request to another host, no personnummer, no key in any generated output: `est audit-outputs` over them.
(folium popups and tooltips: tests/test_reports.py::test_quarterly_tooltips_hold_only_project_labels.)
"""

from __future__ import annotations

import csv
import io
import json
from contextlib import closing
from datetime import datetime, timezone
from html.parser import HTMLParser

import duckdb
import pandas as pd

from pipelines import audit_outputs, validate, warehouse
from pipelines import report_weekly as rw
from pipelines.contracts import load_contracts
from pipelines.ingest import _canonical
from pipelines.readers import read_delivery
from tests.conftest import GENERATED_LAST_WEEK, TEST_KEY

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>${alert(1)}'


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.imgs, self._in = [], [], False
        self.text = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._in = True
            self.scripts.append("")
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.scripts[-1] += data
        self.text.append(data)


def test_templates_autoescape_a_script_title(generated_home):
    with closing(warehouse.connect(generated_home, read_only=True)) as con:
        report = rw.build_weekly(con, GENERATED_LAST_WEEK)
    report["categories"] = report["categories"].assign(label=PAYLOAD)
    report["municipality"] = PAYLOAD
    html = rw.render_weekly_html(report)
    parsed = _Scripts()
    parsed.feed(html)
    assert not any("alert" in s for s in parsed.scripts), "the payload became a script"
    assert not any(img.get("onerror") for img in parsed.imgs)
    assert PAYLOAD in "".join(parsed.text)  # shown to the reader as text, escaped in the source
    assert "&lt;script&gt;" in html


FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\r=1"]


def test_report_csv_neutralises_formula_cells():
    frame = pd.DataFrame({"label": FORMULAS, "n": list(range(len(FORMULAS)))})
    text = rw.csv_bytes(frame).decode("utf-8-sig")
    cells = [row[0] for row in csv.reader(io.StringIO(text), delimiter=";")][1:]
    assert all(cell.startswith("'") for cell in cells), cells


def test_partner_export_csv_neutralises_formula_cells(generated_home, tmp_path):
    import shutil

    from pipelines import audiences
    from pipelines.settings import Home

    home = Home(tmp_path / "home")
    shutil.copytree(generated_home.root, home.root)
    with closing(warehouse.connect(home)) as con:
        # place_type and category are ENUMs of the project's catalogues (warehouse.sync_vocabularies): the store
        # refuses a formula there, so the attack goes into area_code, text a partner outside the installation's
        # geography (police_uk) delivers as given.
        refused = False
        try:
            con.execute("UPDATE incidents SET place_type = ? WHERE partner = 'housing'", [FORMULAS[0]])
        except duckdb.ConversionException:
            refused = True
        assert refused, "the store accepted a place_type outside schemas/incident.yaml"
        # area_code is an open vocabulary: a delivery bringing this value widens its ENUM first, as here.
        warehouse.OpenVocabularies(con).widen(con, {"area_code": [FORMULAS[0]]})
        con.execute("UPDATE incidents SET area_code = ? WHERE partner = 'housing'", [FORMULAS[0]])
    own, _ = audiences.export_partner(home, "housing", TEST_KEY)
    rows = list(csv.DictReader(io.StringIO(own.read_text(encoding="utf-8"))))
    assert rows and all(r["area_code"] == "'" + FORMULAS[0] for r in rows)


def test_great_expectations_results_hold_no_identifier_values(tmp_path, monkeypatch):
    contract = load_contracts()["social_services"]
    header = ("record_id,occurred_at,occurred_to,category,place_type,latitude,longitude,sweref99_n,sweref99_e,"
              "address,area_code,description,person_id\n")
    secrets = ["850709-9806", "19850709980", "IFO-HEMLIG-0001", "121212+1213", "Kalle Anka 070-1234567"]
    rows = [
        f"IFO-HEMLIG-0001,2026-03-02 21:30,,Klotter,Park,,,,,,1880C1010,Kalle Anka 070-1234567,{secrets[0]}",
        "IFO-HEMLIG-0002,not a date,,Klotter,Park,99,99,,,,1880C1010,,19850709980",
        "IFO-HEMLIG-0003,2026-03-02 21:30,,Klotter,Park,,,,,,1880C1010,,121212+1213",
    ]
    path = tmp_path / "d.csv"
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    frame = _canonical(read_delivery(path, contract), contract, datetime(2026, 3, 3, tzinfo=timezone.utc))

    captured = {}
    original = validate._batch_definition

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def get_batch(self, batch_parameters):
            captured["frame"] = batch_parameters["dataframe"]
            batch = self.inner.get_batch(batch_parameters=batch_parameters)
            run = batch.validate

            def validate_and_keep(*args, **kwargs):
                captured["result"] = run(*args, **kwargs)
                return captured["result"]

            object.__setattr__(batch, "validate", validate_and_keep)
            return batch

    monkeypatch.setattr(validate, "_batch_definition", lambda: Spy(original()))
    reasons = validate.validate(frame)
    assert reasons, "the planted errors were not found: the test proves nothing"
    assert "result" in captured
    given = captured["frame"].to_json() if hasattr(captured["frame"], "to_json") else str(captured["frame"])
    result = json.dumps(captured["result"].to_json_dict(), default=str)
    for secret in secrets:
        assert secret not in given, f"{secret!r} was handed to Great Expectations"
        assert secret not in result, f"{secret!r} is in Great Expectations' result"
    assert not any(s in " ".join(r for found in reasons.values() for r in found) for s in secrets)


def test_generated_outputs_make_no_request_and_hold_no_personnummer_or_key(generated_home):
    report = audit_outputs.audit_outputs([generated_home.out], key=TEST_KEY)
    assert report.files > 5
    assert report.clean, [str(f) for f in report.findings]


def test_the_output_audit_would_catch_a_cdn_link_in_a_generated_map(generated_home, tmp_path):
    maps = sorted(generated_home.out.glob("quarterly/*/*.html"))
    assert maps
    broken = tmp_path / "karta.html"
    broken.write_text(maps[0].read_text(encoding="utf-8").replace(
        "</head>", '<link rel="stylesheet" href="https://unpkg.com/leaflet@1.9.4/dist/leaflet.css"></head>', 1),
        encoding="utf-8")
    assert [f.kind for f in audit_outputs.audit_outputs([broken]).findings] == ["url"]
