"""`est bench`: rows per second of each stage on generated incidents, in a bench home of its own.

Figures on a shared 2-core machine vary from run to run: compare ratios and repeated runs, not one timing.
The bench checks its own output (every row loaded or quarantined) so that speed never comes from skipped work.
"""

from __future__ import annotations

import json
import platform
import resource
import shutil
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pipelines.settings import Home

STAGES = ("read", "canonical", "validate", "pseudonymise", "scrub", "place", "load", "aggregate")


def peak_memory_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(home: Home, rows: int, json_path: Path | None = None, echo: Callable[[str], None] = print) -> dict:
    from pipelines import generate, jobs, privacy, warehouse

    bench_home = Home(home.work / f"bench-{rows}").ensure()
    if bench_home.db_path.exists():
        bench_home.db_path.unlink()  # every bench run starts from an empty warehouse
    if bench_home.inbox.exists():
        shutil.rmtree(bench_home.inbox)
    bench_home.ensure()
    key = bytes.fromhex(privacy.new_random_key_hex())

    started = time.perf_counter()
    files = generate.generate_bench(bench_home, rows=rows, seed=7)
    generate_seconds = time.perf_counter() - started
    echo(f"bench: generated {rows:,} incidents in {len(files)} files ({generate_seconds:.1f} s)")

    jobs.prepare_reference(bench_home)
    stage_seconds: dict[str, float] = {}
    rows_in = rows_loaded = rows_quarantined = 0
    pipeline_started = time.perf_counter()
    for path in files:
        partner = path.parent.name
        for receipt in jobs.ingest_files(bench_home, partner, [path], key, stage_seconds):
            rows_in += receipt.rows_in
            rows_loaded += receipt.rows_loaded
            rows_quarantined += receipt.rows_quarantined
            echo(f"bench: {partner}/{path.name}: {receipt.rows_in:,} rows, {receipt.status}")
    step = time.perf_counter()
    jobs.aggregate(bench_home)
    stage_seconds["aggregate"] = time.perf_counter() - step
    total_seconds = time.perf_counter() - pipeline_started

    with closing(warehouse.connect(bench_home, read_only=True)) as con:
        stored = con.execute("SELECT count(*) FROM incidents").fetchone()[0]
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        counted = con.execute("SELECT coalesce(sum(n), 0) FROM weekly_counts").fetchone()[0]
    if rows_in != rows_loaded + rows_quarantined or quarantined != rows_quarantined or counted != stored:
        raise AssertionError(
            f"bench output is inconsistent: {rows_in} in, {rows_loaded} loaded, {rows_quarantined} quarantined, "
            f"{stored} stored, {quarantined} in quarantine, {counted} counted"
        )

    figures = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "rows": rows_in,
        "rows_loaded": rows_loaded,
        "rows_quarantined": rows_quarantined,
        "stage_seconds": {s: round(stage_seconds.get(s, 0.0), 3) for s in STAGES},
        "stage_rows_per_second": {
            s: round(rows_in / stage_seconds[s]) if stage_seconds.get(s) else None for s in STAGES
        },
        "end_to_end_seconds": round(total_seconds, 3),
        "end_to_end_rows_per_second": round(rows_in / total_seconds) if total_seconds else None,
        "peak_memory_mb": round(peak_memory_mb()),
    }
    echo(f"\n{'stage':<14}{'seconds':>10}{'rows/s':>14}{'share':>8}")
    for stage in STAGES:
        seconds = stage_seconds.get(stage, 0.0)
        rate = figures["stage_rows_per_second"][stage]
        echo(f"{stage:<14}{seconds:>10.2f}{(f'{rate:,}' if rate else '-'):>14}{seconds / total_seconds:>8.0%}")
    echo(f"{'end to end':<14}{total_seconds:>10.2f}{figures['end_to_end_rows_per_second']:>14,}")
    echo(f"peak memory {figures['peak_memory_mb']:,} MB; {rows_loaded:,} loaded, {rows_quarantined:,} quarantined")

    from pipelines.publish import write_atomic

    out_path = home.out / "bench" / f"bench-{rows}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, indent=2) + "\n"
    write_atomic(out_path, text)
    if json_path is not None:
        write_atomic(Path(json_path), text)
    echo(f"bench: figures written to {out_path}")
    return figures
