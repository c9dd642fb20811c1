"""`est demo`: from nothing to a weekly report and a quarterly map, through Airflow's in-process runner.

It generates 26 weeks of partner deliveries for Örebro, runs each partner's ingest DAG, the weekly report DAG
for the last week and the quarterly DAG for the last whole quarter with `dag.test()` (SQLite metadata database
inside the home), and prints where the outputs are. The demo is the only command that may create a pseudonym
key by itself: a random one, kept in its own home, and it says so.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from pipelines.settings import KEY_ENV_VAR, Home

DEMO_KEY_FILE = "demo-pseudonym-key.hex"


def demo_key(home: Home, echo: Callable[[str], None]) -> str:
    """The key from the environment, else a random demo key created once in the home (file mode 0600)."""
    from pipelines import privacy

    if os.environ.get(KEY_ENV_VAR):
        privacy.load_key(KEY_ENV_VAR)  # refuse a bad key before doing anything
        return os.environ[KEY_ENV_VAR]
    path = home.root / DEMO_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(privacy.new_random_key_hex() + "\n")
        echo(f"demo: created a random pseudonym key in {path} (demo only; real runs read {KEY_ENV_VAR})")
    else:
        echo(f"demo: using the demo pseudonym key in {path}")
    return path.read_text().strip()


def previous_iso_week(today: date | None = None) -> str:
    year, week, _ = ((today or date.today()) - timedelta(days=7)).isocalendar()
    return f"{year}-W{week:02d}"


def week_monday(iso_week: str) -> date:
    year, week = iso_week.split("-W")
    return date.fromisocalendar(int(year), int(week), 1)


def last_whole_quarter(first_week: str, last_week: str) -> str:
    """The latest quarter wholly inside the generated weeks (else the quarter of the last week)."""
    first_day = week_monday(first_week)
    last_day = week_monday(last_week) + timedelta(days=6)
    year, quarter = last_day.year, (last_day.month - 1) // 3 + 1
    for _ in range(8):
        start = date(year, 3 * quarter - 2, 1)
        end = date(year + (quarter == 4), (3 * quarter) % 12 + 1, 1) - timedelta(days=1)
        if start >= first_day and end <= last_day:
            return f"{year}Q{quarter}"
        year, quarter = (year, quarter - 1) if quarter > 1 else (year - 1, 4)
    return f"{last_day.year}Q{(last_day.month - 1) // 3 + 1}"


def run_demo(home: Home, weeks: int = 26, last_week: str | None = None, echo: Callable[[str], None] = print,
             after_generate: Callable[[Home], None] | None = None) -> dict:
    """``after_generate(home)`` runs after the deliveries are written and before any DAG reads them (CI uses it to
    plant canary rows: pipelines.audit_outputs.plant_canaries)."""
    from pipelines import airflow_local, generate
    from pipelines.contracts import load_contracts

    started = time.perf_counter()
    last_week = last_week or previous_iso_week()
    first_week_day = week_monday(last_week) - timedelta(weeks=weeks - 1)
    first_year, first_number, _ = first_week_day.isocalendar()
    first_week = f"{first_year}-W{first_number:02d}"
    quarter = last_whole_quarter(first_week, last_week)
    key_hex = demo_key(home, echo)
    # Airflow's per-task info lines (hundreds) would bury the demo's own progress; warnings still show.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

    echo(f"demo: generating {weeks} weeks of deliveries ({first_week} to {last_week}) for Örebro")
    generate.generate(home, weeks=weeks, last_week=last_week)
    if after_generate is not None:
        after_generate(home)
    now = datetime.now(timezone.utc)
    for partner in load_contracts():
        step = time.perf_counter()
        airflow_local.run_dag_test(home, f"est_ingest_{partner}", now, key=key_hex)
        echo(f"demo: DAG est_ingest_{partner} succeeded in {time.perf_counter() - step:.1f} s")
    step = time.perf_counter()
    airflow_local.run_dag_test(home, "est_weekly_report", now, run_conf={"iso_week": last_week}, key=key_hex)
    echo(f"demo: DAG est_weekly_report ({last_week}) succeeded in {time.perf_counter() - step:.1f} s")
    step = time.perf_counter()
    airflow_local.run_dag_test(home, "est_quarterly_pack", now, run_conf={"quarter": quarter}, key=key_hex)
    echo(f"demo: DAG est_quarterly_pack ({quarter}) succeeded in {time.perf_counter() - step:.1f} s")

    outputs = {
        "weekly": sorted((home.out / "weekly" / last_week).glob("*")),
        "quarterly": sorted((home.out / "quarterly" / quarter).glob("*")),
        "receipts": sorted(home.receipts.glob("*/*.html")),
    }
    echo(f"demo: done in {time.perf_counter() - started:.0f} s. Outputs under {home.out}:")
    for path in outputs["weekly"] + outputs["quarterly"]:
        echo(f"  {path}")
    echo(f"  {len(outputs['receipts'])} delivery receipts under {home.receipts}")
    return {"last_week": last_week, "quarter": quarter, **outputs}
