"""The `est` command line: the same jobs Airflow runs, for a user with no Airflow and for tests.

Exit status: 0 when the command did its work (a file accepted, perhaps with quarantined rows), 2 when a file or
the command was refused (a one-line reason naming the file, row or setting), 1 only for a bug.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click

from pipelines.settings import KEY_ENV_VAR, Home, home_from



class Refused(click.ClickException):
    """A refusal the user can act on: exit status 2 and one line."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"est: refused: {self.message}", err=True)


def _week(value: str) -> str:
    # The same check the DAGs apply to their iso_week param (it also knows which years have a week 53).
    from pipelines.airflow_local import check_iso_week

    try:
        return check_iso_week(value)
    except ValueError as exc:
        raise Refused(f"--week: {exc}") from exc


def _quarter(value: str) -> str:
    from pipelines.airflow_local import check_quarter

    try:
        return check_quarter(value)
    except ValueError as exc:
        raise Refused(f"--quarter: {exc}") from exc


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
    # Every partner's new files in one pass: the next partner's first file is prepared while the last one loads.
    receipts = jobs.ingest_inboxes(home, list(load_contracts()), key)
    for partner in load_contracts():
        mine = [r for r in receipts if r["partner"] == partner]
        if mine:
            loaded = sum(r["rows_loaded"] for r in mine)
            quarantined = sum(r["rows_quarantined"] for r in mine)
            click.echo(f"{partner}: {len(mine)} files, {loaded} rows loaded, {quarantined} quarantined")
    jobs.aggregate(home)
    for path in jobs.render_weekly(home, week):
        click.echo(f"wrote {path}")


@main.group()
def report():
    """Render a report from what the warehouse holds."""


@report.command("weekly")
@home_option
@click.option("--week", required=True, help="ISO week, e.g. 2026-W47.")
@click.option("--lang", type=click.Choice(["sv", "en"]), default="sv", show_default=True, help="Report language.")
@click.option("--partner", default=None, help="Render a partner's view (its own delivery statistics) instead.")
def report_weekly(home_dir, week, lang, partner):
    """The weekly situational report for one ISO week (HTML, PDF and CSV under out/weekly/)."""
    from pipelines import jobs

    home = _home(home_dir)
    audience = f"partner:{partner}" if partner else "recipients"
    for path in jobs.render_weekly(home, _week(week), lang=lang, audience=audience):
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
@click.option("--rows", default="1000000,3000000,10000000", show_default=True,
              help="Generated incidents to push through: one size, or several separated by commas.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures as JSON to this file.")
@click.option("--airflow/--no-airflow", default=True, show_default=True,
              help="Also time one week through the Airflow DAGs and the quarterly pack.")
@click.option("--areas", type=click.Choice(["national", "municipality"]), default="national", show_default=True,
              help="Place against all 290 municipalities' 5,984 stand-in DeSO (built once, about 20 s, then kept "
                   "under work/bench/), or the municipality's own 87 for a quick run.")
def bench(home_dir, rows, json_path, airflow, areas):
    """Rows per second of each stage at each size (each in a fresh process and bench home), the Airflow week
    and the quarterly pack; the bench checks its own output."""
    from pipelines import bench as bench_job

    try:
        sizes = tuple(int(part.replace("_", "")) for part in rows.split(","))
    except ValueError:
        raise click.BadParameter(f"{rows!r}: give whole numbers separated by commas", param_hint="--rows")
    if any(size < 1000 for size in sizes):
        raise click.BadParameter("each size must be at least 1000 rows", param_hint="--rows")
    home = _home(home_dir)
    bench_job.run_bench(home, sizes=sizes, json_path=json_path, echo=click.echo, airflow=airflow, areas=areas)


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


# --- privacy (issue 4): audit-outputs -------------------------------------------------------------------------
@main.command("audit-outputs")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A file holding the pseudonym key as hex (default: EST_PSEUDONYM_KEY, if set).")
@click.option("--canaries", "canaries_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Planted canary names, one per line; none may appear in any file.")
def audit_outputs_command(folders, key_file, canaries_file):
    """Scan every file under FOLDERS for personnummer, the pseudonym key, canary names and outside URLs.

    Exit 0 when clean, 2 listing file, line and kind of each finding (values masked)."""
    import os

    from pipelines import audit_outputs, privacy

    key = None
    try:
        if key_file is not None:
            key = privacy.load_key(f"--key-file {key_file.name}", value=key_file.read_text())
        elif os.environ.get(KEY_ENV_VAR):
            key = privacy.load_key(KEY_ENV_VAR)
    except privacy.PseudonymKeyError as exc:
        raise Refused(str(exc)) from exc
    report = audit_outputs.audit_outputs(folders, key=key, canaries=audit_outputs.read_canaries(canaries_file))
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for finding in report.findings:
        click.echo(str(finding))
    if report.findings:
        raise Refused(f"{len(report.findings)} finding(s) in {report.files} files")
    click.echo(f"audit-outputs: {report.files} files, no findings")


@main.command("demo-canaries")
@home_option
@click.option("--weeks", default=14, show_default=True)
@click.option("--last-week", default=None, help="The last ISO week of the demo (default: the week before this one).")
def demo_canaries(home_dir, weeks, last_week):
    """The demo with canary personnummer and names planted in the sensitive partners' deliveries before ingest.

    Writes HOME/canaries.txt for `est audit-outputs --canaries` and checks that the canary rows reached the
    restricted layer (so an audit with zero findings means the pipeline kept them there)."""
    from pipelines import audit_outputs
    from pipelines import demo as demo_job
    from pipelines.warehouse import connect

    home = _home(home_dir)
    planted = {}

    def plant(generated_home):
        planted["rows"] = audit_outputs.plant_canaries(generated_home)
        click.echo(f"demo-canaries: planted {planted['rows']} canary rows")

    demo_job.run_demo(home, weeks=weeks, last_week=last_week and _week(last_week), echo=click.echo,
                      after_generate=plant)
    audit_outputs.write_canaries_file(home.root / "canaries.txt")
    con = connect(home, read_only=True)
    try:
        loaded = con.execute(
            "SELECT count(*) FROM incidents WHERE " + " OR ".join(["description ILIKE ?"] * len(audit_outputs.CANARY_NAMES)),
            [f"%{name}%" for name in audit_outputs.CANARY_NAMES]).fetchone()[0]
    finally:
        con.close()
    if not planted.get("rows") or loaded == 0:
        raise Refused(f"the canaries did not reach the warehouse ({planted.get('rows', 0)} planted, {loaded} loaded)")
    click.echo(f"demo-canaries: {loaded} canary rows loaded into the restricted layer; canaries in {home.root / 'canaries.txt'}")


@main.group()
def analyse():
    """Analyses for the quarterly meeting that also run on any CSV."""


@analyse.command("near-repeat")
@click.argument("input_csv", metavar="INPUT.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--x", "x_col", required=True, help="Column with the x coordinate (projected, metres or feet).")
@click.option("--y", "y_col", required=True, help="Column with the y coordinate.")
@click.option("--date", "date_col", required=True, help="Column with the date (time of day is ignored).")
@click.option("--date-format", default="%d/%m/%Y", show_default=True, help="strptime format of the dates.")
@click.option("--spatial-bandwidth", default=100.0, show_default=True, type=float)
@click.option("--spatial-bands", default=4, show_default=True, type=int)
@click.option("--temporal-bandwidth", default=14, show_default=True, type=int, help="Days.")
@click.option("--temporal-bands", default=4, show_default=True, type=int)
@click.option("--iterations", default=99, show_default=True, type=int, help="Monte Carlo permutations.")
@click.option("--distance", type=click.Choice(["euclidean", "manhattan"]), default="euclidean", show_default=True)
@click.option("--precision", type=click.Choice(["nrc", "exact"]), default="nrc", show_default=True,
              help="nrc: coordinates in single precision, as the Near Repeat Calculator (reproduces its counts).")
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def analyse_near_repeat(input_csv, x_col, y_col, date_col, date_format, spatial_bandwidth, spatial_bands,
                        temporal_bandwidth, temporal_bands, iterations, distance, precision, seed, out_dir):
    """Knox test of near repeats as the Near Repeat Calculator does it: observed, expected, Knox ratio, p (CSV)."""
    from pipelines import near_repeat

    try:
        events = near_repeat.read_events(input_csv, x_col, y_col, date_col, date_format)
        result = near_repeat.knox_test(
            events["x"], events["y"], events["day"], spatial_bandwidth, spatial_bands, temporal_bandwidth,
            temporal_bands, iterations=iterations, distance=distance, seed=seed, precision=precision,
        )
    except near_repeat.NearRepeatInputError as exc:
        raise Refused(str(exc)) from exc
    except ValueError as exc:
        raise Refused(f"{input_csv}: {exc}") from exc
    for line in near_repeat.summary_lines(result):
        click.echo(line)
    for path in near_repeat.write_tables(result, out_dir):
        click.echo(f"wrote {path}")


@main.group()
def quarantine():
    """Quarantined rows: list them, show one delivery's, release them after a contract fix."""


@quarantine.command("list")
@home_option
@click.option("--partner", default=None)
@click.option("--delivery", "delivery_id", default=None, help="A delivery id (its first characters are enough).")
@click.option("--reason", default=None, help="A reason, or its start (e.g. 'category').")
def quarantine_list(home_dir, partner, delivery_id, reason):
    """Rows held in quarantine per partner, delivery and reason (counts and row numbers, never values)."""
    from contextlib import closing

    from pipelines import quarantine as q
    from pipelines import warehouse

    with closing(warehouse.connect(_home(home_dir))) as con:
        frame = q.list_quarantine(con, partner, delivery_id, reason)
    if frame.empty:
        click.echo("nothing in quarantine")
    for row in frame.itertuples(index=False):
        click.echo(f"{row.partner}\t{row.delivery}\t{row.file_name}\t{row.rows_held} rows "
                   f"(first row {row.first_row})\t{row.reason}")


@quarantine.command("show")
@home_option
@click.argument("delivery_id")
def quarantine_show(home_dir, delivery_id):
    """One delivery's quarantined rows: row number, reasons, released or not."""
    from contextlib import closing

    from pipelines import quarantine as q
    from pipelines import warehouse

    with closing(warehouse.connect(_home(home_dir))) as con:
        frame = q.show_delivery(con, delivery_id)
    if frame.empty:
        raise Refused(f"delivery {delivery_id!r} has no quarantined rows")
    for row in frame.itertuples(index=False):
        released = "" if row.released_at is None or str(row.released_at) in ("NaT", "None") else f"\treleased {row.released_at}"
        click.echo(f"row {row.source_row}\t{'; '.join(row.reasons)}{released}")


@quarantine.command("release")
@home_option
@click.argument("delivery_id")
@click.option("--partner", required=True)
def quarantine_release(home_dir, delivery_id, partner):
    """Re-validate a delivery's quarantined rows with the current contract and load those that now pass."""
    from contextlib import closing

    from pipelines import jobs, warehouse
    from pipelines import quarantine as q
    from pipelines.contracts import contract_for

    home = _home(home_dir)
    key = _key()
    with closing(warehouse.connect(home)) as con:
        try:
            detail = q.release(con, home, contract_for(partner), delivery_id, key, jobs.placing_context(con, home))
        except q.ReleaseRefused as exc:
            raise Refused(str(exc)) from exc
    click.echo(f"released {detail['released']} rows of delivery {detail['delivery_id'][:12]}; "
               f"{detail['still_quarantined']} still in quarantine")


@main.command("retention")
@home_option
@click.option("--days", type=int, default=None, help="Retention period in days (default: EST_RETENTION_DAYS or 395).")
def retention_command(home_dir, days):
    """Gallring: delete raw files and person-level values older than the retention period; keep aggregates."""
    from pipelines import retention

    try:
        result = retention.run_retention(_home(home_dir), days=days)
    except ValueError as exc:
        raise Refused(str(exc)) from exc
    click.echo(f"retention (cut-off {result.cutoff}): {result.files_deleted} files deleted, "
               f"{result.incidents_cleared} incidents cleared of person-level values, "
               f"{result.quarantine_deleted} quarantine rows deleted")


@main.group("keys")
def keys_group():
    """Pseudonym keys: rotation (see pipelines/keys.py for why rotation is a chain)."""


@keys_group.command("rotate")
@home_option
@click.option("--new-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A file holding the new key as hex (default: EST_PSEUDONYM_KEY_NEW).")
def keys_rotate(home_dir, new_key_file):
    """Re-key every retained pseudonym under the new key, in one transaction (old key: EST_PSEUDONYM_KEY)."""
    from pipelines import keys, privacy

    old = _key()
    try:
        if new_key_file is not None:
            new = privacy.load_key(f"--new-key-file {new_key_file.name}", value=new_key_file.read_text())
        else:
            new = privacy.load_key(keys.NEW_KEY_ENV_VAR)
        if getattr(new, "previous", ()):
            raise Refused("the new key must be one key, not a chain")
        result = keys.rotate(_home(home_dir), old, bytes(new))
    except (privacy.PseudonymKeyError, keys.RotationRefused) as exc:
        raise Refused(str(exc)) from exc
    click.echo(f"rotated {result.incidents} incidents ({result.persons} person pseudonyms) from key id "
               f"{result.old_key_id} to {result.new_key_id}. Now set {KEY_ENV_VAR} (and the Airflow Variable) to "
               "the new key, a comma, then the old value: the chain, current key first.")


@main.command("export")
@home_option
@click.option("--partner", required=True, help="The partner id (a contract in schemas/partners/).")
def export_command(home_dir, partner):
    """A partner's export: its own rows (pseudonyms in its own export domain) and shared aggregates; audited."""
    from pipelines import audiences
    from pipelines.contracts import load_contracts

    if partner not in load_contracts():
        raise Refused(f"--partner {partner!r} has no contract in schemas/partners/")
    key = _key()
    for path in audiences.export_partner(_home(home_dir), partner, key):
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
