"""`est bench` measures real work and checks its own output: a small size end to end, and each check failing
when the output it guards is broken."""

from __future__ import annotations

import json
from contextlib import closing

import pytest

from pipelines import bench, warehouse
from pipelines.settings import Home

KEY = bytes.fromhex("5a" * 32)


# A handful of neighbouring municipalities stands in for all 290 (whose areas take about 20 s to build): their
# generalised boundaries overlap a little, as the national layer's do.
MUNICIPALITIES = ("1880", "1814", "1881", "1862", "1885")


@pytest.fixture(scope="module", params=["municipality", "national"])
def small_bench(request, tmp_path_factory):
    home = Home(tmp_path_factory.mktemp("bench")).ensure()
    bench.prepare_size(home, 30_000, echo=lambda line: None, areas=request.param, municipalities=MUNICIPALITIES)
    figures = bench.run_size(home, 30_000, KEY, echo=lambda line: None, areas=request.param)
    return home, figures


def test_a_size_runs_end_to_end_and_passes_its_own_checks(small_bench):
    _, figures = small_bench
    assert figures["rows"] == 30_000 == figures["rows_loaded"] + figures["rows_quarantined"]
    assert figures["checks"]["pseudonyms_checked"] > 100 and figures["checks"]["pseudonyms_wrong"] == 0
    assert figures["checks"]["placements_checked"] > 100 and figures["checks"]["placements_wrong"] == 0
    assert set(figures["stage_rows_per_second"]) == set(bench.STAGES)
    assert all(figures["stage_rows_per_second"][stage] for stage in bench.STAGES)
    assert figures["end_to_end_rows_per_second"] > 0 and figures["peak_memory_mb"] > 0


def test_the_areas_placed_against_are_recorded_and_incidents_spread_over_them(small_bench):
    home, figures = small_bench
    bench_home = bench._size_home(home, 30_000)
    with closing(warehouse.connect(bench_home, read_only=True)) as con:
        municipalities = {row[0] for row in con.execute(
            "SELECT DISTINCT a.municipality_code FROM incidents AS i JOIN areas AS a USING (area_code)").fetchall()}
    if figures["areas"]["kind"] == "municipality":
        assert figures["areas"] == {"kind": "municipality", "count": 87, "municipalities": 1}
        assert municipalities == {"1880"}
    else:
        assert figures["areas"]["municipalities"] == len(MUNICIPALITIES) and figures["areas"]["count"] > 87
        assert municipalities == set(MUNICIPALITIES)  # placed by population over all of them
        assert bench.national_areas_path(home).is_file()  # kept for the next run


def _tampered(home: Home, sql: str):
    """A copy of the bench warehouse with one thing broken, opened read-only like the check opens it."""
    bench_home = bench._size_home(home, 30_000)
    copy = Home(home.work / "tampered")
    copy.ensure()
    copy.db_path.write_bytes(bench_home.db_path.read_bytes())
    with closing(warehouse.connect(copy)) as con:
        con.execute(sql)
    return closing(warehouse.connect(copy, read_only=True)), bench_home


def _check(con, bench_home, figures):
    return bench.self_check(con, bench_home, KEY, figures["rows"], figures["rows_loaded"],
                            figures["rows_quarantined"])


@pytest.mark.parametrize("sql, complaint", [
    ("UPDATE incidents SET partner_record_id = pseudonym_key(md5(pseudonym_text(partner_record_id)) "
     "|| md5(pseudonym_text(partner_record_id))) "
     "WHERE partner = 'police_cases'", "pseudonyms"),
    ("UPDATE incidents SET area_code = '1880C1010' WHERE partner = 'police_cases'", "placements"),
    ("INSERT INTO incidents SELECT * FROM incidents LIMIT 1", "stored rows"),
    ("DELETE FROM weekly_counts_coded WHERE n > 0 AND area_code IS NOT NULL "  # weekly_counts is its view
     "AND rowid IN (SELECT min(rowid) FROM weekly_counts_coded WHERE area_code IS NOT NULL)", "aggregate"),
])
def test_each_self_check_fails_when_its_output_is_broken(small_bench, sql, complaint):
    home, figures = small_bench
    opened, bench_home = _tampered(home, sql)
    with opened as con, pytest.raises(bench.BenchCheckFailed, match=complaint):
        _check(con, bench_home, figures)


def test_the_command_writes_json_with_every_size(tmp_path):
    home = Home(tmp_path / "home").ensure()
    out = tmp_path / "figures.json"
    figures = bench.run_bench(home, sizes=(5_000, 10_000), json_path=out, echo=lambda line: None, airflow=False,
                              municipalities=MUNICIPALITIES)
    written = json.loads(out.read_text())
    assert written["areas"]["kind"] == "national" and written["areas"]["municipalities"] == len(MUNICIPALITIES)
    assert all(size["areas"]["count"] == written["areas"]["count"] for size in written["sizes"])
    assert "areas: national" in bench.render_table(written)
    assert [size["rows"] for size in written["sizes"]] == [5_000, 10_000] == [s["rows"] for s in figures["sizes"]]
    assert "rows_per_second_largest_over_smallest" in written
    assert "| **end to end** |" in bench.render_table(written)
    # How fast the shared machine ran, before and after each size: figures from two runs compare only with it.
    assert all(0 < size["yardstick_seconds"][when] < 60 for size in written["sizes"] for when in ("before", "after"))
    assert "| yardstick before/after (s) |" in bench.render_table(written)
    assert not bench._size_home(home, 5_000).root.exists()  # gigabytes at real sizes: removed after use


def test_ingesting_keeps_freed_memory_for_the_next_file():
    """After jobs.reuse_freed_memory (called by every ingest run), a large buffer freed and allocated again
    (a file's arrays, the next file's) reuses the same memory: no page is faulted in from the kernel again."""
    import resource

    import numpy as np

    from pipelines import jobs

    def faults_reallocating() -> int:
        first = np.ones(8_000_000)  # 64 MB, as a file's columns are
        del first
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        again = np.ones(8_000_000)
        del again
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    jobs.reuse_freed_memory()
    assert faults_reallocating() < 50  # 64 MB of fresh pages is thousands of faults (hundreds as huge pages)
