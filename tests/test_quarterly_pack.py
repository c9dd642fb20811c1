"""The quarterly analysis pack (pipelines/quarterly_pack.py) on the generated season, and the map's settings.

The pack for 2026Q4 (weeks W40-W53, data up to W47) is rendered once through the job the quarterly DAG runs
(jobs.render_quarterly), timed, and its files checked: index page self-contained and linking only files beside
it, the intervention follow-up finding the planted effect, hot spots and near repeats present, CSVs as Excel
on a Swedish Windows wants them, PNGs for print. The map's settings (a tile server, the police's vulnerable
areas) are checked on the small hand-made warehouse of tests/test_reports.py.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse

import pytest
from bs4 import BeautifulSoup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import PACK_QUARTER  # noqa: E402
from test_reports import QUARTER, build_warehouse, geojson_properties, layer_names  # noqa: E402

#: Issue 6 item 6: the whole pack for Örebro with 26 weeks of generated data in under a minute.
PACK_SECONDS_LIMIT = 60.0


@pytest.fixture(scope="module")
def pack(generated_season, season_pack):
    files, seconds = season_pack
    return generated_season, files, seconds


def _csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(raw[3:].decode("utf-8"), newline=""), delimiter=";"))


def test_pack_renders_in_under_a_minute(pack):
    home, files, seconds = pack
    print(f"quarterly pack {PACK_QUARTER}: {seconds:.1f} s")
    assert seconds < PACK_SECONDS_LIMIT
    names = [p.name for p in files]
    assert names[-1] == "index.html"
    for expected in (f"karta_{PACK_QUARTER}.html", f"karta_{PACK_QUARTER}.csv", f"forandring_{PACK_QUARTER}.csv",
                     f"hotspots_{PACK_QUARTER}.html", f"hotspots_{PACK_QUARTER}.csv", f"narhet_{PACK_QUARTER}.csv",
                     f"insatser_{PACK_QUARTER}.csv", f"karta_{PACK_QUARTER}.png", f"hotspots_{PACK_QUARTER}.png",
                     f"forandring_foregaende_{PACK_QUARTER}.png"):
        assert expected in names, expected
    # The audit entry records the pack and how long each part took.
    from pipelines import warehouse

    with closing(warehouse.connect(home)) as con:
        detail = con.execute(
            "SELECT detail FROM audit_log WHERE subject = ? ORDER BY audit_id DESC LIMIT 1",
            [f"quarterly/{PACK_QUARTER}/index.html"],
        ).fetchone()
    assert detail and json.loads(detail[0])["seconds"]["total"] < PACK_SECONDS_LIMIT


def test_index_is_swedish_self_contained_and_links_its_files(pack):
    home, files, _ = pack
    index = files[-1]
    soup = BeautifulSoup(index.read_text(encoding="utf-8"), "html.parser")
    assert soup.html["lang"] == "sv"
    assert not soup.find_all("script") and not soup.find_all("link") and not soup.find_all("img")
    for tag in soup.find_all(True):
        for attribute in ("src", "srcset", "action", "poster", "data"):
            assert attribute not in tag.attrs, (tag.name, attribute)
    links = [a["href"] for a in soup.find_all("a")]
    assert links
    for href in links:
        assert urlparse(href).scheme == "" and "/" not in href, href
        assert (index.parent / href).is_file(), href
    linked = set(links)
    for path in files[:-1]:
        assert path.name in linked, f"the index must link {path.name}"
    sections = [s["id"] for s in soup.find_all("section")]
    assert sections == ["kartor", "hotspots", "nara-upprepningar", "insatser", "tabeller"]
    # The comparison with the same quarter last year has no data: said, not drawn.
    notices = [p.get_text(" ", strip=True) for p in soup.find_all("p", class_="comparison")]
    assert notices == ["Ingen jämförelse med samma kvartal i fjol (kvartal 4 2025): det finns inga data för det kvartalet."]
    # The near-repeat section says the test runs on 250 m cells, not exact points.
    note = soup.find("p", class_="grid-note").get_text(" ", strip=True)
    assert "250 m" in note and "mittpunkter" in note


def test_index_intervention_follow_up(pack):
    _, files, _ = pack
    soup = BeautifulSoup(files[-1].read_text(encoding="utf-8"), "html.parser")
    rows = {
        tr.find("small").get_text(strip=True).strip("()"): [td.get_text(" ", strip=True) for td in tr.find_all("td")]
        for tr in soup.find("table", id="tabell-insatser").find("tbody").find_all("tr")
    }
    assert set(rows) == {"INS-2026-014", "INS-2026-009", "INS-2026-017"}
    planted = rows["INS-2026-014"]
    assert planted[4] == "13 / 13"
    assert planted[5].startswith("\u2212")  # a decrease, in percent
    assert planted[7].startswith("Minskning")
    table = _csv(next(p for p in files if p.name == f"insatser_{PACK_QUARTER}.csv"))
    row = next(r for r in table if r["Insats"] == "INS-2026-014")
    low, high = (float(row[k].replace(",", ".")) for k in ("90 % intervall, lägre", "90 % intervall, övre"))
    assert low <= 0.6 <= high < 1
    # Effect estimates only: no column holds a count.
    assert not any("Antal" in column for column in table[0])


def test_hot_spots_and_near_repeats(pack):
    home, files, _ = pack
    truth = json.loads((home.work / "generator_truth.json").read_text(encoding="utf-8"))
    hot = _csv(next(p for p in files if p.name == f"hotspots_{PACK_QUARTER}.csv"))
    assert hot, "the planted hot spots make some cells significant"
    assert {r["Klass"] for r in hot} <= {"Hot spot, 99 %", "Hot spot, 95 %", "Hot spot, 90 %", "Cold spot, 90 %",
                                         "Cold spot, 95 %", "Cold spot, 99 %"}
    # Cells follow the same small-count rule as every other published count.
    assert not any(r["Antal"] in {"1", "2", "3", "4"} for r in hot)
    hot_cells = {r["Ruta (SCB Rutid, 250 m)"] for r in hot if r["Klass"].startswith("Hot")}
    planted = {h["grid_cell_250m"] for h in truth["hot_spots"]}
    assert planted & hot_cells, "a planted hot spot's own cell is a significant hot spot"
    page = (home.out / "quarterly" / PACK_QUARTER / f"hotspots_{PACK_QUARTER}.html").read_text(encoding="utf-8")
    from pipelines.offline_assets import external_urls

    assert external_urls(page) == []
    knox = _csv(next(p for p in files if p.name == f"narhet_{PACK_QUARTER}.csv"))
    assert len(knox) == 4 * 5  # same cell, neighbour, 500-749 m, 750+ m x five time bands
    assert {r["Avstånd (rutornas mittpunkter)"] for r in knox} == {
        "Samma ruta", "Grannruta (250–499 m)", "500–749 m", "750 m eller mer"}


def test_pngs_for_print(pack):
    _, files, _ = pack
    for path in files:
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path.name


def test_change_map_layer_and_its_table(pack):
    home, files, _ = pack
    text = (home.out / "quarterly" / PACK_QUARTER / f"karta_{PACK_QUARTER}.html").read_text(encoding="utf-8")
    assert layer_names(text)[-1] == "Förändring mot föregående kvartal"
    assert "Förändring mot samma kvartal i fjol" not in layer_names(text)
    table = _csv(next(p for p in files if p.name == f"forandring_{PACK_QUARTER}.csv"))
    assert {r["Jämförelsekvartal"] for r in table} == {"2026Q3"}
    # A change is shown only where neither quarter's count is hidden.
    for row in table:
        hidden = row[f"Antal {PACK_QUARTER}"].startswith(("<", "..")) or row["Antal 2026Q3"].startswith(("<", ".."))
        assert (row["Förändring per 1 000 invånare och 13 veckor"] == "–") or not hidden


# --------------------------------------------------------------------------------------------------------
# The map's settings, on the small warehouse
# --------------------------------------------------------------------------------------------------------


@pytest.fixture()
def small(tmp_path):
    home, con = build_warehouse(tmp_path / "home")
    yield home, con
    con.close()


def _map(small) -> str:
    from pipelines.report_quarterly import render_quarterly

    home, con = small
    return next(p for p in render_quarterly(con, home, QUARTER) if p.suffix == ".html").read_text(encoding="utf-8")


def test_no_tile_server_by_default(small, monkeypatch):
    monkeypatch.delenv("EST_TILE_URL", raising=False)
    text = _map(small)
    assert "L.tileLayer(" not in text
    from pipelines.offline_assets import external_urls

    assert external_urls(text) == []


def test_a_municipal_tile_server_when_configured(small, monkeypatch):
    url = "https://karta.example.se/tiles/{z}/{x}/{y}.png"
    monkeypatch.setenv("EST_TILE_URL", url)
    monkeypatch.setenv("EST_TILE_ATTRIBUTION", "© Exempel kommun")
    text = _map(small)
    assert text.count(json.dumps(url)) == 1
    from pipelines.offline_assets import external_urls

    assert external_urls(text) == [url]  # that server, and nothing else
    soup = BeautifulSoup(text, "html.parser")
    assert "karta.example.se" in soup.find("p", class_="tiles").get_text()
    monkeypatch.setenv("EST_TILE_URL", "javascript:alert(1)//{z}{x}{y}")
    with pytest.raises(ValueError, match="EST_TILE_URL"):
        _map(small)


def test_vulnerable_areas_overlay_from_a_user_file(small, monkeypatch, tmp_path):
    import geopandas as gpd
    import shapely

    layer = gpd.GeoDataFrame(
        {"klass": ["särskilt utsatt", "okänd"], "namn": ["<script>alert(2)</script>", "${alert(3)}"]},
        geometry=[shapely.box(511100, 6574100, 511900, 6574900), shapely.box(512100, 6573100, 512900, 6573900)],
        crs="EPSG:3006",
    )
    path = tmp_path / "utsatta.geojson"
    layer.to_file(path, driver="GeoJSON")
    monkeypatch.setenv("EST_VULNERABLE_AREAS", str(path))
    text = _map(small)
    overlays = [p for p in geojson_properties(text, overlays=True) if p["label"] != p["name"] or "Insats" not in p["label"]]
    labels = sorted(p["label"] for p in overlays if not p["label"].startswith("Insats"))
    assert labels == ["Särskilt utsatt område", "Utsatt område (polisens klassning)"]
    assert "alert(2)" not in text and "alert(3)" not in text  # the file's text is never shown
    monkeypatch.setenv("EST_VULNERABLE_AREAS", str(tmp_path / "saknas.gpkg"))
    with pytest.raises(ValueError, match="EST_VULNERABLE_AREAS"):
        _map(small)
