"""Issue 5 end to end on generated deliveries: the unusual week as the reader gets it (HTML, CSV, PDF), and a
backfill that reproduces the original bytes.

What "the same bytes" honestly means: a report for week W depends only on the deliveries covering W and the
weeks before it (baseline, history for the variation test and the forecast, completeness, the "newest delivery"
time printed instead of a wall clock). Deliveries for weeks after W change none of that, so rendering W again
after they are ingested must give byte-identical HTML, CSV and PDF. A late delivery that does cover W (a
partner's correction) changes W's numbers, and should: that is a new version, not a backfill of the same data.
"""

from __future__ import annotations

import re
import time
import unicodedata
from contextlib import closing

import pytest
from bs4 import BeautifulSoup

from conftest import TEST_KEY
from pipelines import pdf, report_weekly, warehouse

UNUSUAL_WEEK = "2026-W39"


def _text(data: bytes) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", pdf.pdf_text(data)))


@pytest.fixture(scope="module")
def unusual_report(generated_season, tmp_path_factory):
    started = time.perf_counter()
    with closing(warehouse.connect(generated_season)) as con:
        paths = report_weekly.render_weekly(con, generated_season, UNUSUAL_WEEK)
    seconds = time.perf_counter() - started
    print(f"\nrender {UNUSUAL_WEEK} (HTML + CSV + PDF): {seconds:.1f} s")
    return {p.suffix if p.suffix != ".csv" else p.stem.rsplit("_", 1)[-1]: p for p in paths}, seconds


#: The Swedish CSV headers as the recipients have them (the trend's further columns are the category labels).
SWEDISH_HEADERS = {
    "kategorier": ["Kategori (kod)", "Kategori", "Antal denna vecka", "Normalvärde (snitt 8 veckor)", "Förändring",
                   "Utöver normal variation"],
    "omraden": ["Områdeskod", "Område", "Befolkning", "Antal denna vecka", "Per 1 000 invånare",
                "Normalvärde (snitt 8 veckor)", "Förändring", "Utöver normal variation"],
    "leveranser": ["Samverkanspart (kod)", "Samverkanspart", "Levererat", "Leveranser", "Händelser denna vecka",
                   "Inlästa rader", "Rader i karantän", "Andel i karantän", "Kommentar"],
    "avvikelser": ["Områdeskod", "Område", "Kategori (kod)", "Kategori", "Antal denna vecka", "Förväntat", "q-värde"],
    "prognos": ["Vecka", "Nivå", "Kod", "Namn", "Prognos (median)", "80 % intervall"],
    "trend": ["Vecka", "Totalt"],
}
#: Headers that are the same word in both languages.
ENGLISH_EQUALS_SWEDISH: set[str] = set()


def test_swedish_csv_headers_are_unchanged(unusual_report):
    paths, _ = unusual_report
    assert report_weekly.BASELINE_WEEKS == 8
    for name, expected in SWEDISH_HEADERS.items():
        header = paths[name].read_text(encoding="utf-8-sig").splitlines()[0].split(";")
        assert header[: len(expected)] == expected, (name, header)


def test_unusual_week_is_flagged_in_the_report(unusual_report):
    paths, seconds = unusual_report
    soup = BeautifulSoup(paths[".html"].read_text(encoding="utf-8"), "html.parser")
    table = soup.find("table", id="tabell-avvikelser")
    assert table is not None
    rows = [[td.get_text(" ", strip=True) for td in tr.find_all("td")] for tr in table.find("tbody").find_all("tr")]
    assert any("1880C1080" in r[0] and r[1] == "Fordonsbrand" for r in rows), rows
    assert len(rows) <= 2  # the planted week, at most one other
    flagged = paths["avvikelser"].read_text(encoding="utf-8-sig")
    assert "1880C1080;" in flagged and "vehicle_fire" in flagged
    assert seconds < 30


def test_report_has_forecast_charts_and_csv_behind_them(unusual_report):
    paths, _ = unusual_report
    soup = BeautifulSoup(paths[".html"].read_text(encoding="utf-8"), "html.parser")
    heading = soup.find("section", id="prognos").find("h2").get_text(strip=True)
    assert heading == "Prognos för vecka 40"
    rows = soup.find("table", id="tabell-prognos-kategorier").find("tbody").find_all("tr")
    intervals = [tr.find_all("td")[2].get_text(strip=True) for tr in rows]
    assert sum(bool(re.fullmatch(r"\d+–\d+", i)) for i in intervals) >= 5
    assert soup.find("figure", id="diagram-trend").find("svg") is not None
    assert soup.find("figure", id="diagram-kategorier").find("svg").find_all("rect")
    assert not soup.find_all(["img", "script", "link"])
    for name in ("kategorier", "omraden", "leveranser", "avvikelser", "prognos", "trend"):
        assert paths[name].read_bytes().startswith("\ufeff".encode())
    trend = paths["trend"].read_text(encoding="utf-8-sig").splitlines()
    assert len(trend) == 1 + report_weekly.TREND_WEEKS and trend[-1].startswith(UNUSUAL_WEEK + ";")
    prognos = paths["prognos"].read_text(encoding="utf-8-sig")
    assert "2026-W40;Kategori;" in prognos


def test_report_swedish_formats(unusual_report):
    paths, _ = unusual_report
    text = paths[".html"].read_text(encoding="utf-8")
    assert "21–27 september 2026" in text and "Veckorapport vecka 39, 2026" in text
    assert "Prognos för vecka 40" in text and "28 september–4 oktober 2026" in text
    assert report_weekly.format_int(1234) == "1\u00a0234" and report_weekly.format_decimal(1234.5) == "1\u00a0234,5"


@pytest.mark.skipif(pdf.chromium() is None, reason="no Chromium to print the PDF (apt-get install chromium)")
def test_pdf_is_the_same_report(unusual_report):
    paths, _ = unusual_report
    data = paths[".pdf"].read_bytes()
    assert data.startswith(b"%PDF-")
    text = _text(data)
    for expected in ("Veckorapport vecka 39, 2026", "Sammanfattning", "Vad har hänt", "Vad görs",
                     "Prognos för vecka 40", "Datakvalitet och leveranser", "Fordonsbrand", "Brickebacken (1880C1080)"):
        assert expected in text, expected
    # Chromium's print time is replaced by the time the newest delivery was received (printed in the footer)
    footer = re.search(r"mottagen (\d{4})-(\d{2})-(\d{2}) kl\. (\d{2}):(\d{2})", paths[".html"].read_text("utf-8"))
    stamps = re.findall(rb"/(?:CreationDate|ModDate) \(D:(\d{14})", data)
    assert stamps and all(s[:12].decode() == "".join(footer.groups()) for s in stamps), stamps


@pytest.mark.skipif(pdf.chromium() is None, reason="no Chromium to print the PDF (apt-get install chromium)")
def test_backfill_of_an_earlier_week_gives_the_same_bytes(tmp_path):
    from pipelines import generate, jobs
    from pipelines.contracts import load_contracts
    from pipelines.settings import Home

    home = Home(tmp_path / "backfill").ensure()
    generate.generate(home, weeks=6, last_week="2026-W10")
    jobs.prepare_reference(home)
    week, upto_week = "2026-W08", "2026-W09"
    contracts = load_contracts()

    def ingest(upto: bool) -> None:
        for partner in contracts:
            files = jobs.new_files(home, partner)
            chosen = [f for f in files if (re.search(r"(\d{4}-W\d{2})", f.name) or [None, "9999"])[1] <= upto_week] \
                if upto else files
            if chosen:
                jobs.ingest_files(home, partner, chosen, TEST_KEY)
        jobs.aggregate(home)

    ingest(upto=True)  # up to W+1: W+1's deliveries reach back into W (a case recorded Monday, from Sunday)
    first = {p.name: p.read_bytes() for p in jobs.render_weekly(home, week)}
    assert f"veckorapport_{week}.pdf" in first
    ingest(upto=False)  # the later weeks arrive
    again = {p.name: p.read_bytes() for p in jobs.render_weekly(home, week)}
    assert again.keys() == first.keys()
    changed = [n for n in first if first[n] != again[n]]
    for n in changed:
        if n.endswith(".csv"):
            print(n, first[n].decode("utf-8-sig"), again[n].decode("utf-8-sig"), sep="\n")
    assert changed == []


def test_english_variant_and_partner_view(generated_season):
    with closing(warehouse.connect(generated_season)) as con:
        english = report_weekly.render_weekly(con, generated_season, UNUSUAL_WEEK, pdf=False, lang="en")
        partner = report_weekly.render_weekly(con, generated_season, UNUSUAL_WEEK, pdf=False,
                                              audience="partner:housing")
        with pytest.raises(ValueError):
            report_weekly.build_weekly(con, UNUSUAL_WEEK, audience="partner:../x")
        with pytest.raises(ValueError):
            report_weekly.build_weekly(con, UNUSUAL_WEEK, lang="de")
    soup = BeautifulSoup(next(p for p in english if p.suffix == ".html").read_text("utf-8"), "html.parser")
    assert soup.html["lang"] == "en"
    assert [s.find("h2").get_text(strip=True) for s in soup.find_all("section")] == [
        "Summary", "What happened", "What is being done", "Forecast for week 40",
        "Data completeness and deliveries", "About the figures"]
    assert "21–27 September 2026" in soup.get_text()
    assert "Vehicle fire in Brickebacken (1880C1080)" in soup.find("section", id="sammanfattning").get_text()

    # every text of the English report comes from the English catalogue, the CSV headers and the kinds too
    kinds = [tr.find_all("td")[2].get_text(strip=True)
             for tr in soup.find("table", id="tabell-insatser").find("tbody").find_all("tr")]
    assert kinds and set(kinds) <= {"Situational prevention", "Social prevention", "Camera surveillance", "Patrol",
                                    "Physical environment"}, kinds
    swedish = {h for headers in SWEDISH_HEADERS.values() for h in headers} - ENGLISH_EQUALS_SWEDISH
    for path in (p for p in english if p.suffix == ".csv"):
        header = path.read_text(encoding="utf-8-sig").splitlines()[0].split(";")
        assert not swedish & set(header), (path.name, header)
        assert not re.search(r"[åäöÅÄÖ]", ";".join(header)), (path.name, header)
    forecast_csv = next(p for p in english if p.name.endswith("_prognos.csv")).read_text(encoding="utf-8-sig")
    assert ";Category;" in forecast_csv and ";Area;" in forecast_csv and ";Kategori;" not in forecast_csv

    html = next(p for p in partner if p.suffix == ".html")
    assert html.parent.name == "housing" and html.parent.parent.name == "partners"
    soup = BeautifulSoup(html.read_text("utf-8"), "html.parser")
    own = soup.find("table", id="tabell-egna-leveranser")
    assert own is not None and len(own.find("tbody").find_all("tr")) >= 1
    # the shared tables are the recipients' ones: the same category table as the Swedish report
    recipients = BeautifulSoup((generated_season.out / "weekly" / UNUSUAL_WEEK / f"veckorapport_{UNUSUAL_WEEK}.html")
                               .read_text("utf-8"), "html.parser")
    assert str(soup.find("table", id="tabell-kategorier")) == str(recipients.find("table", id="tabell-kategorier"))


def test_message_catalogues_have_the_same_keys():
    from pipelines import i18n

    sv, en = i18n.messages("sv"), i18n.messages("en")
    assert set(sv.catalogue) == set(en.catalogue)
    template = (report_weekly.REPORTS_DIR / "weekly.html.j2").read_text("utf-8")
    for key in re.findall(r"t\('([a-z_0-9]+)'", template):
        assert key in sv.catalogue, key
