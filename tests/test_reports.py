"""The weekly report and the quarterly map, rendered from a small warehouse built in a temporary folder.

The warehouse is made by hand (areas as 1 km squares, four partners, incidents, ledger rows), then aggregated
with the project's own sql/aggregate_weekly_counts.sql, so each number in the outputs is known. Incident
fields a partner controls carry HTML, template-string and spreadsheet-formula payloads: they must never reach
an output (the reports read only `weekly_counts`). HTML is parsed (BeautifulSoup over html.parser) and
assertions are on elements, not on substrings (STYLE.md, practice 8).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import pytest
import shapely
from bs4 import BeautifulSoup

from pipelines import publish, warehouse
from pipelines.settings import SQL_DIR, Home

WEEK = "2025-W12"  # Monday 17 March 2025
QUARTER = "2025Q1"
WEEK_MONDAY = date(2025, 3, 17)
BASELINE_MONDAYS = [WEEK_MONDAY - timedelta(weeks=k) for k in range(8, 0, -1)]

# Payloads a partner could put in its own fields. The reports never read those fields; if one ever did, these
# markers would show where.
XSS = "<script>alert(1)</script>"
TEMPLATE = "${alert(1)}"
FORMULA = '=HYPERLINK("evil","klicka")'

# Area codes, names, populations: four 1 km squares in SWEREF 99 TM near Örebro's centre.
AREAS = [
    ("1880C1010", "Vivalla", 2000, (511000, 6574000)),
    ("1880C1020", "Centrum", 2500, (512000, 6574000)),
    ("1880C1030", "Brickebacken", 1500, (511000, 6573000)),
    ("1880C1040", "=SUMMA(1;2)", 1000, (512000, 6573000)),  # a name a spreadsheet would run as a formula
]
A, B, C, D = (code for code, *_ in AREAS)

PARTNERS = [
    ("police_cases", "Polisen", False),
    ("housing", "Örebrobostäder (ÖBO)", False),
    ("social_services", "Socialtjänsten", True),
    ("schools", "Skolan", True),
]


def _iso(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _incidents_for(partner: str, monday: date, area: str | None, category: str, count: int, start: int):
    rows = []
    for k in range(count):
        occurred = datetime(monday.year, monday.month, monday.day, 12, tzinfo=timezone.utc) + timedelta(hours=k % 96)
        rows.append(
            {
                "partner": partner,
                "partner_record_id": [start + k, len(partner), 0, 0],  # UBIGINT[4] (sql/006)
                "revision": 1,
                "delivery_number": 1,
                "source_row": k + 1,
                "occurred_from": occurred,
                "time_precision": "exact",
                "iso_week": _iso(monday),
                "category": category,
                "partner_category": FORMULA,
                "place_type": "other",  # an ENUM of schemas/incident.yaml: hostile text cannot be stored there
                "area_code": area,
                "location_precision": "area" if area else "unplaced",
                "description": XSS + " " + TEMPLATE + " " + FORMULA,
            }
        )
    return rows


def build_warehouse(root: Path) -> tuple[Home, object]:
    """A warehouse whose week 2025-W12 holds known counts, and whose 8 weeks before it hold a known baseline.

    Week 2025-W12:
      police:  property_damage A 20, theft B 12, graffiti A 3, public_order unplaced 2
      housing: littering C 8, property_damage B 6
      social (sensitive): threat_violence_staff D 7
      school (sensitive): no delivery this week (delivered every baseline week: 6 threat_violence_staff in A)
    Baseline weeks W04-W11: police property_damage A 15 and theft B 10 every week; housing littering C 8;
    social threat_violence_staff D 8 only in W08-W11 (its only deliveries).
    """
    home = Home(root)
    con = warehouse.connect(home)
    for code, name, population, (x, y) in AREAS:
        square = shapely.box(x, y, x + 1000, y + 1000)
        con.execute(
            "INSERT INTO areas VALUES (?, ?, '1880', ?, TRUE, ?)", [code, name, population, shapely.to_wkb(square)]
        )
    con.executemany("INSERT INTO partners VALUES (?, ?, ?, 1)", [list(p) for p in PARTNERS])

    incidents = []
    ledger = []
    counter = [0]

    def add(partner, monday, area, category, count):
        incidents.extend(_incidents_for(partner, monday, area, category, count, counter[0]))
        counter[0] += count

    def deliver(partner, monday, rows_loaded, rows_quarantined=0, status="accepted"):
        ledger.append(
            [
                f"{partner}-{_iso(monday)}" + ("-rejected" if status == "rejected" else ""),
                partner,
                f"{partner}_{_iso(monday)}.csv",
                datetime(monday.year, monday.month, monday.day, 8, tzinfo=timezone.utc) + timedelta(days=7),
                status,
                rows_loaded + rows_quarantined,
                rows_loaded,
                rows_quarantined,
                monday,
                monday + timedelta(days=6),
            ]
        )

    for monday in BASELINE_MONDAYS:
        add("police_cases", monday, A, "property_damage", 15)
        add("police_cases", monday, B, "theft", 10)
        deliver("police_cases", monday, 25)
        add("housing", monday, C, "littering", 8)
        deliver("housing", monday, 8)
        add("schools", monday, A, "threat_violence_staff", 6)
        deliver("schools", monday, 6)
        if monday >= date(2025, 2, 17):  # W08-W11
            add("social_services", monday, D, "threat_violence_staff", 8)
            deliver("social_services", monday, 8)

    add("police_cases", WEEK_MONDAY, A, "property_damage", 20)
    add("police_cases", WEEK_MONDAY, B, "theft", 12)
    add("police_cases", WEEK_MONDAY, A, "graffiti", 3)
    add("police_cases", WEEK_MONDAY, None, "public_order", 2)
    deliver("police_cases", WEEK_MONDAY, 37, rows_quarantined=3)
    add("housing", WEEK_MONDAY, C, "littering", 8)
    add("housing", WEEK_MONDAY, B, "property_damage", 6)
    deliver("housing", WEEK_MONDAY, 14)
    add("social_services", WEEK_MONDAY, D, "threat_violence_staff", 7)
    deliver("social_services", WEEK_MONDAY, 7)
    deliver("schools", WEEK_MONDAY, 0, status="rejected")

    columns = list(incidents[0])
    con.executemany(
        f"INSERT INTO incidents ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [[row[c] for c in columns] for row in incidents],
    )
    con.executemany(
        "INSERT INTO ingest_ledger (delivery_id, partner, file_name, received_at, status, rows_in, rows_loaded, "
        "rows_quarantined, period_from, period_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ledger,
    )
    con.executemany(
        "INSERT INTO interventions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ["i1", "Extra väktarrondering kvällstid " + XSS, A, "rondering", "housing", date(2025, 3, 1), None,
             ["property_damage", "graffiti"]],
            ["i2", "Belysning gångtunnel", B, "fysisk miljö", "police_cases", date(2025, 3, 20), date(2025, 4, 30), []],
            ["i3", "Avslutad insats", C, "samtal", "social_services", date(2025, 1, 1), date(2025, 3, 16), []],
            ["i4", "Kommande insats", C, "samtal", "social_services", date(2025, 3, 24), None, []],
        ],
    )
    con.execute(warehouse.sql_text("aggregate_weekly_counts"))
    return home, con


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The warehouse and both outputs rendered once: rendering is what most tests look at."""
    from pipelines.report_quarterly import render_quarterly
    from pipelines.report_weekly import render_weekly

    home, con = build_warehouse(tmp_path_factory.mktemp("home"))
    weekly = render_weekly(con, home, WEEK)
    quarterly = render_quarterly(con, home, QUARTER)
    yield home, con, weekly, quarterly
    con.close()


def _weekly_html(built) -> BeautifulSoup:
    path = next(p for p in built[2] if p.suffix == ".html")
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def _table(soup: BeautifulSoup, table_id: str) -> list[list[str]]:
    table = soup.find("table", id=table_id)
    assert table is not None, table_id
    return [
        [cell.get_text(" ", strip=True).replace("\u00a0", " ") for cell in row.find_all(["td", "th"])]
        for row in table.find_all("tr")
    ]


def _row(rows: list[list[str]], first: str) -> list[str]:
    found = [r for r in rows if r and r[0] == first]
    assert len(found) == 1, (first, rows)
    return found[0]


def _csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "Excel on a Swedish Windows needs the BOM to read UTF-8"
    return list(csv.DictReader(io.StringIO(raw[3:].decode("utf-8"), newline=""), delimiter=";"))


# --------------------------------------------------------------------------------------------------------
# publish.write_atomic
# --------------------------------------------------------------------------------------------------------


def test_write_atomic_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "report.html"
    publish.write_atomic(target, "första")
    publish.write_atomic(target, b"andra")
    assert target.read_bytes() == b"andra"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_write_atomic_keeps_previous_version_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "report.html"
    publish.write_atomic(target, "gammal")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publish.os, "fsync", disk_full)
    with pytest.raises(OSError):
        publish.write_atomic(target, "ny" * 1000)
    assert target.read_text() == "gammal"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# --------------------------------------------------------------------------------------------------------
# The weekly report
# --------------------------------------------------------------------------------------------------------


def test_weekly_files_and_audit_entry(built):
    home, con, weekly, _ = built
    folder = home.out / "weekly" / WEEK
    assert [p.name for p in weekly] == [
        f"veckorapport_{WEEK}_kategorier.csv",
        f"veckorapport_{WEEK}_omraden.csv",
        f"veckorapport_{WEEK}_leveranser.csv",
        f"veckorapport_{WEEK}_avvikelser.csv",
        f"veckorapport_{WEEK}_prognos.csv",
        f"veckorapport_{WEEK}_trend.csv",
        f"veckorapport_{WEEK}.html",
    ] + ([f"veckorapport_{WEEK}.pdf"] if any(p.suffix == ".pdf" for p in weekly) else [])
    assert all(p.parent == folder and p.is_file() for p in weekly)
    entries = con.execute(
        "SELECT subject, audience, detail FROM audit_log WHERE action = 'publish' AND audience = 'weekly_recipients'"
    ).fetchall()
    assert len(entries) == 1
    subject, audience, detail = entries[0]
    detail = json.loads(detail)
    assert subject == f"weekly/{WEEK}/veckorapport_{WEEK}.html"
    assert detail["iso_week"] == WEEK
    # 8 baseline weeks x (police, housing, school) + 4 social + this week's 3 accepted (the rejected one is no input)
    assert detail["delivery_count"] == 8 * 3 + 4 + 3 == len(detail["delivery_ids"])


def test_weekly_sections_in_order(built):
    soup = _weekly_html(built)
    assert soup.html["lang"] == "sv"
    sections = [s["id"] for s in soup.find_all("section")]
    assert sections == ["sammanfattning", "vad-har-hant", "vad-gors", "prognos", "datakvalitet", "om-siffrorna"]
    headings = [s.find("h2").get_text(strip=True) for s in soup.find_all("section")]
    assert headings[:3] == ["Sammanfattning", "Vad har hänt", "Vad görs"]
    assert headings[3].startswith("Prognos för vecka ") and headings[4] == "Datakvalitet och leveranser"


def test_weekly_summary_is_written_from_the_data(built):
    soup = _weekly_html(built)
    items = [li.get_text(" ", strip=True) for li in soup.find("section", id="sammanfattning").find_all("li")]
    # Total 58; baseline for the partners that delivered this week: police 25 + housing 8 + social 8 = 41.
    assert items[0].startswith("Vecka 12 (17–23 mars 2025) registrerades 58 händelser")
    assert "41" in items[0] and "ökning med 17" in items[0]
    assert any(i.startswith("Störst ökning: Skadegörelse (+11)") for i in items), items
    missing = "Ingen leverans från Skolan denna vecka — siffrorna för Skolan saknas, inte noll."
    assert missing in items


def test_weekly_small_counts_are_suppressed(built):
    soup = _weekly_html(built)
    categories = _table(soup, "tabell-kategorier")
    assert _row(categories, "Klotter")[1] == "<5"  # 3 incidents
    assert _row(categories, "Ordningsstörning")[1] == "<5"  # 2 incidents
    # 7 incidents, all from social services (sensitive): the stricter threshold.
    assert _row(categories, "Hot och våld mot personal")[1] == "<10"
    # A suppressed count has no change next to it.
    assert _row(categories, "Klotter")[3] == "–"
    # No cell of the table is the true small number.
    values = {cell for row in categories[1:] for cell in row[1:]}
    assert not values & {"1", "2", "3", "4", "7"}
    visible = _row(categories, "Skadegörelse")
    assert visible[1:4] == ["26", "15", "+11"]


def test_weekly_suppressed_cells_cannot_be_recovered_from_the_total(built):
    """Secondary suppression: total minus the visible cells must not pin down a hidden cell."""
    soup = _weekly_html(built)
    rows = _table(soup, "tabell-kategorier")[1:]
    total = int(_row(rows, "Totalt")[1])
    body = [r for r in rows if r[0] != "Totalt"]
    hidden = [r for r in body if not r[1].isdigit()]
    assert len(hidden) >= 2
    remainder = total - sum(int(r[1]) for r in body if r[1].isdigit())
    bounds = [(1, 4) if r[1] == "<5" else ((1, 9) if r[1] == "<10" else (5, remainder)) for r in hidden]
    for k, (low, high) in enumerate(bounds):
        others_low = sum(b[0] for j, b in enumerate(bounds) if j != k)
        others_high = sum(b[1] for j, b in enumerate(bounds) if j != k)
        assert max(low, remainder - others_high) < min(high, remainder - others_low), hidden[k]


def test_weekly_areas_with_rates_and_unplaced(built):
    soup = _weekly_html(built)
    areas = _table(soup, "tabell-omraden")
    assert areas[0] == ["Område", "Kod", "Denna vecka", "Per 1 000 invånare", "Normalvärde", "Förändring",
                        "Utöver normal variation"]
    vivalla = _row(areas, "Vivalla")  # 20 property damage + 3 graffiti = 23 of 2,000 inhabitants
    assert vivalla[1:4] == [A, "23", "11,5"]
    assert _row(areas, "Ej geografiskt placerade")[2] == "<5"
    sensitive_area = _row(areas, "=SUMMA(1;2)")  # autoescaped text, shown as written
    assert sensitive_area[2] == "<10" and sensitive_area[3] == "–"  # no rate for a suppressed count
    stand_in = soup.find("section", id="vad-har-hant").find("p", class_="stand-in")
    from pipelines.geography import STAND_IN_LABEL

    assert stand_in is not None and stand_in.get_text(strip=True) == STAND_IN_LABEL


def test_weekly_lists_active_interventions(built):
    soup = _weekly_html(built)
    rows = _table(soup, "tabell-insatser")
    titles = [r[0] for r in rows[1:]]
    assert titles == ["Extra väktarrondering kvällstid " + XSS, "Belysning gångtunnel"]
    first = rows[1]
    assert first[1] == f"Vivalla ({A})" and first[2] == "rondering" and first[3] == "Örebrobostäder (ÖBO)"
    assert first[4] == "1 mars 2025 – tills vidare" and first[5] == "Skadegörelse, Klotter"


def test_weekly_states_missing_partner_and_quarantine(built):
    soup = _weekly_html(built)
    section = soup.find("section", id="datakvalitet")
    notices = [p.get_text(strip=True) for p in section.find_all("p", class_="missing")]
    assert notices == ["Ingen leverans från Skolan denna vecka — siffrorna för Skolan saknas, inte noll."]
    rows = _table(soup, "tabell-leveranser")
    assert _row(rows, "Skolan")[1] == "Nej"
    police = _row(rows, "Polisen")
    # Hidden although 37: housing knows its own 14, and 58 - 14 - 37 would give social services' hidden 7.
    assert police[1:6] == ["Ja", "..", "..", "<5", "–"]
    housing = _row(rows, "Örebrobostäder (ÖBO)")
    assert housing[1:6] == ["Ja", "..", "..", "0", "–"]
    assert "avvisad" in _row(rows, "Skolan")[6]


def test_weekly_html_is_self_contained_and_escapes_everything(built):
    soup = _weekly_html(built)
    assert soup.find("script") is None, "the weekly report runs no script at all"
    for tag in soup.find_all(True):
        for attribute in ("src", "href", "srcset", "action", "poster", "data"):
            assert attribute not in tag.attrs, (tag.name, attribute)
    text = next(p for p in built[2] if p.suffix == ".html").read_text(encoding="utf-8")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE)
    assert "url(" not in text and "@import" not in text
    # The intervention title carrying a script tag is text, escaped, not an element.
    assert XSS in soup.find("table", id="tabell-insatser").get_text()
    assert "<script>" not in text


def test_partner_fields_never_reach_any_output(built):
    home = built[0]
    for path in sorted((home.out).rglob("*")):
        if path.is_file():
            if path.suffix == ".pdf":
                from pipelines.pdf import pdf_text

                content = pdf_text(path.read_bytes())
            else:
                content = path.read_text(encoding="utf-8-sig")
            for marker in ("alert(1)", "HYPERLINK"):
                if marker == "alert(1)" and path.suffix in (".html", ".pdf") and path.name.startswith(("veckorapport", "karta_")):
                    # only the intervention register's title (not partner text) may carry it, escaped (the
                    # quarterly map's intervention overlay holds it as JSON-escaped data shown with textContent)
                    assert content.count("alert(1)") == 1, path
                    continue
                assert marker not in content, (marker, path)


def test_report_sql_never_reads_free_text_or_incidents():
    files = sorted(SQL_DIR.glob("weekly_*.sql")) + sorted(SQL_DIR.glob("quarterly_*.sql"))
    assert len(files) >= 8
    for path in files:
        sql = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8")).lower()
        assert not re.search(r"\bdescription\b", sql), path.name
        assert not re.search(r"\b(from|join)\s+incidents\b", sql), path.name
        assert not re.search(r"\b(partner_category|place_type|persons|partner_record_id)\b", sql), path.name
    sources = [Path(m.__file__).read_text(encoding="utf-8") for m in _report_modules()]
    for source in sources:
        assert not re.search(r"(?i)\bselect\b[^\"']*\bdescription\b", source)
        assert "|safe" not in source.replace(" ", "") and "Markup(" not in source


def _report_modules():
    from pipelines import offline_assets, report_quarterly, report_weekly

    return [report_weekly, report_quarterly, offline_assets]


def test_templates_never_mark_anything_safe():
    from pipelines.settings import REPORTS_DIR

    for path in REPORTS_DIR.glob("weekly*.j2"):
        assert not re.search(r"\|\s*safe\b|autoescape\s+false", path.read_text(encoding="utf-8")), path.name
    for path in REPORTS_DIR.glob("quarterly*.j2"):
        assert not re.search(r"\|\s*safe\b|autoescape\s+false", path.read_text(encoding="utf-8")), path.name


def test_weekly_csv_tables(built):
    paths = {p.name: p for p in built[2]}
    categories = _csv(paths[f"veckorapport_{WEEK}_kategorier.csv"])
    by_code = {r["Kategori (kod)"]: r for r in categories}
    assert by_code["graffiti"]["Antal denna vecka"] == "<5"
    assert by_code["threat_violence_staff"]["Antal denna vecka"] == "<10"
    assert by_code["property_damage"]["Förändring"] == "11"  # a number, not text a spreadsheet must parse
    areas = _csv(paths[f"veckorapport_{WEEK}_omraden.csv"])
    assert [r["Områdeskod"] for r in areas][-1] == "unplaced"
    assert len(areas) == len(AREAS) + 1
    formula = next(r for r in areas if r["Områdeskod"] == D)
    assert formula["Område"] == "'=SUMMA(1;2)", "a cell a spreadsheet would run must be neutralised"
    for row in areas + categories:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t")), value
    deliveries = _csv(paths[f"veckorapport_{WEEK}_leveranser.csv"])
    school = next(r for r in deliveries if r["Samverkanspart (kod)"] == "schools")
    assert school["Levererat"] == "Nej" and "saknas, inte noll" in school["Kommentar"]


def test_weekly_render_is_byte_identical(built, tmp_path):
    from pipelines.report_weekly import render_weekly

    home, con, weekly, _ = built
    before = {p.name: p.read_bytes() for p in weekly}
    again = render_weekly(con, home, WEEK)
    assert {p.name: p.read_bytes() for p in again} == before


def test_weekly_rejects_bad_week(built):
    from pipelines.report_weekly import render_weekly

    home, con, _, _ = built
    for bad in ("2025-12", "2025-W54", "2025-W53", "2025-W00", "../../etc"):
        with pytest.raises(ValueError):
            render_weekly(con, home, bad)


def test_weekly_report_on_an_empty_warehouse(tmp_path):
    """A first run (no deliveries yet) still renders, and says every partner is missing."""
    from pipelines.report_weekly import render_weekly

    home = Home(tmp_path)
    con = warehouse.connect(home)
    con.executemany("INSERT INTO partners VALUES (?, ?, ?, 1)", [list(p) for p in PARTNERS])
    paths = render_weekly(con, home, WEEK)
    html = next(p for p in paths if p.suffix == ".html")
    soup = BeautifulSoup(html.read_text(encoding="utf-8"), "html.parser")
    assert len(soup.find_all("p", class_="missing")) == len(PARTNERS)
    con.close()


# --------------------------------------------------------------------------------------------------------
# The quarterly map
# --------------------------------------------------------------------------------------------------------


def _map_html(built) -> tuple[str, BeautifulSoup]:
    path = next(p for p in built[3] if p.suffix == ".html")
    text = path.read_text(encoding="utf-8")
    return text, BeautifulSoup(text, "html.parser")


def test_quarterly_files_and_audit(built):
    home, con, _, quarterly = built
    assert [p.name for p in quarterly] == [f"karta_{QUARTER}.csv", f"karta_{QUARTER}.html"]
    entries = con.execute(
        "SELECT subject, detail FROM audit_log WHERE action = 'publish' AND audience = 'analysis_meeting'"
    ).fetchall()
    assert len(entries) == 1
    assert entries[0][0] == f"quarterly/{QUARTER}/karta_{QUARTER}.html"
    assert json.loads(entries[0][1])["quarter"] == QUARTER


def test_quarterly_map_is_self_contained(built):
    text, soup = _map_html(built)
    for tag in soup.find_all(True):
        for attribute in ("src", "href", "srcset", "action", "poster", "data"):
            value = tag.attrs.get(attribute)
            assert value is None or urlparse(value).scheme in ("", "data") and not value.startswith("//"), (
                tag.name, attribute, value)
    assert not soup.find_all("script", src=True)
    assert not soup.find_all("link")
    scripts = soup.find_all("script")
    assert any("Leaflet 1.9" in (s.string or "") for s in scripts), "Leaflet must be inline"
    from pipelines.offline_assets import external_urls

    assert external_urls(text) == []


def layer_names(html: str) -> list[str]:
    """The layers offered by the map's layer control, in order (from folium's JavaScript)."""
    block = re.search(r"base_layers\s*:\s*\{(.*?)\}", html, re.DOTALL)
    assert block, "the map has a layer control"
    return [json.loads(name) for name in re.findall(r'("(?:[^"\\]|\\.)*")\s*:', block.group(1))]


def geojson_properties(html: str, overlays: bool = False) -> list[dict]:
    """Every feature's properties in every choropleth layer the page draws (folium passes them to ``_add(...)``);
    with ``overlays`` those of the overlay layers (interventions, vulnerable areas) instead."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"geo_json_[0-9a-f]+_add\(", html):
        data, _ = decoder.raw_decode(html, match.end())
        found.extend(feature["properties"] for feature in data["features"]
                     if ("style_class" in feature["properties"]) != overlays)
    return found


def test_quarterly_map_has_one_layer_per_category(built):
    text, soup = _map_html(built)
    # All categories together first, then each category with incidents in the quarter, by its Swedish label.
    assert layer_names(text) == [
        "Alla kategorier", "Hot och våld mot personal", "Klotter", "Nedskräpning", "Ordningsstörning",
        "Skadegörelse", "Stöld",
    ]
    legends = [div["data-layer"] for div in soup.find_all("div", class_="est-legend")]
    assert legends == layer_names(text)
    assert len(geojson_properties(text)) == len(legends) * len(AREAS)


def test_quarterly_tooltips_hold_only_project_labels(built):
    text, _ = _map_html(built)
    properties = geojson_properties(text)
    assert properties, "the map draws the areas"
    for props in properties:
        assert set(props) == {"area_code", "area_name", "count", "rate", "style_class"}, props
        assert props["area_code"] in {a[0] for a in AREAS}
    assert {p["area_name"] for p in properties} == {"Vivalla", "Centrum", "Brickebacken", "=SUMMA(1;2)"}
    # Partner fields never reach the map. The intervention register's titles (project text, edited by the
    # security department) do, in the overlay, as JSON-escaped data shown with textContent: the "<script>" the
    # test register holds in a title stays escaped (\u003c), never markup.
    for marker in ("${alert", "HYPERLINK", "<script>alert"):
        assert marker not in text, marker
    overlays = geojson_properties(text, overlays=True)
    assert {p["label"] for p in overlays} == {"Insats i1", "Insats i2", "Insats i3", "Insats i4"}  # all active in Q1
    assert all(set(p) == {"label", "name", "period"} for p in overlays)
    # Tooltips show only these project-made fields, set as text (textContent), one tooltip per layer; no popups.
    page_scripts = [s.string or "" for s in BeautifulSoup(text, "html.parser").find_all("script")]
    own = [s for s in page_scripts if "Leaflet 1.9" not in s]
    tooltips = re.findall(r"\.bindTooltip\(function \(layer\) \{(.*?)\}, \{", "".join(own), re.DOTALL)
    assert len(tooltips) == len(layer_names(text)) + 1  # and one for the interventions overlay
    for body in tooltips:
        fields = json.loads(re.search(r"(\[\[.*?\]\])\.forEach", body).group(1))
        assert [f[0] for f in fields] in (["area_name", "area_code", "count", "rate"], ["label", "name", "period"])
        assert "textContent" in body and "innerHTML" not in body
    assert not any(re.search(r"bindPopup|innerHTML|`", s) for s in own)


def test_quarterly_suppressed_cells_drawn_as_suppressed(built):
    text, _ = _map_html(built)
    properties = geojson_properties(text)
    graffiti = [p for p in properties if p["count"] == "<5" and p["area_code"] == A]
    assert graffiti and all(p["style_class"] == "suppressed" for p in graffiti)
    assert all(p["rate"] == "–" for p in properties if p["style_class"] == "suppressed")
    assert not any(p["count"] in {"1", "2", "3", "4"} for p in properties)


def test_quarterly_csv(built):
    path = next(p for p in built[3] if p.suffix == ".csv")
    rows = _csv(path)
    everything = [r for r in rows if r["Kategori"] == "Alla kategorier"]
    assert {r["Områdeskod"] for r in everything} == {a[0] for a in AREAS} | {"unplaced"}
    vivalla = next(r for r in everything if r["Områdeskod"] == A)
    # Q1 weeks W01-W13 hold W04-W12 here: 8 x (15 police + 6 school) + 20 + 3 = 191 of 2,000 inhabitants.
    assert vivalla["Antal"] == "191" and vivalla["Per 1 000 invånare"] == "95,5"
    assert next(r for r in everything if r["Områdeskod"] == D)["Område"] == "'=SUMMA(1;2)"


def test_quarterly_render_is_byte_identical(built):
    from pipelines.report_quarterly import render_quarterly

    home, con, _, quarterly = built
    before = {p.name: p.read_bytes() for p in quarterly}
    again = render_quarterly(con, home, QUARTER)
    assert {p.name: p.read_bytes() for p in again} == before


def test_quarterly_rejects_bad_quarter(built):
    from pipelines.report_quarterly import render_quarterly

    home, con, _, _ = built
    for bad in ("2025Q5", "2025-Q1", "Q1", "2025q1x"):
        with pytest.raises(ValueError):
            render_quarterly(con, home, bad)


def test_quarterly_map_of_a_quarter_without_incidents(built):
    """No incidents in the quarter: one layer, every area 0, and still a page."""
    from pipelines.report_quarterly import render_quarterly

    home, con, _, _ = built
    paths = render_quarterly(con, home, "2024Q1")
    text = paths[-1].read_text(encoding="utf-8")
    assert layer_names(text) == ["Alla kategorier"]
    assert {p["count"] for p in geojson_properties(text)} == {"0"}


# --------------------------------------------------------------------------------------------------------
# offline_assets
# --------------------------------------------------------------------------------------------------------


def test_leaflet_comes_inline_from_the_pinned_package():
    from pipelines import offline_assets

    js, css = offline_assets.leaflet_js(), offline_assets.leaflet_css()
    assert re.match(r"/\* @preserve\s+\* Leaflet 1\.9\.\d+", js)
    targets = [t for _q, t in re.findall(r"url\(\s*(['\"]?)(.*?)\1\s*\)", css)]
    assert targets and all(t.startswith(("data:image/png;base64,", "#")) for t in targets)
    assert offline_assets.external_urls("<style>" + css + "</style><script>" + js + "</script>") == []


def test_standalone_html_leaves_folium_defaults_alone_and_refuses_cdn_plugins():
    import folium
    from folium.plugins import MarkerCluster

    from pipelines import offline_assets

    defaults = list(folium.Map.default_js), list(folium.Map.default_css)
    page = offline_assets.standalone_html(folium.Map(tiles=None))
    assert offline_assets.external_urls(page) == []
    assert (list(folium.Map.default_js), list(folium.Map.default_css)) == defaults
    assert any("cdn" in url for _name, url in folium.Map.default_js)  # folium itself still points at CDNs

    clustered = folium.Map(tiles=None)
    MarkerCluster().add_to(clustered)
    with pytest.raises(offline_assets.OfflineAssetError):
        offline_assets.standalone_html(clustered)


def test_external_urls_finds_what_a_browser_would_fetch():
    from pipelines.offline_assets import external_urls

    assert external_urls('<img src="https://tiles.example.org/1.png">') != []
    assert external_urls('<link rel="stylesheet" href="//cdn.example.org/a.css">') != []
    assert external_urls("<style>div { background: url(images/x.png) }</style>") == ["images/x.png"]
    assert external_urls('<script>fetch("https://api.example.org/")</script>') == ["https://api.example.org/"]
    assert external_urls('<img src="data:image/png;base64,AAAA"><a href="#top">x</a>') == []


def test_quarterly_grid_has_no_recoverable_hidden_cell(built):
    """PRIVACY.md: no suppressed cell may be recoverable from row or column totals; checked with the solver."""
    from pipelines import privacy
    from pipelines.report_quarterly import quarter_weeks
    from pipelines.report_weekly import protect, query

    _, con, _, _ = built
    weeks = [w.label for w in quarter_weeks(2025, 1)]
    cells = query(con, "quarterly_cells", {"weeks": weeks}).astype({"n": "int64", "sensitive": bool})
    grid = protect(cells, "area_code", "category", audit=False)
    assert grid["suppressed"].sum() >= 4
    # The grid carries each cell's label and threshold: what a reader learns from "<5", "<10" and "..".
    intervals = privacy.suppression_intervals(grid, "n", "area_code", "category")
    assert (intervals["low"] < intervals["high"]).all(), intervals


def test_quarterly_map_states_missing_deliveries(built):
    _, soup = _map_html(built)
    intro = soup.find("header", id="inledning")
    notices = [p.get_text(" ", strip=True) for p in intro.find_all("p", class_="notice")]
    from pipelines.geography import STAND_IN_LABEL

    assert notices[0] == STAND_IN_LABEL
    assert notices[1].startswith("Inga leveranser ännu för vecka 1, 2, 3, 13")
    assert "Skolan saknar leverans för vecka 12 — siffrorna för de veckorna saknas, inte noll." in notices
    assert soup.find("h1").get_text(strip=True) == "Händelser per 1 000 invånare, kvartal 1 2025"
    order = [el.get("id") for el in soup.body.find_all(["header", "div", "section"], recursive=False)]
    assert order.index("inledning") < order.index(next(i for i in order if i and i.startswith("map_"))) < order.index(
        "tabell")
