"""The real polisen.se events feed (../shared/data/polisen-events, SOURCE.md): archive, raw snapshots, the
0-byte payload, revised events, county-level events and night summaries, gzip archives."""

from __future__ import annotations

import gzip
import json

import pytest

from pipelines import jobs
from pipelines.contracts import contract_for
from pipelines.settings import Home

from test_ingest_helpers import SHARED_DATA, ingest, query

EVENTS = SHARED_DATA / "polisen-events"


@pytest.fixture()
def home(tmp_path) -> Home:
    home = Home(tmp_path / "home").ensure()
    jobs.prepare_reference(home)
    return home


def test_the_zero_byte_payload_is_a_clean_nothing_delivered_receipt(home):
    path = next((EVENTS / "raw_snapshots").glob("events_EMPTY_*.json"))
    assert path.stat().st_size == 0
    receipt = ingest(home, contract_for("police_events"), path)
    assert receipt.status == "empty" and receipt.reason.endswith("nothing delivered")
    assert query(home, "SELECT status, rows_in FROM ingest_ledger") == [("empty", 0)]


def test_revised_events_replace_their_first_version_not_counted_twice(home, tmp_path):
    firsts, lasts = [], []
    for line in (EVENTS / "event_revisions.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["first_version"]["location"]["name"] == record["last_version"]["location"]["name"] == "Örebro":
            firsts.append(record["first_version"])
            lasts.append(record["last_version"])
    assert len(firsts) > 40
    (tmp_path / "first.json").write_text(json.dumps(firsts, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "last.json").write_text(json.dumps(lasts, ensure_ascii=False), encoding="utf-8")
    contract = contract_for("police_events")
    first = ingest(home, contract, tmp_path / "first.json")
    count = query(home, "SELECT count(*) FROM incidents")[0][0]
    before = dict(query(home, "SELECT pseudonym_text(partner_record_id), description FROM incidents"))
    last = ingest(home, contract, tmp_path / "last.json")
    assert first.rows_in == last.rows_in == len(firsts)
    assert query(home, "SELECT count(*) FROM incidents")[0][0] == count == first.rows_loaded
    after = dict(query(home, "SELECT pseudonym_text(partner_record_id), description FROM incidents"))
    assert sum(before[k] != after[k] for k in after) >= 20  # summaries were revised: the last version is kept
    # A late re-delivery of the first versions would flip them back: same revision, so the feed's order wins;
    # the archive is delivered before the snapshots for that reason (CONTRACTS.md).


def test_the_orebro_archive_and_raw_snapshots(home):
    contract = contract_for("police_events")
    receipts = [ingest(home, contract, EVENTS / "events_orebro_lan_2023-03_2026-08.json")]
    receipts += [ingest(home, contract, p) for p in sorted((EVENTS / "raw_snapshots").glob("*.json"))]
    for receipt in receipts:
        assert receipt.status in ("accepted", "empty"), receipt.reason
        assert receipt.rows_in == receipt.rows_loaded + receipt.rows_quarantined
    archive = receipts[0]
    reasons = {item["reason"]: item["count"] for item in archive.quarantine}
    # The rule for county-level events ("Örebro län"): quarantined with their own reason, never counted for
    # the municipality; other municipalities likewise.
    assert set(reasons) == {"municipality: county_level_only", "municipality: another_municipality"}
    assert reasons["municipality: county_level_only"] > 1000
    # "Sammanfattning natt" bundles are loaded once, as category other, at municipality precision.
    summaries = query(home, "SELECT DISTINCT category FROM incidents WHERE partner_category = 'Sammanfattning natt'")
    assert summaries == [("other",)]
    total = query(home, "SELECT count(*) FROM incidents")[0][0]
    # The snapshots overlap the archive: their events are upserts, not new rows.
    assert archive.rows_loaded <= total < archive.rows_loaded + sum(r.rows_loaded for r in receipts[1:])


def test_a_gzip_archive_of_json_lines_is_read(home, tmp_path):
    lines = (EVENTS / "event_revisions.jsonl").read_text(encoding="utf-8").splitlines()[:50]
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(json.dumps(json.loads(line)["last_version"], ensure_ascii=False)
                                             for line in lines).encode("utf-8")))
    receipt = ingest(home, contract_for("police_events"), path)
    assert receipt.status == "accepted" and receipt.rows_in == 50
    assert "gzip archive, expanded" in receipt.notes


def test_gazetteer_matches_whole_district_names_longest_first_and_only_one_district():
    import pandas as pd

    from pipelines.gazetteer import load_gazetteer, match_areas

    places = load_gazetteer("gazetteer_1880.yaml")
    text = pd.Series(["Bråk i Vivalla under natten", "Brand på Nya Hjärsta", "Inbrott i Hjärsta",
                      "Stöld i Sörbyängen", "Vivallavägen", "Från Vivalla till Varberga", None])
    found = match_areas(text, places).tolist()
    assert found[0] == places["Vivalla"] and found[1] == places["Nya Hjärsta"] != places["Hjärsta"] == found[2]
    assert found[3] == places["Sörbyängen"] != places["Sörby"]
    assert pd.isna(found[4]) and pd.isna(found[5]) and pd.isna(found[6])


def test_events_naming_a_district_are_placed_by_the_gazetteer(home):
    from pipelines.gazetteer import load_gazetteer

    receipt = ingest(home, contract_for("police_events"), EVENTS / "events_orebro_lan_2023-03_2026-08.json")
    assert receipt.status == "accepted"
    by_precision = dict(query(home, "SELECT location_precision, count(*) FROM incidents GROUP BY 1"))
    assert set(by_precision) == {"gazetteer", "municipality"} and by_precision["gazetteer"] > 50
    vivalla = load_gazetteer("gazetteer_1880.yaml")["Vivalla"]
    assert query(home, "SELECT count(*) FROM incidents WHERE area_code = ? AND location_precision = 'gazetteer'",
                 [vivalla])[0][0] > 5


def test_the_national_archive_gzip_is_read_whole_and_every_event_accounted_for(home):
    import time

    started = time.perf_counter()
    receipt = ingest(home, contract_for("police_events"), EVENTS / "events_sweden_2023-03_2026-08.jsonl.gz")
    seconds = time.perf_counter() - started
    assert receipt.status == "accepted" and receipt.rows_in == 85011
    assert receipt.rows_loaded + receipt.rows_quarantined == 85011
    assert receipt.rows_loaded > 1000  # Örebro municipality's events; the rest are other places
    assert seconds < 120, f"national archive took {seconds:.0f} s"
