"""The `est` command line: the same jobs Airflow runs, for a user with no Airflow and for tests.

Exit status: 0 when the command did its work (a file accepted, perhaps with quarantined rows), 2 when a file or
the command was refused (a one-line reason naming the file, row or setting), 1 only for a bug.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import click

from pipelines.settings import KEY_ENV_VAR, Home, home_from

WEEK = re.compile(r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$")
QUARTER = re.compile(r"^\d{4}Q[1-4]$")


class Refused(click.ClickException):
    """A refusal the user can act on: exit status 2 and one line."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"est: refused: {self.message}", err=True)


def _week(value: str) -> str:
    if not WEEK.match(value or ""):
        raise Refused(f"--week {value!r} is not an ISO week like 2026-W47")
    return value


def _quarter(value: str) -> str:
    if not QUARTER.match(value or ""):
        raise Refused(f"--quarter {value!r} is not a quarter like 2026Q3")
    return value


def _key() -> bytes:
    from pipelines import privacy

    try:
        return privacy.load_key(KEY_ENV_VAR)
    except privacy.PseudonymKeyError as exc:
        raise Refused(str(exc)) from exc


home_option = click.option(
    "--home", "home_dir", envvar="EST_HOME", type=click.Path(file_okay=False, path_type=Path),
    help="The installation's folder (database, inbox/, out/). Default: EST_HOME or var/ in the repository.",
)


def _home(home_dir: Path | None) -> Home:
    return home_from(home_dir).ensure()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Show progress of every file and step.")
def main(verbose: bool) -> None:
    """EST: partner incident data in, weekly situational report and quarterly analysis pack out."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pipelines").setLevel(logging.INFO)


@main.command()
@home_option
@click.option("--weeks", default=26, show_default=True, help="How many ISO weeks of deliveries.")
@click.option("--last-week", default=None, help="The last ISO week generated (default: the week before this one).")
@click.option("--seed", default=20261127, show_default=True)
def generate(home_dir, weeks, last_week, seed):
    """Write realistic partner deliveries for Örebro into inbox/<partner>/ (seeded, deterministic)."""
    from pipelines import generate as generator

    home = _home(home_dir)
    started = time.perf_counter()
    result = generator.generate(home, weeks=weeks, last_week=last_week and _week(last_week), seed=seed)
    click.echo(f"generated {_describe(result)} in {time.perf_counter() - started:.1f} s under {home.inbox}")


def _describe(result) -> str:
    files = getattr(result, "files", None)
    return f"{len(files)} files" if files is not None else "deliveries"


@main.command()
@home_option
@click.option("--partner", required=True, help="The partner id (a contract in schemas/partners/).")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def ingest(home_dir, partner, files):
    """Ingest delivered FILES for one partner; print one receipt line per file."""
    from pipelines import jobs
    from pipelines.contracts import load_contracts

    if partner not in load_contracts():
        raise Refused(f"--partner {partner!r} has no contract in schemas/partners/ (known: {', '.join(load_contracts())})")
    key = _key()
    home = _home(home_dir)
    jobs.prepare_reference(home)
    receipts = jobs.ingest_files(home, partner, list(files), key)
    for receipt in receipts:
        click.echo(
            f"{receipt.file_name}: {receipt.status}; {receipt.rows_in} rows in, {receipt.rows_loaded} loaded, "
            f"{receipt.rows_quarantined} quarantined, {receipt.rows_unplaced} without an area"
            + (f" ({receipt.reason})" if receipt.reason else "")
        )
    jobs.aggregate(home)
    refused = [r for r in receipts if r.status == "rejected"]
    if refused:
        raise Refused(refused[0].reason or refused[0].file_name)


@main.command()
@home_option
@click.option("--week", required=True, help="ISO week to report, e.g. 2026-W47.")
def run(home_dir, week):
    """The whole job without Airflow: ingest every partner's new files, aggregate, render the week's report."""
    from pipelines import jobs
    from pipelines.contracts import load_contracts

    week = _week(week)
    key = _key()
    home = _home(home_dir)
    jobs.prepare_reference(home)
    for partner in load_contracts():
        receipts = jobs.ingest_inbox(home, partner, key)
        if receipts:
            loaded = sum(r["rows_loaded"] for r in receipts)
            quarantined = sum(r["rows_quarantined"] for r in receipts)
            click.echo(f"{partner}: {len(receipts)} files, {loaded} rows loaded, {quarantined} quarantined")
    jobs.aggregate(home)
    for path in jobs.render_weekly(home, week):
        click.echo(f"wrote {path}")


@main.group()
def report():
    """Render a report from what the warehouse holds."""


@report.command("weekly")
@home_option
@click.option("--week", required=True, help="ISO week, e.g. 2026-W47.")
def report_weekly(home_dir, week):
    """The weekly situational report for one ISO week (HTML and CSV under out/weekly/)."""
    from pipelines import jobs

    home = _home(home_dir)
    for path in jobs.render_weekly(home, _week(week)):
        click.echo(f"wrote {path}")


@report.command("quarterly")
@home_option
@click.option("--quarter", required=True, help="Quarter, e.g. 2026Q3.")
def report_quarterly(home_dir, quarter):
    """The quarterly map for one quarter (HTML and CSV under out/quarterly/)."""
    from pipelines import jobs

    home = _home(home_dir)
    for path in jobs.render_quarterly(home, _quarter(quarter)):
        click.echo(f"wrote {path}")


@main.command()
@home_option
@click.option("--weeks", default=26, show_default=True)
@click.option("--last-week", default=None, help="The last ISO week of the demo (default: the week before this one).")
def demo(home_dir, weeks, last_week):
    """From nothing: generate deliveries, run the ingest, weekly and quarterly DAGs through Airflow, show outputs."""
    from pipelines import demo as demo_job

    home = _home(home_dir)
    demo_job.run_demo(home, weeks=weeks, last_week=last_week and _week(last_week), echo=click.echo)


@main.command()
@home_option
@click.option("--rows", default=1_000_000, show_default=True, help="Generated incidents to push through.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures as JSON to this file.")
def bench(home_dir, rows, json_path):
    """Throughput of each stage in rows per second on generated incidents (a fresh bench home)."""
    from pipelines import bench as bench_job

    home = _home(home_dir)
    bench_job.run_bench(home, rows=rows, json_path=json_path, echo=click.echo)


@main.command()
@home_option
@click.option("--port", default=8080, show_default=True)
def airflow(home_dir, port):
    """Start `airflow standalone` (scheduler, API server, UI) on 127.0.0.1 with the project's DAGs."""
    from pipelines import airflow_local

    home = _home(home_dir)
    process = airflow_local.run_standalone(home, port=port)
    click.echo(f"Airflow on http://127.0.0.1:{port} (home {home.airflow_home}); Ctrl-C stops it")
    try:
        process.wait()
    except KeyboardInterrupt:
        airflow_local.stop(process)


if __name__ == "__main__":
    main()
