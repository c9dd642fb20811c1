"""`est bench`: rows per second of each stage at several sizes, the Airflow week and the quarterly pack.

Each size runs in a process of its own, so that its peak memory is its own, in a bench home of its own that
starts from an empty warehouse. The generated files are written before the clock starts (generating is not the
pipeline's work). The bench checks its own output, so that speed never comes from skipped work: every row
loaded or quarantined, no record held twice, every loaded row counted, a sample of stored pseudonyms against
Python's own `hmac`, and a sample of placements against an exact point-in-polygon test (shapely).

The incidents are placed against national-scale areas by default (``--areas national``: all 290 municipalities'
5,984 stand-in DeSO, built once in about 20 s and kept under ``work/bench/``), as the issue's targets are set;
``--areas municipality`` keeps the installation's own 87 for a quick run.

Figures on a shared 2-core machine vary from run to run: compare ratios and repeated runs, not one timing.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pipelines.settings import KEY_ENV_VAR, Home

AREAS = ("national", "municipality")  # all 290 municipalities' 5,984 stand-in DeSO, or Örebro's 87
STAGES = ("read", "canonical", "validate", "pseudonymise", "scrub", "place", "load", "aggregate")
DEFAULT_SIZES = (1_000_000, 3_000_000, 10_000_000)
BENCH_SEED = 7
# The self-checks' samples: enough to catch a systematic error, small enough to re-read cheaply.
PSEUDONYM_SAMPLE = 1_000
PLACEMENT_SAMPLE = 2_000
# The Airflow week: a half year of history ingested before the clock starts, then the last week delivered.
AIRFLOW_HISTORY_WEEKS = 26


def peak_memory_mb() -> float:
    # ru_maxrss is in kilobytes on Linux: the process's peak resident memory.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_yardstick(repeats: int = 3) -> float:
    """Seconds of a fixed single-thread workload (Python bytecode, SHA-256 over 16 MB, a numpy sort of a million
    numbers), the median of ``repeats``: how fast this shared machine ran at that moment. The same code has run
    at 14 s and at 25-37 s for 10 M rows on different days here; the pipeline's figures from two runs compare
    only alongside this one (a larger yardstick is a slower machine)."""
    import numpy as np

    numbers = np.random.default_rng(0).random(1_000_000)
    payload = bytes(16 * 2**20)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for value in range(1_000_000):
            total += value * value
        hashlib.sha256(payload).digest()
        np.sort(numbers)
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds), 4)


class BenchCheckFailed(AssertionError):
    """The bench's own output is wrong: its figures must not be used."""


# --------------------------------------------------------------------------------------------------------------
# One size, in its own process
# --------------------------------------------------------------------------------------------------------------

def _size_home(home: Home, rows: int) -> Home:
    return Home(home.work / f"bench-{rows}")


def national_areas_path(home: Home) -> Path:
    """Where the bench keeps the national stand-in areas between runs (generated: under work/, never committed)."""
    return home.work / "bench" / "national-areas.parquet"


def bench_areas(home: Home, areas: str = "national", municipalities=None, echo: Callable[[str], None] = print):
    """The areas a bench run places against: ``"national"`` (all 290 municipalities' stand-in DeSO, built once
    into :func:`national_areas_path` and read from there afterwards; ``municipalities`` narrows them, for tests)
    or ``"municipality"`` (the installation's own, Örebro's 87)."""
    from pipelines import geography

    if areas == "municipality":
        return geography.build_areas()
    if areas != "national":
        raise ValueError(f"areas must be one of {AREAS}, not {areas!r}")
    started = time.perf_counter()
    frame = geography.national_areas(national_areas_path(home), municipalities,
                                     echo=lambda line: echo(f"bench: {line}"))
    echo(f"bench: {len(frame):,} national areas ready ({time.perf_counter() - started:.1f} s)")
    return frame


def prepare_size(home: Home, rows: int, echo: Callable[[str], None] = print, areas: str = "national",
                 municipalities=None) -> list[Path]:
    """A bench home with an empty warehouse and ``rows`` generated incidents in its partners' inboxes, drawn over
    the ``areas`` (see :func:`bench_areas`)."""
    from pipelines import generate

    frame = bench_areas(home, areas, municipalities, echo)
    bench_home = _size_home(home, rows)
    if bench_home.root.exists():
        shutil.rmtree(bench_home.root)  # every run starts from nothing: no warehouse, no ledger, no receipts
    bench_home.ensure()
    started = time.perf_counter()
    files = generate.generate_bench(bench_home, rows=rows, seed=BENCH_SEED,
                                    areas=frame if areas == "national" else None)
    echo(f"bench: generated {rows:,} incidents over {len(frame):,} areas in {len(files)} files "
         f"({time.perf_counter() - started:.1f} s)")
    return files


def run_size(home: Home, rows: int, key: bytes, echo: Callable[[str], None] = print,
             areas: str = "national") -> dict:
    """Push the prepared files of one size through the pipeline, check the result, return the figures.

    The bench home's warehouse gets the areas the files were generated over (the national ones as
    :func:`prepare_size` left them in :func:`national_areas_path`), before the clock starts."""
    import geopandas as gpd

    from pipelines import jobs, warehouse

    bench_home = _size_home(home, rows)
    files = sorted(p for p in bench_home.inbox.glob("*/*.csv"))
    if areas == "national":
        installed = gpd.read_parquet(national_areas_path(home))
        installed["population"] = installed["population"].astype("Int64")
    else:
        installed = None
    jobs.prepare_reference(bench_home, areas=installed)
    with closing(warehouse.connect(bench_home, read_only=True)) as con:
        area_count, municipality_count = con.execute(
            "SELECT count(*), count(DISTINCT municipality_code) FROM areas").fetchone()
    stage_seconds: dict[str, float] = {}
    rows_in = rows_loaded = rows_quarantined = 0
    yardstick_before = machine_yardstick()
    started = time.perf_counter()
    # Every partner's files in one pass, as `est run` takes them: one connection, the next partner's first file
    # prepared while the last one loads. (Each partner's ingest DAG takes its own files the same way.)
    receipts = jobs.ingest_deliveries(
        bench_home, [(path.parent.name, path) for path in files], key, stage_seconds,
        progress=lambda partner, count: echo(
            f"bench: {partner}: {count} files, {time.perf_counter() - started:.1f} s so far"))
    for receipt in receipts:
        rows_in += receipt.rows_in
        rows_loaded += receipt.rows_loaded
        rows_quarantined += receipt.rows_quarantined
    step = time.perf_counter()
    jobs.aggregate(bench_home)
    stage_seconds["aggregate"] = time.perf_counter() - step
    total = time.perf_counter() - started
    peak = peak_memory_mb()
    yardstick_after = machine_yardstick()

    with closing(warehouse.connect(bench_home, read_only=True)) as con:
        checks = self_check(con, bench_home, key, rows_in, rows_loaded, rows_quarantined)
    return {
        "rows": rows_in,
        "areas": {"kind": areas, "count": area_count, "municipalities": municipality_count},
        "rows_loaded": rows_loaded,
        "rows_quarantined": rows_quarantined,
        "files": len(files),
        "stage_seconds": {s: round(stage_seconds.get(s, 0.0), 3) for s in STAGES},
        "stage_rows_per_second": {s: round(rows_in / stage_seconds[s]) if stage_seconds.get(s) else None
                                  for s in STAGES},
        "end_to_end_seconds": round(total, 3),
        "end_to_end_rows_per_second": round(rows_in / total) if total else None,
        "peak_memory_mb": round(peak),
        "yardstick_seconds": {"before": yardstick_before, "after": yardstick_after},
        "checks": checks,
    }


def self_check(con, home: Home, key: bytes, rows_in: int, rows_loaded: int, rows_quarantined: int) -> dict:
    """The bench's checks of its own output; raises BenchCheckFailed on the first that does not hold."""
    stored, distinct = con.execute(
        "SELECT count(*), count(DISTINCT (partner, partner_record_id)) FROM incidents").fetchone()
    quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    counted = con.execute("SELECT coalesce(sum(n), 0) FROM weekly_counts").fetchone()[0]
    if rows_in != rows_loaded + rows_quarantined or quarantined != rows_quarantined:
        raise BenchCheckFailed(f"row accounting: {rows_in} in, {rows_loaded} loaded, {rows_quarantined} "
                               f"quarantined, {quarantined} in quarantine")
    if stored != rows_loaded or distinct != stored:
        raise BenchCheckFailed(f"stored rows: {rows_loaded} loaded, {stored} stored, {distinct} distinct records")
    if counted != stored:
        raise BenchCheckFailed(f"aggregate: {counted} counted against {stored} stored")
    return {
        "rows_accounted": True,
        "records_unique": True,
        "all_stored_rows_counted": True,
        **check_pseudonyms(con, home, key),
        **check_placements(con, home),
    }


def _source_rows(con, home: Home, partner: str, columns: list[str], sample: int, seed: int):
    """A sample of stored incidents of one partner beside the raw text of ``columns`` in their source file.

    The source file is found through the ledger (delivery id -> file name) and read again by the pipeline's own
    reader; what is checked is what was made of the text, not how the text was read."""
    import numpy as np
    import pandas as pd

    from pipelines.contracts import load_contracts
    from pipelines.readers import read_delivery, resolve_columns

    contract = load_contracts()[partner]
    picked = con.execute(
        # The partner's rows first, then the sample (a SAMPLE clause beside WHERE samples the whole table).
        f"SELECT i.*, l.file_name FROM (SELECT * FROM (SELECT delivery_number, source_row, "
        f"pseudonym_text(partner_record_id) AS partner_record_id, "
        f"area_code, location_precision FROM incidents WHERE partner = ?) "
        f"USING SAMPLE reservoir({sample} ROWS) REPEATABLE ({seed})) AS i "
        f"JOIN ingest_ledger AS l USING (delivery_number) ORDER BY l.file_name, i.source_row", [partner]).df()
    texts = []
    for file_name, group in picked.groupby("file_name", sort=True):
        raw = read_delivery(home.partner_inbox(partner) / file_name, contract)
        found = resolve_columns(raw.header, contract)
        position = np.searchsorted(raw.source_rows, group["source_row"].to_numpy())
        texts.append(group.assign(**{
            column: raw.table.column(found[contract.columns[column].source]).to_numpy(zero_copy_only=False)[position]
            for column in columns}))
    return pd.concat(texts, ignore_index=True) if texts else picked.assign(**{column: [] for column in columns})


def check_pseudonyms(con, home: Home, key: bytes) -> dict:
    """Stored record pseudonyms against HMAC-SHA-256 computed here by Python's hmac module, key derived anew."""
    from pipelines import ingest, privacy

    record_key = privacy.derive_key(key, ingest.RECORD_DOMAIN).key
    sample = _source_rows(con, home, "police_cases", ["record_id"], PSEUDONYM_SAMPLE, seed=11)
    expected = [hmac.new(record_key, text.strip().encode("utf-8"), hashlib.sha256).hexdigest()
                for text in sample["record_id"]]
    wrong = int((sample["partner_record_id"].to_numpy() != expected).sum())
    if len(sample) == 0 or wrong:
        raise BenchCheckFailed(f"pseudonyms: {wrong} of {len(sample)} sampled records differ from a reference HMAC")
    return {"pseudonyms_checked": len(sample), "pseudonyms_wrong": 0}


def check_placements(con, home: Home) -> dict:
    """Stored areas of a sample of point-placed incidents against an exact point-in-polygon test of the source
    coordinates: one STRtree query of shapely Points (no raster), each point to the first area in code order of
    those it intersects (``geography.place``'s rule for a point on a shared border, or in two areas where
    neighbouring municipalities' generalised boundaries overlap). Those cases are counted and must agree too."""
    import numpy as np
    import shapely

    from pipelines import geography

    areas = geography.load_areas_from_db(con)  # sorted by code: a smaller index is earlier in code order
    sample = _source_rows(con, home, "police_cases", ["sweref99_e", "sweref99_n"], PLACEMENT_SAMPLE, seed=13)
    if len(sample) == 0:
        raise BenchCheckFailed("placements: no sample of point-placed incidents to check")
    x = sample["sweref99_e"].astype(float).to_numpy()
    y = sample["sweref99_n"].astype(float).to_numpy()
    points = shapely.points(x, y)
    tree = shapely.STRtree(np.asarray(areas.geometry.to_numpy(), dtype=object))
    codes = areas["area_code"].to_numpy(dtype=object)
    point_at, area_at = tree.query(points, predicate="intersects")
    first = np.full(len(points), len(codes), dtype=np.int64)
    np.minimum.at(first, point_at, area_at)
    expected = np.where(first < len(codes), codes[np.minimum(first, len(codes) - 1)], None)
    on_border = np.zeros(len(points), dtype=bool)
    on_border[tree.query(points, predicate="touches")[0]] = True
    in_two = np.bincount(tree.query(points, predicate="within")[0], minlength=len(points)) > 1
    stored = sample["area_code"].to_numpy(dtype=object)
    wrong = stored != expected
    if wrong.any():
        raise BenchCheckFailed(f"placements: {int(wrong.sum())} of {len(points)} sampled incidents are in another "
                               "area than the exact test says")
    return {"placements_checked": len(points), "placements_wrong": 0, "placements_on_a_border": int(on_border.sum()),
            "placements_in_two_areas": int(in_two.sum())}


# --------------------------------------------------------------------------------------------------------------
# The Airflow week and the quarterly pack, in their own process (Airflow's start is part of the time)
# --------------------------------------------------------------------------------------------------------------

def _airflow_home(home: Home) -> Home:
    return Home(home.work / "bench-airflow-week")


def prepare_airflow_week(home: Home, key: bytes, echo: Callable[[str], None] = print) -> dict:
    """Half a year of Örebro's history ingested (not timed), and the last week's files held back for delivery."""
    from pipelines import generate, jobs
    from pipelines.contracts import load_contracts
    from pipelines.demo import last_whole_quarter

    week_home = _airflow_home(home)
    if week_home.root.exists():
        shutil.rmtree(week_home.root)
    week_home.ensure()
    generated = generate.generate(week_home, weeks=AIRFLOW_HISTORY_WEEKS)
    last_week = generated.weeks[-1]
    held = week_home.work / "held_back"
    for path in generated.files:
        if last_week in path.name:
            target = held / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
    jobs.prepare_reference(week_home)
    for partner in load_contracts():
        jobs.ingest_files(week_home, partner, jobs.new_files(week_home, partner), key)
    jobs.aggregate(week_home)
    echo(f"bench: {AIRFLOW_HISTORY_WEEKS - 1} weeks of history ingested; the week {last_week} held back")
    return {"week": last_week, "quarter": last_whole_quarter(generated.weeks[0], last_week)}


def deliver_held_back(home: Home) -> int:
    """Put the held-back week into the partners' inboxes, as a delivery would."""
    week_home = _airflow_home(home)
    moved = 0
    for path in sorted((week_home.work / "held_back").glob("*/*")):
        path.rename(week_home.partner_inbox(path.parent.name) / path.name)
        moved += 1
    return moved


def run_airflow_week(home: Home, week: str, quarter: str, key_hex: str) -> dict:
    """In a fresh process: every partner's ingest DAG, then the weekly report DAG, then the quarterly DAG."""
    from pipelines import airflow_local
    from pipelines.contracts import load_contracts

    week_home = _airflow_home(home)
    now = datetime.now(timezone.utc)
    for partner in load_contracts():
        step = time.perf_counter()
        airflow_local.run_dag_test(week_home, f"est_ingest_{partner}", now, key=key_hex)
        print(f"bench: DAG est_ingest_{partner} {time.perf_counter() - step:.1f} s", flush=True)
    step = time.perf_counter()
    airflow_local.run_dag_test(week_home, "est_weekly_report", now, run_conf={"iso_week": week}, key=key_hex)
    print(f"bench: DAG est_weekly_report {time.perf_counter() - step:.1f} s", flush=True)
    week_done = time.time()
    report = sorted((week_home.out / "weekly" / week).glob("*.html"))
    if not report:
        raise BenchCheckFailed(f"the weekly DAG succeeded but wrote no report for {week}")
    started = time.perf_counter()
    airflow_local.run_dag_test(week_home, "est_quarterly_pack", now, run_conf={"quarter": quarter}, key=key_hex)
    quarterly = time.perf_counter() - started
    if not (week_home.out / "quarterly" / quarter / "index.html").exists():
        raise BenchCheckFailed(f"the quarterly DAG succeeded but wrote no pack for {quarter}")
    return {"week_done_at": week_done, "quarterly_pack_seconds": round(quarterly, 3)}


# --------------------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------------------

def _child(mode: str, home: Home, key_hex: str, args: list[str], echo: Callable[[str], None]) -> dict:
    """Run ``python -m pipelines.bench MODE`` in a new process; the key goes by environment, never argv."""
    out = home.work / f"bench-{mode}-{os.getpid()}.json"
    # Airflow's per-task info lines (hundreds) would bury the bench's own lines, as in `est demo`.
    env = {"AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING", **os.environ, KEY_ENV_VAR: key_hex, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "pipelines.bench", mode, "--home", str(home.root),
                                "--out", str(out), *args], env=env, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        echo(line.rstrip("\n"))
    if process.wait() != 0:
        raise RuntimeError(f"bench {mode} {' '.join(args)} failed (exit {process.returncode}); see above")
    try:
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def run_bench(home: Home, sizes: tuple[int, ...] = DEFAULT_SIZES, json_path: Path | None = None,
              echo: Callable[[str], None] = print, airflow: bool = True, areas: str = "national",
              municipalities=None) -> dict:
    """Every size in its own process, then the Airflow week; ``areas`` as in :func:`bench_areas` (``municipalities``
    narrows the national ones, for tests). Returns the figures and writes them as JSON."""
    from pipelines import privacy
    from pipelines.publish import write_atomic

    home.ensure()
    key_hex = privacy.new_random_key_hex()  # a throwaway key: the bench's data is generated
    key = bytes.fromhex(key_hex)
    figures: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": "a shared 2-core machine: figures vary from run to run; compare ratios and repeated runs",
        "sizes": [],
    }
    if areas not in AREAS:
        raise ValueError(f"areas must be one of {AREAS}, not {areas!r}")
    started = time.perf_counter()
    frame = bench_areas(home, areas, municipalities, echo=echo)
    figures["areas"] = {"kind": areas, "count": len(frame), "municipalities": int(frame["municipality_code"].nunique()),
                        "ready_seconds": round(time.perf_counter() - started, 3)}
    del frame
    for rows in sizes:
        prepare_size(home, rows, echo, areas=areas, municipalities=municipalities)
        figures["sizes"].append(_child("size", home, key_hex, ["--rows", str(rows), "--areas", areas], echo))
        shutil.rmtree(_size_home(home, rows).root)  # gigabytes of generated files and warehouse
    if len(figures["sizes"]) > 1:
        first, last = figures["sizes"][0], figures["sizes"][-1]
        # Linear cost keeps rows per second flat: this ratio is 1.0 when it does.
        figures["rows_per_second_largest_over_smallest"] = round(
            last["end_to_end_rows_per_second"] / first["end_to_end_rows_per_second"], 3)
    if airflow:
        plan = prepare_airflow_week(home, key, echo)
        deliver_held_back(home)
        figures["airflow_yardstick_seconds"] = machine_yardstick()
        started = time.time()
        result = _child("airflow-week", home, key_hex, ["--week", plan["week"], "--quarter", plan["quarter"]], echo)
        figures["airflow_week"] = plan["week"]
        figures["airflow_week_seconds"] = round(result["week_done_at"] - started, 3)
        figures["quarterly_pack"] = plan["quarter"]
        figures["quarterly_pack_seconds"] = result["quarterly_pack_seconds"]

    echo(render_table(figures))
    text = json.dumps(figures, indent=2) + "\n"
    # Under work/, not out/: out/ holds what is published to an audience (pipelines/audiences.py).
    out_path = home.work / "bench" / "bench.json"
    write_atomic(out_path, text)
    if json_path is not None:
        write_atomic(Path(json_path), text)
    echo(f"bench: figures written to {out_path}" + (f" and {json_path}" if json_path else ""))
    return figures


def render_table(figures: dict) -> str:
    """The figures as a Markdown table: one column per size (the README shows the latest)."""
    sizes = figures["sizes"]
    if not sizes:
        return ""
    lines = ["| rows/s | " + " | ".join(f"{s['rows']:,}" for s in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for stage in STAGES:
        lines.append(f"| {stage} | " + " | ".join(
            f"{s['stage_rows_per_second'][stage]:,}" if s["stage_rows_per_second"][stage] else "-"
            for s in sizes) + " |")
    lines.append("| **end to end** | " + " | ".join(f"**{s['end_to_end_rows_per_second']:,}**" for s in sizes) + " |")
    lines.append("| seconds | " + " | ".join(f"{s['end_to_end_seconds']:.1f}" for s in sizes) + " |")
    lines.append("| peak memory (MB) | " + " | ".join(f"{s['peak_memory_mb']:,}" for s in sizes) + " |")
    lines.append("| yardstick before/after (s) | " + " | ".join(
        f"{s['yardstick_seconds']['before']:.2f} / {s['yardstick_seconds']['after']:.2f}" for s in sizes) + " |")
    extra = []
    if "areas" in figures:
        extra.append(f"areas: {figures['areas']['kind']}, {figures['areas']['count']:,} areas of "
                     f"{figures['areas']['municipalities']} municipalities")
    if "airflow_week_seconds" in figures:
        extra.append(f"Airflow week {figures['airflow_week']} (start, 8 ingest DAGs, weekly report): "
                     f"{figures['airflow_week_seconds']:.1f} s")
        extra.append(f"quarterly pack {figures['quarterly_pack']}: {figures['quarterly_pack_seconds']:.1f} s")
        extra.append(f"yardstick before the Airflow week: {figures['airflow_yardstick_seconds']:.2f} s")
    return "\n".join(lines + [""] + extra)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench", description="est bench's worker processes")
    parser.add_argument("mode", choices=["size", "airflow-week"])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--areas", choices=AREAS, default="national")
    parser.add_argument("--week")
    parser.add_argument("--quarter")
    args = parser.parse_args(argv)
    from pipelines import privacy

    key_hex = os.environ[KEY_ENV_VAR]
    home = Home(args.home)
    if args.mode == "size":
        result = run_size(home, args.rows, privacy.load_key(KEY_ENV_VAR), areas=args.areas)
    else:
        result = run_airflow_week(home, args.week, args.quarter, key_hex)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
