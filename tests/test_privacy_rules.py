"""Rules of PRIVACY.md that had no test able to fail (schemas/PRIVACY_RULES.md lists every rule with its tests).

- Keys: never from a file in the repository; a master key (or rotated chain) never shows itself nor pickles.
- Geography: shared maps never plot points (folium markers) from partner locations; every published area code
  is one of the installation's areas (never a grid cell, an address or a point).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from pipelines import privacy

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "var", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules"}  # not in git
# Files whose long hex runs are not keys: package hashes; the public police.uk Crime IDs (SHA-256 of public data).
NOT_KEYS = {"uv.lock", "tests/fixtures/police_uk"}
_HEX_RUN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{64,}(?![0-9A-Fa-f])")
# A folium/Leaflet layer that plots a point.
POINT_LAYERS = re.compile(r"L\.(?:marker|circleMarker|circle|heatLayer|markerClusterGroup)\s*\(")


def _rfc5869_outputs() -> str:
    """HKDF outputs of RFC 5869 appendix A's public inputs (test cases 1 and 3): test vectors, not keys."""
    ikm = bytes([0x0B] * 22)
    salt, info = bytes(range(0x0D)), bytes(range(0xF0, 0xFA))
    values = [privacy.hkdf_extract(salt, ikm), privacy.hkdf_sha256(ikm, salt, info, 42),
              privacy.hkdf_extract(b"", ikm), privacy.hkdf_sha256(ikm, None, b"", 42)]
    return " ".join(v.hex() for v in values)


def key_like_runs(root: Path) -> list[str]:
    """'path: line' of every random-looking 32-byte hex run (16 or more distinct bytes: a fake key such as
    "ab" * 32 or 00..ff has one or two) in the text files under ``root``, outside :data:`NOT_KEYS`."""
    vectors = _rfc5869_outputs()
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if (not path.is_file() or SKIP_DIRS & set(path.relative_to(root).parts)
                or any(relative == n or relative.startswith(n + "/") for n in NOT_KEYS)):
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        text = data.decode("utf-8", errors="ignore")
        for match in _HEX_RUN.finditer(text):
            run = match.group(0).lower()
            if len(set(bytes.fromhex(run[:64]))) >= 16 and run not in vectors:
                found.append(f"{relative}:{text.count(chr(10), 0, match.start()) + 1}")
    return found


def test_no_file_in_the_repository_holds_a_key(tmp_path):
    assert key_like_runs(REPO) == [], "a key-like secret is in the repository: keys come from the secret store"
    # The check finds a real key, in any case, and not the fake ones tests use.
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.env").write_text(
        f"EST_PSEUDONYM_KEY={privacy.new_random_key_hex().upper()}\nFAKE={'ab' * 32}\n")
    assert key_like_runs(tmp_path) == ["config/settings.env:1"]


def test_a_master_key_or_chain_never_shows_itself_nor_pickles():
    new = privacy.new_random_key_hex()
    chain = privacy.load_key("test", value=f"{new},{'ab' * 32}")
    for shown in (repr(chain), str(chain), f"{chain}", repr(privacy.derive_key(chain, "analysis"))):
        assert new not in shown and "ab" * 16 not in shown
    with pytest.raises(TypeError):
        pickle.dumps(chain)  # nor can it reach XCom or a file by serialisation


def test_shared_maps_plot_no_points(generated_home):
    pages = sorted(generated_home.out.rglob("*.html"))
    maps = [p for p in pages if "L.map(" in p.read_text(encoding="utf-8")]
    assert maps, "no map rendered: the check proves nothing"
    assert [p.name for p in pages if POINT_LAYERS.search(p.read_text(encoding="utf-8"))] == []
    # The check sees a point plotted the way folium would draw it.
    import folium

    plotted = folium.Map(location=[59.27, 15.21], tiles=None)
    folium.CircleMarker([59.2741, 15.2066], radius=3).add_to(plotted)
    assert POINT_LAYERS.search(plotted.get_root().render())


def test_free_text_is_stored_scrubbed(generated_home):
    """PRIVACY.md "Free text": inside the database free text is scrubbed. The generated deliveries carry
    personnummer, phone numbers, e-mail addresses, plates and addresses in their free text
    (tests/test_generate.py::test_free_text_carries_personal_details_to_scrub); what ingest stored has nothing
    left for the scrubber to remove, and the scrubber's placeholders show it did remove something."""
    from contextlib import closing

    import pandas as pd

    from pipelines import warehouse

    with closing(warehouse.connect(generated_home, read_only=True)) as con:
        stored = pd.Series([r[0] for r in con.execute(
            "SELECT description FROM incidents WHERE description IS NOT NULL").fetchall()], dtype=object)
    assert len(stored)
    again = privacy.scrub_text(stored)
    assert (again == stored).all(), "a stored description still holds something the scrubber removes"
    tokens = (privacy.TOKEN_PERSONNUMMER, privacy.TOKEN_PHONE, privacy.TOKEN_EMAIL, privacy.TOKEN_PLATE)
    assert all(stored.str.contains(t, regex=False).any() for t in tokens), "nothing scrubbed: the test proves nothing"


AREA_COLUMNS = ("Områdeskod", "area_code")  # the area column of every published CSV, Swedish and English


def _published_area_codes(out: Path) -> dict[str, set[str]]:
    import csv

    found: dict[str, set[str]] = {}
    for path in sorted(out.rglob("*.csv")):
        text = path.read_text(encoding="utf-8-sig")
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=";,")
        for row in csv.DictReader(text.splitlines(), dialect=dialect):
            for column in AREA_COLUMNS:
                if row.get(column):
                    found.setdefault(str(path.relative_to(out)), set()).add(row[column])
    return found


def _not_areas(out: Path, home) -> dict[str, list[str]]:
    """Per published CSV, the values of its area column that are not one of the installation's areas."""
    from contextlib import closing

    from pipelines import report_weekly, warehouse

    with closing(warehouse.connect(home, read_only=True)) as con:
        areas = {row[0] for row in con.execute("SELECT area_code FROM areas").fetchall()}
    allowed = areas | {report_weekly.UNPLACED, "unplaced"}
    return {name: sorted(codes - allowed) for name, codes in _published_area_codes(out).items() if codes - allowed}


def test_every_published_area_is_a_deso_area_or_the_unplaced_label(generated_home):
    # PRIVACY.md: the smallest published area is a DeSO area (or a merge of them); never a grid cell, an address
    # or a point. Every area code in every CSV under out/ must be one of the installation's areas.
    assert len(_published_area_codes(generated_home.out)) >= 2  # the weekly area table and the quarterly map
    assert _not_areas(generated_home.out, generated_home) == {}


def test_the_area_check_would_catch_a_grid_cell_in_a_published_table(generated_home, tmp_path):
    out = tmp_path / "out"
    weekly = next(generated_home.out.rglob("*_omraden.csv"))
    target = out / weekly.relative_to(generated_home.out)
    target.parent.mkdir(parents=True)
    lines = weekly.read_text(encoding="utf-8-sig").splitlines()
    lines.append(";".join(["6550250_1493250"] + lines[1].split(";")[1:]))  # a 250 m grid cell as an "area"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _not_areas(out, generated_home) == {str(target.relative_to(out)): ["6550250_1493250"]}
