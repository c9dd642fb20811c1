"""prepare_reference installs areas, partners, expectations and interventions, and leaves them as they are when
none of their sources changed since (warehouse_state, sql/010): every ingest, report and pack starts with it."""

from __future__ import annotations

from contextlib import closing

import yaml

from pipelines import geography, jobs, warehouse
from pipelines.settings import Home


def _installed(home: Home) -> dict:
    with closing(warehouse.connect(home, read_only=True)) as con:
        return {
            "at": con.execute("SELECT updated_at FROM warehouse_state WHERE name = 'reference'").fetchone()[0],
            "areas": con.execute("SELECT count(*) FROM areas").fetchone()[0],
            "interventions": con.execute("SELECT list(intervention_id ORDER BY 1) FROM interventions").fetchone()[0],
        }


def _register(home: Home, *area_codes: str) -> None:
    entries = [{"id": f"I-{number}", "title": "Belysning", "area_code": code, "kind": "lighting",
                "responsible_partner": "housing", "starts_on": "2026-02-01"}
               for number, code in enumerate(area_codes, start=1)]
    home.interventions_file.parent.mkdir(parents=True, exist_ok=True)
    home.interventions_file.write_text(yaml.safe_dump(entries), encoding="utf-8")


def test_unchanged_sources_leave_the_tables_and_a_changed_source_installs_them_again(tmp_path):
    home = Home(tmp_path / "home").ensure()
    areas = geography.build_areas()
    codes = list(areas["area_code"])
    jobs.prepare_reference(home)
    first = _installed(home)
    assert first["areas"] == len(areas) and not first["interventions"]

    jobs.prepare_reference(home)
    assert _installed(home) == first  # nothing rewritten

    _register(home, codes[0])  # the register edited
    jobs.prepare_reference(home)
    second = _installed(home)
    assert second["interventions"] == ["I-1"] and second["at"] > first["at"]

    jobs.prepare_reference(home, areas.iloc[:-1])  # one area fewer (a new area layer)
    third = _installed(home)
    assert third["areas"] == len(areas) - 1 and third["at"] > second["at"]

    renamed = areas.iloc[:-1].copy()
    renamed.loc[renamed.index[0], "area_name"] = "Nytt namn"  # a name alone
    jobs.prepare_reference(home, renamed)
    with closing(warehouse.connect(home, read_only=True)) as con:
        assert con.execute("SELECT area_name FROM areas WHERE area_code = ?", [codes[0]]).fetchone()[0] == "Nytt namn"


def test_a_removed_placing_index_is_built_again_when_the_reference_is_left_as_it_is(tmp_path):
    home = Home(tmp_path / "home").ensure()
    jobs.prepare_reference(home)
    for saved in home.area_index_cache.glob("area-index-*.npz"):
        saved.unlink()
    jobs.prepare_reference(home)  # unchanged: not installed again
    with closing(warehouse.connect(home)) as con:
        context = jobs.placing_context(con, home)
    assert len(context.area_index.codes) == len(geography.build_areas())
    assert list(home.area_index_cache.glob("area-index-*.npz"))


def test_a_migration_installs_the_reference_again(tmp_path):
    home = Home(tmp_path / "home").ensure()
    jobs.prepare_reference(home)
    with closing(warehouse.connect(home)) as con:
        con.execute("DELETE FROM schema_migrations WHERE version = 10")
        con.execute("DROP TABLE warehouse_state")
        con.execute("DELETE FROM areas")  # as if an older writer had left other areas
    jobs.prepare_reference(home)
    assert _installed(home)["areas"] == len(geography.build_areas())
