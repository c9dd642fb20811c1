"""Airflow on one machine: the project's DAGs run in-process (``dag.test``) or under ``airflow standalone``.

Why this module exists
- Airflow reads its configuration once, when ``airflow`` is first imported. So nothing here imports airflow at
  module level: :func:`airflow_env` builds the environment for a home, :func:`run_dag_test` puts it into
  ``os.environ`` and only then imports airflow; :func:`run_standalone` hands it to a child process.
- The DAG files in ``dags/`` import this module when Airflow parses them, so it stays cheap: standard library
  and ``pipelines.settings`` only. Everything heavy (airflow core, duckdb, the jobs) is imported inside functions.
- The helpers the DAG tasks call at *run* time live here too (the week or quarter to render, the key from the
  masked Airflow Variable, a count-only summary of receipts), so the DAG files only schedule and wire.

The key. The pseudonymisation key reaches tasks as the Airflow Variable ``est_pseudonym_key_secret``, set through
the environment variable ``AIRFLOW_VAR_EST_PSEUDONYM_KEY_SECRET`` (Airflow's environment secrets backend). The
name contains "secret", so Airflow's secrets masker redacts the value from every task log line once a task reads
it (PRIVACY.md, "Keys and pseudonyms"). It is never put in the metadata database, XCom, rendered templates or
airflow.cfg.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipelines import settings
from pipelines.settings import DAGS_DIR, KEY_ENV_VAR, PARTNER_CONTRACTS_DIR, Home

# DuckDB allows one writer per file (DESIGN.md section 3): every task that opens the warehouse runs in this pool.
DUCKDB_POOL = "est_duckdb_writer"
DUCKDB_POOL_SLOTS = 1

# Airflow masks a Variable's value in logs when its name contains a sensitive word such as "secret"
# (airflow.sdk secrets masker, DEFAULT_SENSITIVE_FIELDS). Do not rename it to something without one.
KEY_VARIABLE = "est_pseudonym_key_secret"
KEY_VARIABLE_ENV = f"AIRFLOW_VAR_{KEY_VARIABLE.upper()}"

# Two cores: a handful of task processes at once is plenty, and the DuckDB pool serialises writers anyway.
PARALLELISM = 4
RETRIES = 2
RETRY_DELAY = dt.timedelta(seconds=30)
EXECUTION_TIMEOUT = dt.timedelta(hours=1)
STANDALONE_LOG = "standalone.log"

TZ = ZoneInfo(settings.TIMEZONE)
_ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
_PARTNER_ID = re.compile(r"^[a-z][a-z0-9_]*$")

# Loggers that flood task logs at INFO with nothing an operator needs (GX registers its public API on import).
NOISY_LOGGERS = ("great_expectations._docs_decorators",)


class DagRunFailed(RuntimeError):
    """A DAG run under dag.test() ended in a state other than success."""


# ---------------------------------------------------------------------------------------------------------------
# What the DAG files use at parse time (cheap: no airflow core, no I/O beyond listing the contracts folder)
# ---------------------------------------------------------------------------------------------------------------


def partner_ids(contracts_dir: Path = PARTNER_CONTRACTS_DIR) -> list[str]:
    """The partners with a contract: the names of ``schemas/partners/*.yaml`` (adding a partner is adding a file).

    File names only, no YAML parsing (this runs whenever Airflow parses a DAG file); the same files as
    :func:`pipelines.contracts.load_contracts` reads. A name that cannot be a partner id raises, which shows
    as an import error of ``dags/est_ingest.py`` in the Airflow UI.
    """
    found = []
    for path in sorted(contracts_dir.glob("*.yaml")):
        if not _PARTNER_ID.match(path.stem):
            raise ValueError(
                f"partner contract {path.name}: the file name must be a partner id of lower-case letters, digits and _"
            )
        found.append(path.stem)
    return found


def inbox_asset_uri(partner: str) -> str:
    return f"est://inbox/{partner}"


def inbox_asset(partner: str):
    """The asset that stands for 'new files in inbox/<partner>/'. Its ingest DAG is scheduled on it."""
    from airflow.sdk import Asset

    return Asset(name=f"est_inbox_{partner}", uri=inbox_asset_uri(partner), group="est_inbox")


def default_args() -> dict[str, Any]:
    """Task defaults for every EST DAG: retries with a short delay (Airflow runs a task at least once)."""
    return {
        "owner": "est",
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "execution_timeout": EXECUTION_TIMEOUT,
    }


# ---------------------------------------------------------------------------------------------------------------
# What tasks use at run time
# ---------------------------------------------------------------------------------------------------------------


def _local(moment: dt.datetime) -> dt.datetime:
    """``moment`` in Europe/Stockholm. A naive datetime is taken to be Stockholm wall-clock time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=TZ)
    return moment.astimezone(TZ)


def week_just_ended(moment: dt.datetime) -> str:
    """The last complete ISO week (Monday-Sunday, Europe/Stockholm) before ``moment``, as 'YYYY-Www'.

    A run on Monday 2026-01-05 06:00 renders the week that ended on Sunday 2026-01-04: 2026-W01. The ISO year
    is used, not the calendar year (Monday 2021-01-04 renders 2020-W53).
    """
    day = _local(moment).date()
    monday = day - dt.timedelta(days=day.weekday())
    year, week, _ = (monday - dt.timedelta(days=1)).isocalendar()
    return f"{year}-W{week:02d}"


def quarter_just_ended(moment: dt.datetime) -> str:
    """The last complete calendar quarter (Europe/Stockholm) before ``moment``, as 'YYYYQn'."""
    local = _local(moment)
    index = local.year * 4 + (local.month - 1) // 3 - 1
    return f"{index // 4}Q{index % 4 + 1}"


def check_iso_week(value: str) -> str:
    match = _ISO_WEEK.match(value or "")
    if not match:
        raise ValueError(f"iso_week must look like 2026-W05, got {value!r}")
    year, week = int(match.group(1)), int(match.group(2))
    if not 1 <= week <= dt.date(year, 12, 28).isocalendar()[1]:
        raise ValueError(f"iso_week {value!r}: {year} has no week {week}")
    return value


def check_quarter(value: str) -> str:
    if not _QUARTER.match(value or ""):
        raise ValueError(f"quarter must look like 2026Q1, got {value!r}")
    return value


def _run_moment(context: Mapping[str, Any]) -> dt.datetime:
    """When the run stands: its logical date, else (manual runs in Airflow 3 may have none) its run_after."""
    moment = context.get("logical_date")
    if moment is None and context.get("dag_run") is not None:
        moment = context["dag_run"].run_after
    if moment is None:
        raise ValueError("the run has neither a logical date nor a run_after time")
    return moment


def week_to_render(context: Mapping[str, Any]) -> str:
    """``params.iso_week`` when given (backfills), else the ISO week that ended just before the run."""
    chosen = (context.get("params") or {}).get("iso_week")
    return check_iso_week(chosen) if chosen else week_just_ended(_run_moment(context))


def quarter_to_render(context: Mapping[str, Any]) -> str:
    """``params.quarter`` when given (backfills), else the quarter that ended just before the run."""
    chosen = (context.get("params") or {}).get("quarter")
    return check_quarter(chosen) if chosen else quarter_just_ended(_run_moment(context))


def pseudonym_key() -> bytes:
    """The master key from the masked Airflow Variable, inside a running task; raises when it is missing or bad.

    Airflow masks the variable's text as soon as it is read, but only as a whole; every key of a rotated chain,
    each in every spelling (:func:`key_forms`: hex, ``repr`` of its bytes, base64, and its derived domain keys),
    is registered with the masker too, so not even the old key of a chain alone can reach a log line. No key,
    no run: a missing or malformed key fails the task at once, without retries (retrying cannot fix it), with
    the message of :func:`pipelines.privacy.load_key`.
    """
    from airflow.sdk import Variable
    from airflow.sdk.exceptions import AirflowFailException
    from airflow.sdk.log import mask_secret

    from pipelines import privacy

    text = Variable.get(KEY_VARIABLE, default=None) or ""
    for form in key_forms(text):
        mask_secret(form)  # no name: masked whatever the masker's sensitive-name settings are
    try:
        return privacy.load_key(KEY_VARIABLE, value=text)
    except privacy.PseudonymKeyError as exc:
        raise AirflowFailException(f"{exc} (Airflow Variable {KEY_VARIABLE}, env {KEY_VARIABLE_ENV})") from None


def key_forms(text: str) -> list[str]:
    """Every spelling of the key a log line could hold, for each key of the secret, to register with Airflow's
    secrets masker.

    The secret may be a chain after ``est keys rotate``: ``<new hex>,<old hex>[,...]`` (pipelines/keys.py).
    Airflow masks a Variable's value only as a whole (the masker matches exact substrings, case-sensitively), so
    a log line holding just the old key would pass; hence each key of the chain, and each of its derived domain
    keys (:data:`pipelines.audit_outputs.KEY_DOMAINS`, as secret as the master key), in every form that
    ``est audit-outputs`` looks for: the text as written, hex in lower and upper case, the ``repr`` of the
    bytes (with and without ``b'...'``), base64 and URL-safe base64 (padded and not, and the part of it that
    stays the same inside a longer base64 text whatever the alignment). Text that is not hex is masked as is.
    """
    import base64

    from pipelines import privacy
    from pipelines.audit_outputs import KEY_DOMAINS

    whole = text.strip()
    forms = [whole] if whole else []
    for part in (p.strip() for p in whole.split(",")):
        if not part:
            continue
        forms.append(part)
        try:
            key = bytes.fromhex(part)
        except ValueError:
            continue
        if not key:
            continue
        keys = [key]
        try:
            keys += [privacy.derive_key(key, domain).key for domain in KEY_DOMAINS]
        except privacy.PseudonymKeyError:
            pass  # too short to be used (load_key stops the run); its own spellings are still masked
        for one in keys:
            forms += [one.hex(), one.hex().upper(), repr(one), repr(one)[2:-1]]
            for encoder in (base64.b64encode, base64.urlsafe_b64encode):
                encoded = encoder(one).decode()
                forms += [encoded, encoded.rstrip("=")]
                for shift in (1, 2):  # the key inside a longer base64 text: the characters it alone decides
                    shifted = encoder(b"\0" * shift + one).decode().rstrip("=")
                    forms.append(shifted[(shift * 4 + 2) // 3:-2])
    return list(dict.fromkeys(f for f in forms if f))


def summarise_receipts(receipts: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts only, safe for XCom and logs: files, files per status, and the sums of the ``rows_*`` counts.

    A receipt also names the file and quotes the header and quarantine reasons; none of that goes to XCom.
    """
    summary: dict[str, int] = {"files": 0}
    for receipt in receipts:
        summary["files"] += 1
        status = receipt.get("status")
        if isinstance(status, str) and re.fullmatch(r"[a-z_]{1,32}", status):
            summary[f"status_{status}"] = summary.get(f"status_{status}", 0) + 1
        for name, value in receipt.items():
            if isinstance(value, int) and not isinstance(value, bool) and re.fullmatch(r"rows_[a-z_]{1,32}", name):
                summary[name] = summary.get(name, 0) + value
    return summary


def pending_deliveries(home: Home, partners: Iterable[str]) -> dict[str, int]:
    """Per partner, how many files in its inbox are not yet in the ingest ledger (by content hash; the jobs' rule)."""
    from pipelines import jobs

    pending = {}
    for partner in partners:
        count = len(jobs.new_files(home, partner))
        if count:
            pending[partner] = count
    return pending


def run_home() -> Home:
    """The home, resolved when a task runs (EST_HOME in the task's environment), never when a DAG is parsed.

    Every task calls this first, so it also quiets the loggers that would flood the task log.
    """
    quiet_noisy_loggers()
    return settings.home_from()


def relative_names(home: Home, files: Iterable[Path]) -> list[str]:
    """Output files as paths relative to the home (for XCom and the UI: no absolute deployment paths)."""
    names = []
    for path in files:
        path = Path(path)
        try:
            names.append(path.resolve().relative_to(home.root).as_posix())
        except ValueError:
            names.append(path.name)
    return names


def announce_deliveries(alias_events) -> dict[str, int]:
    """Inside ``est_watch_inbox``: one asset event per partner with new files, through the task's AssetAlias.

    ``alias_events`` is ``outlet_events[<the alias>]``. Returns {partner: new files} (counts only).
    """
    pending = pending_deliveries(run_home(), partner_ids())
    for partner, count in sorted(pending.items()):
        alias_events.add(inbox_asset(partner), extra={"new_files": count})
    return pending


def quiet_noisy_loggers() -> None:
    import logging

    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------------------------
# Running Airflow for a home
# ---------------------------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(home: Home, *, key: str | None = None, port: int | None = None) -> dict[str, str]:
    """The environment variables that make Airflow serve ``home`` (only these; merge them into os.environ).

    ``key`` is the pseudonymisation key's text; None: the one in ``EST_PSEUDONYM_KEY``; "": none. Without one, no
    key variable is set and the ingest tasks fail with the jobs' clear error (no key, no run).
    """
    airflow_home = home.airflow_home
    port = port or free_port()
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW_CONFIG": str(airflow_home / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
        "AIRFLOW__CORE__HIDE_SENSITIVE_VAR_CONN_FIELDS": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__WORKERS": "1",
        # The scheduler's and triggerer's log servers (Airflow binds them to every interface, JWT-protected):
        # free ports, so two installations (a test and a user's `est airflow`) do not collide on 8793/8794.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "EST_HOME": str(home.root),
    }
    key = key if key is not None else os.environ.get(KEY_ENV_VAR)
    if key:
        env[KEY_VARIABLE_ENV] = key
    return env


_configured_home: Path | None = None
_metadata_ready: set[Path] = set()


def _configure_process(home: Home, key: str | None) -> None:
    """Point this process's Airflow at ``home``. Airflow binds its metadata DB at import, so one home per process."""
    global _configured_home
    env = airflow_env(home, key=key, port=8080)
    if _configured_home is not None and _configured_home != home.root:
        raise RuntimeError(
            f"Airflow in this process already serves the home {_configured_home}; it reads its configuration once, "
            f"at import, so {home.root} needs its own process"
        )
    if _configured_home is None and "airflow.settings" in sys.modules:
        current = os.environ.get("AIRFLOW_HOME")
        if current != env["AIRFLOW_HOME"]:
            raise RuntimeError(
                f"airflow was imported in this process before run_dag_test() configured it (AIRFLOW_HOME={current!r}); "
                f"call run_dag_test() before anything imports airflow, or use a new process"
            )
    home.airflow_home.mkdir(parents=True, exist_ok=True)
    for name in list(env):
        if name.startswith(("AIRFLOW__API__", "AIRFLOW__LOGGING__WORKER_LOG", "AIRFLOW__LOGGING__TRIGGER_LOG")):
            env.pop(name)  # no server in this process
    os.environ.update(env)
    if key == "":
        os.environ.pop(KEY_VARIABLE_ENV, None)  # explicitly no key (tests of "no key, no run")
    _configured_home = home.root


def prepare_metadata(home: Home) -> None:
    """Create Airflow's metadata DB for ``home`` and the one-slot DuckDB pool. Idempotent; needs a configured process."""
    if home.root in _metadata_ready:
        return
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.initdb()
    Pool.create_or_update_pool(
        name=DUCKDB_POOL,
        slots=DUCKDB_POOL_SLOTS,
        description="DuckDB has one writer at a time: every task that opens the warehouse runs here",
        include_deferred=False,
    )
    _metadata_ready.add(home.root)


def load_dags(dag_folder: Path = DAGS_DIR):
    """Parse the dags folder like the dag processor does. Returns the DagBag (check ``import_errors``)."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dag_folder), safe_mode=False)


def run_dag_test(
    home: Home,
    dag_id: str,
    logical_date: dt.datetime | None = None,
    run_conf: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    retries: bool = False,
) -> str:
    """Run one DAG in this process with Airflow's test runner (``dag.test``); returns the run's final state.

    Sets the environment for ``home`` first (before airflow is imported: call this before anything imports
    airflow), creates the metadata DB and the DuckDB pool once, parses ``dags/`` and runs ``dag_id``.
    ``logical_date`` naive means Stockholm wall-clock time; None means now. ``retries=False`` runs each task
    once (the retry delay exists for the scheduler, not for a demo that should stop at the first error).
    Raises :class:`DagRunFailed` naming the failed tasks when the run does not succeed.
    """
    _configure_process(home, key)
    prepare_metadata(home)
    quiet_noisy_loggers()
    from airflow.sdk.log import mask_secret

    if os.environ.get(KEY_VARIABLE_ENV):
        for form in key_forms(os.environ[KEY_VARIABLE_ENV]):
            mask_secret(form)
    bag = load_dags()
    if dag_id not in bag.dags:
        problems = "; ".join(f"{file}: {error.strip().splitlines()[-1]}" for file, error in bag.import_errors.items())
        raise KeyError(f"no DAG {dag_id!r} in {DAGS_DIR} (found {sorted(bag.dags)}){'; import errors: ' + problems if problems else ''}")
    dag = bag.dags[dag_id]
    if not retries:
        for task in dag.tasks:
            task.retries = 0
    moment = _local(logical_date).astimezone(dt.timezone.utc) if logical_date is not None else None
    with redacted_output():
        run = dag.test(logical_date=moment, run_conf=run_conf) if moment else dag.test(run_conf=run_conf)
    state = str(getattr(run.state, "value", run.state))
    if state != "success":
        from airflow.utils.session import create_session

        with create_session() as session:
            states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in run.get_task_instances(session=session)}
        failed = sorted(task for task, task_state in states.items() if task_state == "failed")
        blocked = sorted(task for task, task_state in states.items() if task_state == "upstream_failed")
        raise DagRunFailed(
            f"DAG {dag_id} run {run.run_id} ended {state}: failed task(s): {', '.join(failed) or 'none recorded'}"
            + (f"; not run because of them: {', '.join(blocked)}" if blocked else "")
            + ". The task's error is in the log above."
        )
    return state


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    """Pass everything this process writes while the block runs through Airflow's secrets masker.

    Under a scheduler, the task supervisor masks task output; ``dag.test`` runs tasks in this process with no
    supervisor, and neither ``print`` nor stdlib logging nor rendered tracebacks go through the masker there.
    So: file descriptors 1 and 2 go through a pipe that redacts line by line (catches every writer, whatever
    stream object it holds), and the Python-level streams (``sys.stdout``/``sys.stderr`` and the streams of
    logging handlers, which may not be fds 1 and 2, e.g. under pytest's capture) are wrapped as well.
    """
    from airflow.sdk._shared.secrets_masker import redact

    with contextlib.ExitStack() as stack:
        stack.enter_context(_redacted_fds(redact))
        stack.enter_context(_redacted_streams(redact))
        yield


class _RedactingStream:
    """A text stream that redacts whole lines before writing them to ``target``."""

    def __init__(self, target, redact):
        self._target, self._redact, self._pending = target, redact, ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, _, self._pending = self._pending.rpartition("\n")
            self._target.write(str(self._redact(complete + "\n")))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            self._target.write(str(self._redact(self._pending)))
            self._pending = ""
        self._target.flush()

    def __getattr__(self, name):
        return getattr(self._target, name)


@contextlib.contextmanager
def _redacted_streams(redact) -> Iterator[None]:
    import logging

    handlers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    swapped = []
    for handler in {h for logger in handlers for h in logger.handlers}:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            wrapper = _RedactingStream(handler.stream, redact)
            try:
                swapped.append((handler, handler.setStream(wrapper), wrapper))
            except AttributeError:  # logging's _StderrHandler: its stream is always the current sys.stderr
                pass
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _RedactingStream(sys.stdout, redact), _RedactingStream(sys.stderr, redact)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved
        for handler, original, wrapper in swapped:
            wrapper.flush()
            if handler.stream is wrapper:
                handler.setStream(original)


@contextlib.contextmanager
def _redacted_fds(redact) -> Iterator[None]:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    pipes = {fd: os.pipe() for fd in (1, 2)}

    def pump(read_fd: int, out_fd: int) -> None:
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    _write_all(out_fd, _redact_line(redact, line + b"\n"))
        if pending:
            _write_all(out_fd, _redact_line(redact, pending))

    threads = []
    for fd, (read_fd, write_fd) in pipes.items():
        thread = threading.Thread(target=pump, args=(read_fd, saved[fd]), daemon=True, name=f"redact-fd{fd}")
        thread.start()
        threads.append(thread)
        os.dup2(write_fd, fd)
        os.close(write_fd)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for fd, original in saved.items():
            os.dup2(original, fd)  # closes the last write end of the pipe: the pump sees EOF
        for thread in threads:
            thread.join(timeout=10)
        for original in saved.values():
            os.close(original)


def _redact_line(redact, line: bytes) -> bytes:
    text = line.decode("utf-8", errors="surrogateescape")
    return str(redact(text)).encode("utf-8", errors="surrogateescape")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _venv_bin() -> Path:
    return Path(sys.prefix) / "bin"


def standalone_env(home: Home, port: int, key: str | None = None) -> dict[str, str]:
    """The full environment for ``airflow standalone``: this process's, minus the CLI key, plus airflow_env."""
    env = dict(os.environ)
    env.pop(KEY_ENV_VAR, None)  # tasks get the key only through the masked Airflow Variable...
    env.pop(KEY_VARIABLE_ENV, None)  # ...and only the one given here (or in EST_PSEUDONYM_KEY), not an inherited one
    for name in list(env):
        if name.startswith("AIRFLOW__") or name in ("AIRFLOW_HOME", "AIRFLOW_CONFIG"):
            env.pop(name)  # nothing from an outer Airflow leaks in
    env.update(airflow_env(home, key=key, port=port))
    env["PATH"] = f"{_venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_standalone(home: Home, port: int, *, key: str | None = None) -> subprocess.Popen:
    """Start ``airflow standalone`` for ``home`` on 127.0.0.1:``port``; returns the process (its own group).

    The metadata DB and the DuckDB pool are prepared first in a short child process. Output goes to
    ``<airflow_home>/standalone.log``. The generated admin password is in
    ``<airflow_home>/simple_auth_manager_passwords.json.generated``. Stop it with :func:`stop`.
    """
    env = standalone_env(home, port, key)
    home.airflow_home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pipelines.airflow_local", "prepare-metadata", str(home.root)],
        env=env,
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = (home.airflow_home / STANDALONE_LOG).open("ab")
    try:
        return subprocess.Popen(
            [str(_venv_bin() / "airflow"), "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends exactly what it started
        )
    finally:
        log.close()


def stop(proc: subprocess.Popen, timeout: float = 30) -> int | None:
    """Stop a process from :func:`run_standalone` and everything it started: its group, then stray descendants."""
    import psutil

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        for child in descendants:
            try:
                if child.is_running():
                    child.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        try:
            proc.wait(timeout=timeout if sig == signal.SIGTERM else 10)
        except subprocess.TimeoutExpired:
            continue
        _, alive = psutil.wait_procs(descendants, timeout=timeout if sig == signal.SIGTERM else 10)
        descendants = alive
        if not alive:
            break
    return proc.poll()


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.airflow_local prepare-metadata HOME``: used by run_standalone in a configured child."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "prepare-metadata":
        print("usage: python -m pipelines.airflow_local prepare-metadata HOME", file=sys.stderr)
        return 2
    home = settings.home_from(args[1])
    prepare_metadata(home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
