"""The partner-file generator: deterministic, in each partner's real format, and carrying the planted truth.

The planted truths are checked through the written files (read with the contracts' own encodings, delimiters
and column names, placed with the geography module), not through the generator's internal arrays, so that a
test fails when the files stop showing what the truth file promises.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import openpyxl
import pandas as pd
import pytest
import yaml

from pipelines import generate as gen
from pipelines import geography
from pipelines.settings import PARTNER_CONTRACTS_DIR, POLISEN_EVENTS_DIR, SCHEMAS_DIR, Home

WEEKS = 26
CSV_PARTNERS = ("police_cases", "housing", "social_services", "home_care", "guards")


@functools.lru_cache(maxsize=None)
def contract(partner: str) -> dict:
    return yaml.safe_load((PARTNER_CONTRACTS_DIR / f"{partner}.yaml").read_text(encoding="utf-8"))


def source(partner: str, field: str) -> str | None:
    spec = contract(partner)["columns"].get(field)
    return None if spec is None else spec.get("from")


def tree_hashes(root: Path) -> dict[str, str]:
    folders = {"inbox", "reference", "config"}
    truth = {"generator_truth.json", "generator_rows.parquet"}
    wanted = [p for p in root.rglob("*")
              if p.is_file() and (p.relative_to(root).parts[0] in folders or p.name in truth)]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(wanted)}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("generated"))
    result = gen.generate(home, weeks=WEEKS)
    return home, result


def read_csv_delivery(path: Path, partner: str) -> pd.DataFrame:
    spec = contract(partner)["file"]
    return pd.read_csv(path, encoding=spec["encoding"], sep=spec["delimiter"], dtype=str, keep_default_na=False)


def read_xlsx_delivery(path: Path) -> pd.DataFrame:
    workbook = openpyxl.load_workbook(path, read_only=True)
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    return pd.DataFrame(rows[1:], columns=rows[0])


_ROWS: dict[tuple[Path, str], pd.DataFrame] = {}


def partner_rows(home: Home, partner: str) -> pd.DataFrame:
    """Every row a partner delivered, with the week (from the file name) and the contract's canonical fields."""
    if (home.root, partner) not in _ROWS:
        _ROWS[(home.root, partner)] = _read_partner_rows(home, partner)
    return _ROWS[(home.root, partner)].copy()


def _read_partner_rows(home: Home, partner: str) -> pd.DataFrame:
    frames = []
    for path in sorted(home.partner_inbox(partner).glob(f"{partner}_20*")):
        raw = read_xlsx_delivery(path) if path.suffix == ".xlsx" else read_csv_delivery(path, partner)
        frame = pd.DataFrame({"file": path.name, "row": np.arange(1, len(raw) + 1),
                              "week": re.search(r"(\d{4}-W\d{2})", path.name).group(1)})
        for field in ("record_id", "category", "place_type", "occurred_from", "address", "area_code", "latitude",
                      "longitude", "sweref99_e", "sweref99_n", "person_id", "description", "revision"):
            column = source(partner, field)
            frame[field] = raw[column].to_numpy() if column in raw.columns else None
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def placed(generated):
    """All coordinate/address/area rows of the CSV and Excel partners, placed in areas, categories mapped."""
    home, result = generated
    areas = geography.build_areas()
    register = geography.load_address_register(home.address_register)
    bad = {(b["file"], b["row"]) for b in result.truth["bad_rows"]}
    frames = []
    for partner in (*CSV_PARTNERS, "schools"):
        rows = partner_rows(home, partner)
        if partner == "police_cases":
            rows = rows[rows["revision"] == "1"]  # a revision repeats a case delivered the week before
        rows = rows[[(f, r) not in bad for f, r in zip(rows["file"], rows["row"])]].copy()
        mapping = contract(partner)["category_map"]
        rows["code"] = rows["category"].map(mapping)
        rows["partner"] = partner
        where = geography.place(rows[["sweref99_e", "sweref99_n", "latitude", "longitude", "address", "area_code"]]
                                .reset_index(drop=True), areas, register)
        rows["placed_area"] = where["area_code"].to_numpy(dtype=object)
        frames.append(rows)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------ determinism


def test_same_call_writes_byte_identical_files(generated, tmp_path):
    home, result = generated
    again = Home(tmp_path / "again")
    gen.generate(again, weeks=WEEKS)
    first, second = tree_hashes(home.root), tree_hashes(again.root)
    assert len(first) == 7 * WEEKS + 4
    assert first == second


def test_another_seed_writes_other_rows(generated, tmp_path):
    home, _ = generated
    other = Home(tmp_path / "other")
    gen.generate(other, weeks=2, last_week=gen.DEFAULT_LAST_WEEK, seed=7)
    name = f"police_cases/police_cases_{gen.DEFAULT_LAST_WEEK}.csv"
    assert (home.inbox / name).read_bytes() != (other.inbox / name).read_bytes()


def test_xlsx_has_fixed_document_and_zip_times(generated):
    home, _ = generated
    path = home.partner_inbox("schools") / f"schools_{gen.DEFAULT_LAST_WEEK}.xlsx"
    workbook = openpyxl.load_workbook(path)
    assert workbook.properties.modified == workbook.properties.created == datetime(2026, 11, 23, 6, 0)
    import zipfile

    with zipfile.ZipFile(path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2026, 11, 23, 6, 0, 0)}


# ------------------------------------------------------------------------------------------------ formats


def test_one_file_per_partner_and_week(generated):
    home, result = generated
    weeks = gen.iso_weeks(WEEKS, gen.DEFAULT_LAST_WEEK)
    assert list(result.weeks) == weeks and weeks[-1] == "2026-W47" and weeks[0] == "2026-W22"
    suffix = {"police_events": "json", "schools": "xlsx"}
    for partner in gen.PARTNERS:
        names = sorted(p.name for p in home.partner_inbox(partner).iterdir())
        assert names == [f"{partner}_{w}.{suffix.get(partner, 'csv')}" for w in weeks]
        assert (PARTNER_CONTRACTS_DIR / f"{partner}.yaml").exists()
    assert len(result.files) == 7 * WEEKS


@pytest.mark.parametrize("partner", CSV_PARTNERS)
def test_csv_files_decode_with_their_contract_and_have_its_columns(generated, partner):
    home, _ = generated
    spec = contract(partner)
    needed = {c["from"] for c in spec["columns"].values() if "from" in c}
    for path in sorted(home.partner_inbox(partner).iterdir()):
        data = path.read_bytes()
        text = data.decode(spec["file"]["encoding"])  # raises if the contract's encoding is wrong
        assert data.startswith(codecs.BOM_UTF8) == (spec["file"]["encoding"] == "utf-8-sig")
        header = text.splitlines()[0].split(spec["file"]["delimiter"])
        assert needed <= set(header), (path.name, needed - set(header))
        frame = read_csv_delivery(path, partner)
        assert len(frame) > 0 and frame.columns.tolist() == header


def test_template_partners_use_exactly_the_template_header():
    header = (SCHEMAS_DIR / "delivery_template.csv").read_text(encoding="utf-8").splitlines()
    assert header == [",".join(gen.TEMPLATE_COLUMNS)]
    for partner in ("social_services", "home_care", "guards"):
        assert [spec["from"] for spec in contract(partner)["columns"].values()] == [
            c for c in gen.TEMPLATE_COLUMNS]


def test_xlsx_and_json_have_their_contract_columns(generated):
    home, _ = generated
    needed = {c["from"] for c in contract("schools")["columns"].values()}
    for path in sorted(home.partner_inbox("schools").iterdir()):
        frame = read_xlsx_delivery(path)
        assert needed <= set(frame.columns)
        dates = frame[source("schools", "occurred_from")]
        assert sum(isinstance(v, datetime) for v in dates) >= len(dates) - 1  # real Excel date cells
    needed = {c["from"] for c in contract("police_events")["columns"].values()}
    for path in sorted(home.partner_inbox("police_events").iterdir()):
        events = json.loads(path.read_text(encoding="utf-8"))
        for event in events:
            keys = set(event) | {f"location.{k}" for k in event["location"]}
            assert needed <= keys


def test_windows_1252_files_are_not_utf8_and_need_cp1252(generated):
    home, _ = generated
    for partner in ("housing", "home_care"):
        data = b"".join(p.read_bytes() for p in sorted(home.partner_inbox(partner).iterdir()))
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
        assert data.decode("cp1252") != data.decode("latin-1")  # an en dash is 0x96: a control code in Latin-1
        assert "–" in data.decode("cp1252") and "ö" in data.decode("cp1252")
    housing = read_csv_delivery(home.partner_inbox("housing") / "housing_2026-W30.csv", "housing")
    costs = [c for c in housing["Kostnad kr"] if c]
    assert costs and all(re.fullmatch(r"\d{1,3}(\u00a0\d{3})*,\d{2}", c) for c in costs)
    assert any("\u00a0" in c for c in costs)
    assert housing["Fastighet"].str.fullmatch(r"\S+( \S+)? \d+:\d+").all()


def test_guards_coordinates_are_wgs84_with_decimal_comma_inside_the_municipality(generated):
    home, _ = generated
    rows = partner_rows(home, "guards")
    lat = rows["latitude"].str.replace(",", ".").astype(float)
    lon = rows["longitude"].str.replace(",", ".").astype(float)
    assert rows["latitude"].str.fullmatch(r"59,\d{6}").all()
    e, n = geography.to_sweref(lat, lon)
    import shapely

    assert shapely.contains_xy(geography.municipality_boundary(), e, n).all()


# ------------------------------------------------------------------------------------------------ personnummer


def canonical_pnr(text: str) -> str:
    digits = re.sub(r"\D", "", text)
    return digits[-10:]


def luhn_ok(ten: str) -> bool:
    check = gen.luhn_check_digit(np.array([[int(c) for c in ten[:9]]]))[0]
    return int(ten[9]) == int(check)


@pytest.mark.parametrize("partner", ["social_services", "home_care"])
def test_person_ids_are_valid_personnummer_in_several_forms(generated, partner):
    home, _ = generated
    ids = [v for v in partner_rows(home, partner)["person_id"] if v]
    assert len(ids) > 50
    assert all(luhn_ok(canonical_pnr(v)) for v in ids)
    forms = {re.sub(r"\d", "9", v) for v in ids}
    assert {"999999-9999", "999999999999", "9999999999", "999999\u20139999"} <= forms | {
        f.replace("+", "-") for f in forms}
    assert len(forms) >= 5
    if partner == "social_services":
        assert any(int(canonical_pnr(v)[4:6]) > 60 for v in ids)  # samordningsnummer: day + 60
    else:
        assert any("+" in v for v in ids)  # 100 years or older


def test_free_text_carries_personal_details_to_scrub(generated):
    home, result = generated
    social = " ".join(partner_rows(home, "social_services")["description"])
    pnr = re.findall(r"\b(?:(?:19|20)\d{10}|\d{6}[-+\u2013]\d{4}|(?:19|20)\d{6}-\d{4})\b", social)
    assert pnr and all(luhn_ok(canonical_pnr(p)) for p in pnr if len(re.sub(r"\D", "", p)) in (10, 12))
    assert re.search(r"(\+46 7\d|07\d)[- ]?\d", social)
    assert re.search(r"[A-ZÅÄÖ][a-zåäö]+(gatan|vägen|stigen|gränd|backen|allén) \d+", social)
    guards = " ".join(partner_rows(home, "guards")["description"])
    assert re.search(r"\b[A-Z]{3} \d{2}[0-9A-Z]\b", guards)  # a car plate
    kinds = {k for row in result.truth["free_text_with_personal_details"] for k in row["kinds"]}
    assert {"namn", "tel", "pnr", "adress"} <= kinds


# ------------------------------------------------------------------------------------------------ volumes, maps


def test_weekly_volumes_are_in_range(generated):
    home, _ = generated
    ranges = {"police_cases": (250, 350), "police_events": (15, 30), "housing": (40, 70), "schools": (10, 25),
              "social_services": (5, 15), "home_care": (3, 10), "guards": (30, 60)}
    weeks = gen.iso_weeks(WEEKS, gen.DEFAULT_LAST_WEEK)
    for partner, (lo, hi) in ranges.items():
        for week in weeks:
            path = next(home.partner_inbox(partner).glob(f"{partner}_{week}.*"))
            if partner == "police_events":
                count = len(json.loads(path.read_text(encoding="utf-8")))
            elif partner == "schools":
                count = len(read_xlsx_delivery(path))
                if gen.SCHOOL_HOLIDAYS.get(int(week[-2:]), 1) < 1:  # summer and autumn break: few reports
                    assert count <= 10, (week, count)
                    continue
            else:
                count = len(read_csv_delivery(path, partner))
            assert lo <= count <= hi, (partner, week, count)


@pytest.mark.parametrize("partner", [*CSV_PARTNERS, "schools", "police_events"])
def test_every_written_category_and_place_type_is_mapped(generated, partner):
    home, result = generated
    spec = contract(partner)
    taxonomy = set(yaml.safe_load((SCHEMAS_DIR / "taxonomy.yaml").read_text(encoding="utf-8"))["categories"])
    assert set(spec["category_map"].values()) <= taxonomy
    bad = {(b["file"], b["row"]) for b in result.truth["bad_rows"]}
    if partner == "police_events":
        rows = [(path.name, i, e["type"], None) for path in sorted(home.partner_inbox(partner).iterdir())
                for i, e in enumerate(json.loads(path.read_text(encoding="utf-8")), start=1)]
    else:
        frame = partner_rows(home, partner)
        rows = list(zip(frame["file"], frame["row"], frame["category"], frame["place_type"]))
    unmapped = [(f, r, c) for f, r, c, _ in rows if c not in spec["category_map"] and (f, r) not in bad]
    assert not unmapped
    deliberately = [(f, r, c) for f, r, c, _ in rows if (f, r) in bad and c not in spec["category_map"]]
    if partner in ("housing", "schools"):
        assert deliberately  # the blank and unknown categories are really there
        assert {c if isinstance(c, str) else "" for _, _, c in deliberately} == {"", gen.UNKNOWN_CATEGORY[partner]}
    places = {p for _, _, _, p in rows if p}
    assert places <= set(spec.get("place_type_map") or {}), places - set(spec.get("place_type_map") or {})


def test_the_deliberately_bad_rows_are_about_one_percent_and_noted(generated):
    home, result = generated
    for partner in ("housing", "schools"):
        noted = [b for b in result.truth["bad_rows"] if b["partner"] == partner]
        total = sum(result.truth["rows_per_week"][partner].values())
        assert 3 <= len(noted) <= max(3, 0.02 * total)
        assert {b["problem"] for b in noted} == {"blank_category", "unknown_category", "bad_date"}
        frame = partner_rows(home, partner)
        for item in noted:
            row = frame[(frame["file"] == item["file"]) & (frame["row"] == item["row"])].iloc[0]
            assert row["record_id"] == item["record_id"]
            if item["problem"] == "bad_date":
                assert isinstance(row["occurred_from"], str) and "/" in row["occurred_from"]
    others = [b for b in result.truth["bad_rows"] if b["partner"] == "police_events"]
    assert others and {b["problem"] for b in others} == {"other_municipality"}


def test_taxonomy_order_and_template_doc_lists_every_code_and_label():
    taxonomy = yaml.safe_load((SCHEMAS_DIR / "taxonomy.yaml").read_text(encoding="utf-8"))["categories"]
    assert list(taxonomy) == list(gen.CATEGORIES)
    doc = (SCHEMAS_DIR / "delivery_template.md").read_text(encoding="utf-8")
    for code, spec in taxonomy.items():
        assert f"| `{code}` | {spec['sv']} |" in doc
    for code, label in gen.TEMPLATE_PLACE_LABELS.items():
        assert f"| `{code}` | {label} |" in doc
    for column in gen.TEMPLATE_COLUMNS:
        assert f"| `{column}` |" in doc


# ------------------------------------------------------------------------------------------------ police events


def test_police_events_look_like_the_api_with_the_right_dst_offset(generated):
    home, _ = generated
    zone = ZoneInfo("Europe/Stockholm")
    offsets, unpadded, ids = set(), 0, []
    events = [e for p in sorted(home.partner_inbox("police_events").iterdir())
              for e in json.loads(p.read_text(encoding="utf-8"))]
    for event in events:
        stamp = datetime.strptime(event["datetime"], "%Y-%m-%d %H:%M:%S %z")
        local = stamp.astimezone(zone)
        assert stamp.utcoffset() == local.utcoffset(), event["datetime"]
        assert (local.hour, local.minute) == (stamp.hour, stamp.minute)
        offsets.add(event["datetime"][-6:])
        unpadded += bool(re.match(r"\d{4}-\d{2}-\d{2} \d:", event["datetime"]))
        assert event["location"]["name"] in ("Örebro", "Örebro län")
        assert re.fullmatch(r"\d{2}\.\d+,\d{2}\.\d+", event["location"]["gps"])
        assert event["url"].startswith("/aktuellt/handelser/2026/") and event["url"].endswith("/")
        assert event["name"].endswith(f", {event['type']}, {event['location']['name']}")
        ids.append(event["id"])
    assert offsets == {"+01:00", "+02:00"}  # the weeks cross the end of summer time (2026-10-25)
    assert 0.15 < unpadded / len(events) < 0.6
    assert len(ids) == len(set(ids))
    first_week = json.loads((home.partner_inbox("police_events") / "police_events_2026-W22.json").read_text("utf-8"))
    assert [e["datetime"] for e in first_week] == sorted((e["datetime"] for e in first_week),
                                                          key=lambda d: datetime.strptime(d, "%Y-%m-%d %H:%M:%S %z"),
                                                          reverse=True)  # newest first, as the API


def test_police_events_contract_maps_every_type_of_the_real_orebro_feed():
    real = POLISEN_EVENTS_DIR / "events_orebro_lan_2023-03_2026-08.json"
    if not real.exists():
        pytest.skip("shared polisen.se data not available")
    types = {e["type"] for e in json.loads(real.read_text(encoding="utf-8"))}
    assert len(types) > 60
    assert types <= set(contract("police_events")["category_map"])
    assert {t for t, _ in gen.POLICE_EVENT_TYPES} <= types  # the generator draws only real types


def test_local_times_exist_and_the_repeated_autumn_hour_is_used(generated):
    home, _ = generated
    zone = ZoneInfo("Europe/Stockholm")
    rows = partner_rows(home, "police_cases")
    rows = rows[rows["revision"] == "1"]  # revisions come in the following week's file
    times = pd.to_datetime(rows["occurred_from"], format="%Y-%m-%d %H:%M")
    # no time in the hour that does not exist in spring, and local times on the autumn night are plausible
    for t in times[(times.dt.month == 10) & (times.dt.day == 25)]:
        assert datetime(t.year, t.month, t.day, t.hour, t.minute, tzinfo=zone).utcoffset() is not None
    assert (times.dt.isocalendar().week.astype(int).map(lambda w: f"2026-W{w:02d}") == rows["week"]).all()


# ------------------------------------------------------------------------------------------------ planted truth


def test_rows_are_placed_where_the_truth_says(generated, placed):
    _, result = generated
    truth = pd.read_parquet(result.rows_file)
    truth = truth[(truth["partner"] != "police_events") & (truth["bad"] == "")]
    truth = truth.assign(area=np.where(truth["precision"] == "unplaced", None, truth["area_code"]))
    expected = truth.groupby(["partner", "iso_week", "category"], dropna=False)["area"].apply(
        lambda s: sorted(s.fillna("-"))).to_dict()
    got = placed.groupby(["partner", "week", "code"], dropna=False)["placed_area"].apply(
        lambda s: sorted(s.fillna("-"))).to_dict()
    assert got == expected


def test_hot_spots_concentrate_rows_in_their_grid_cells(generated, placed):
    _, result = generated
    points = placed[placed["partner"].isin(["police_cases", "guards"])]
    e = pd.to_numeric(points["sweref99_e"], errors="coerce").to_numpy(dtype=float)
    n = pd.to_numeric(points["sweref99_n"], errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(points["latitude"].str.replace(",", "."), errors="coerce").to_numpy(dtype=float)
    lon = pd.to_numeric(points["longitude"].str.replace(",", "."), errors="coerce").to_numpy(dtype=float)
    ge, gn = geography.to_sweref(lat, lon)
    e, n = np.where(np.isnan(e), ge, e), np.where(np.isnan(n), gn, n)
    cells = pd.Series(geography.grid_cell_ids(e, n)).value_counts()
    top = set(cells.index[:6])
    spots = result.truth["hot_spots"]
    assert len(spots) == 3
    for spot in spots:
        near = np.hypot(e - spot["sweref99_e"], n - spot["sweref99_n"]) < 150
        assert near.sum() > 50, spot["label"]
        assert spot["grid_cell_250m"] in top, (spot["label"], cells.head(8))


def test_unusual_week_is_a_clear_spike_in_its_area_and_category(generated, placed):
    _, result = generated
    truth = result.truth["unusual_week"]
    assert truth["iso_week"] == gen.iso_weeks(WEEKS, gen.DEFAULT_LAST_WEEK)[WEEKS - 1 - 8]
    cell = placed[(placed["placed_area"] == truth["area_code"]) & (placed["code"] == truth["category"])]
    per_week = cell.groupby("week").size().reindex(result.weeks, fill_value=0)
    others = per_week.drop(truth["iso_week"])
    assert per_week[truth["iso_week"]] >= 3 * max(others.mean(), 1)
    assert per_week[truth["iso_week"]] == per_week.max()
    assert per_week.tolist() == truth["rows_per_week"]


def test_intervention_lowers_its_categories_in_its_area_only(generated, placed):
    home, result = generated
    truth = result.truth["intervention"]
    register = yaml.safe_load(home.interventions_file.read_text(encoding="utf-8"))
    assert len(register) == 3
    keys = {"id", "title", "area_code", "kind", "responsible_partner", "starts_on", "ends_on", "categories"}
    assert all(set(entry) == keys for entry in register)
    planted = next(i for i in register if i["id"] == truth["id"])
    assert planted["area_code"] == truth["area_code"] and str(planted["starts_on"]) == truth["starts_on"]
    assert planted["categories"] == ["property_damage", "unsafe_place"]
    start = list(result.weeks).index(truth["start_week"])
    assert start == WEEKS - 1 - 12

    def before_after(areas) -> tuple[float, float]:
        rows = placed[placed["placed_area"].isin(areas) & placed["code"].isin(truth["categories"])]
        per_week = rows.groupby("week").size().reindex(result.weeks, fill_value=0).to_numpy()
        return per_week[:start].mean(), per_week[start:].mean()

    b, a = before_after([truth["area_code"]])
    cb, ca = before_after(truth["comparison_areas"])
    assert b >= 5  # enough to measure
    assert 0.8 < ca / cb < 1.3  # comparable areas: no change beyond season
    assert (a / b) / (ca / cb) < 0.8  # difference in differences shows the drop (true rate ratio 0.6)


def test_address_register_and_addresses_not_in_it(generated):
    home, result = generated
    register = pd.read_csv(home.address_register, dtype=str)
    assert register.columns.tolist() == ["address", "sweref99_e", "sweref99_n"]
    assert 3000 <= len(register) <= 6000 and register["address"].is_unique
    assert register["address"].str.fullmatch(r"[A-ZÅÄÖ][\w ]+ \d+A?").all()
    areas = geography.build_areas()
    where = geography.place(register[["sweref99_e", "sweref99_n"]], areas)
    assert (where["location_precision"] == "point").all()
    assert where["area_code"].nunique() == len(areas)
    missing = result.truth["addresses_not_in_register"]
    housing_rows = sum(result.truth["rows_per_week"]["housing"].values())
    assert 0 < sum(m["partner"] == "housing" for m in missing) < 0.1 * housing_rows
    keys = set(geography.normalise_address(register["address"]))
    assert all(geography.normalise_address(pd.Series([m["address"]])).iloc[0] not in keys for m in missing)


def test_truth_file_names_what_the_analysis_must_find(generated):
    home, result = generated
    truth = json.loads((home.work / "generator_truth.json").read_text(encoding="utf-8"))
    assert truth == json.loads(json.dumps(result.truth, default=str))
    assert {"hot_spots", "unusual_week", "intervention", "patterns", "bad_rows", "interventions_register"} <= set(truth)
    assert truth["intervention"]["true_rate_multiplier"] == 0.6
    assert all(spot["area_code"].startswith("1880C") for spot in truth["hot_spots"])


# ------------------------------------------------------------------------------------------------ benchmark


def test_generate_bench_writes_large_files_in_three_formats(tmp_path):
    home = Home(tmp_path / "bench")
    paths = gen.generate_bench(home, rows=20_000, seed=3)
    assert {p.parent.name for p in paths} == {"police_cases", "housing", "social_services"}
    total = 0
    for path in paths:
        partner = path.parent.name
        frame = read_csv_delivery(path, partner)
        needed = {c["from"] for c in contract(partner)["columns"].values()}
        assert needed <= set(frame.columns)
        total += len(frame)
        assert set(frame[source(partner, "category")]) <= set(contract(partner)["category_map"])
    assert total == 20_000
    with pytest.raises(UnicodeDecodeError):
        next(p for p in paths if p.parent.name == "housing").read_bytes().decode("utf-8")
    assert home.address_register.exists()
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in gen.generate_bench(home, rows=20_000, seed=3)]
