"""Airflow proper: `airflow standalone` for a temporary home, driven through the REST API v2 like a user would.

Starts the scheduler, dag processor, triggerer and API server (``pipelines.airflow_local.run_standalone``), logs
in as the generated admin, lets a delivery flow inbox → ``est_watch_inbox`` → asset event → ``est_ingest_<partner>``,
triggers ``est_weekly_report`` for a chosen week, and checks the report and that the key is in no log. Everything
it started is stopped in ``finally`` (its own process group), under a hard overall timeout.

Slow (about a minute or two) and it opens local ports: select or skip it with ``-m airflow_server`` /
``-m "not airflow_server"``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipelines import airflow_local
from pipelines.settings import Home

pytestmark = pytest.mark.airflow_server

TEST_KEY_HEX = "00" * 16 + "ff" * 16  # obviously fake; 32 bytes as hex text
WEEK = "2026-W10"
OVERALL_TIMEOUT_S = 240
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # SimpleAuthManager's generated admin password


class TimedOut(AssertionError):
    pass


class Api:
    """A minimal client of Airflow's REST API v2 (stdlib only) with one deadline for everything."""

    def __init__(self, port: int, deadline: float):
        self.base = f"http://127.0.0.1:{port}"
        self.deadline = deadline
        self.token: str | None = None

    def request(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth and self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        timeout = max(1.0, min(15.0, self.deadline - time.monotonic()))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def wait(self, what: str, check, every: float = 2.0):
        """Call ``check()`` until it returns something truthy; fail with ``what`` at the deadline."""
        last = None
        while time.monotonic() < self.deadline:
            try:
                result = check()
            except (OSError, urllib.error.URLError) as exc:  # not listening yet, or restarting
                result, last = None, exc
            if result:
                return result
            time.sleep(every)
        raise TimedOut(f"timed out waiting for {what} (last error: {last})")

    def healthy(self) -> bool:
        status, body = self.request("GET", "/api/v2/monitor/health", auth=False)
        return status == 200 and all(
            part.get("status") == "healthy" for part in body.values() if isinstance(part, dict)
        )

    def login(self, password_file: Path) -> None:
        """POST /auth/token with the admin password SimpleAuthManager generated into AIRFLOW_HOME: a JWT back."""
        passwords = self.wait("the generated password file", lambda: password_file.exists() and json.loads(
            password_file.read_text(encoding="utf-8")))
        status, body = self.request("POST", "/auth/token", {"username": "admin", "password": passwords["admin"]},
                                    auth=False)
        assert status == 201, (status, body)
        self.token = body["access_token"]

    def dag_parsed(self, dag_id: str) -> bool:
        return self.request("GET", f"/api/v2/dags/{dag_id}")[0] == 200

    def unpause(self, dag_id: str) -> None:
        status, body = self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        assert status == 200 and body["is_paused"] is False, (status, body)

    def trigger(self, dag_id: str, conf: dict) -> str:
        status, body = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        assert status == 200, (status, body)
        return body["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        status, body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")
        assert status == 200, (status, body)
        return body["dag_runs"]

    def finished(self, dag_id: str, run_id: str) -> str | None:
        status, body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        assert status == 200, (status, body)
        return body["state"] if body["state"] in ("success", "failed") else None

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        _, body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in body.get("task_instances", [])} if isinstance(body, dict) else {}


def _log_tail(home: Home, dag_id: str, lines: int = 40) -> str:
    logs = sorted((home.airflow_home / "logs").glob(f"dag_id={dag_id}/**/*.log"), key=lambda p: p.stat().st_mtime)
    return "\n".join(logs[-1].read_text(errors="replace").splitlines()[-lines:]) if logs else "(no task log)"


def _expect_success(api: Api, home: Home, dag_id: str, run_id: str) -> None:
    state = api.wait(f"{dag_id} run {run_id} to finish", lambda: api.finished(dag_id, run_id))
    assert state == "success", (
        f"{dag_id} {run_id}: {state}, tasks {api.task_states(dag_id, run_id)}\n{_log_tail(home, dag_id)}"
    )


def _with_deliveries() -> str | None:
    """The partner whose delivery goes through the asset chain, or None while the generator/contracts are missing."""
    if not (Path(airflow_local.__file__).parent / "generate.py").exists():
        return None
    partners = airflow_local.partner_ids()
    if not partners:
        return None
    return "police_events" if "police_events" in partners else partners[0]


def test_standalone_watch_ingest_and_weekly_report_through_the_rest_api(tmp_path):
    started = time.monotonic()
    deadline = started + OVERALL_TIMEOUT_S
    home = Home(tmp_path / "home").ensure()
    partner = _with_deliveries()
    if partner:
        from pipelines import generate

        generate.generate(home, weeks=2, last_week=WEEK)
    # The weekly DAG prepares the reference tables itself; preparing them here as well checks that a home
    # prepared by the command line is one Airflow can run on.
    from pipelines import jobs

    jobs.prepare_reference(home)

    port = airflow_local.free_port()
    proc = airflow_local.run_standalone(home, port, key=TEST_KEY_HEX)
    try:
        api = Api(port, deadline)
        api.wait("the API server, scheduler, dag processor and triggerer to be healthy", api.healthy)
        api.login(home.airflow_home / PASSWORDS_FILE)
        api.wait("the DAGs to be parsed", lambda: api.dag_parsed("est_weekly_report"))

        if partner:
            # A delivery reaches its ingest DAG through the watch and an asset event, not by a direct trigger.
            ingest_dag = f"est_ingest_{partner}"
            api.wait(f"{ingest_dag} to be parsed", lambda: api.dag_parsed(ingest_dag))
            api.unpause(ingest_dag)
            api.unpause("est_watch_inbox")
            _expect_success(api, home, "est_watch_inbox", api.trigger("est_watch_inbox", {}))
            asset_run = api.wait(
                f"an asset-triggered run of {ingest_dag}",
                lambda: next((r for r in api.runs(ingest_dag) if r["run_type"] == "asset_triggered"), None),
            )
            _expect_success(api, home, ingest_dag, asset_run["dag_run_id"])

        api.unpause("est_weekly_report")
        run_id = api.trigger("est_weekly_report", {"iso_week": WEEK})
        _expect_success(api, home, "est_weekly_report", run_id)
        written = sorted(p.name for p in (home.out / "weekly" / WEEK).glob("*.html"))
        assert written, f"no HTML report in out/weekly/{WEEK}"

        # The key reached the tasks only as the masked variable: it is in no log, in no form.
        for path in [home.airflow_home / airflow_local.STANDALONE_LOG, *(home.airflow_home / "logs").rglob("*")]:
            if path.is_file():
                text = path.read_text(errors="replace")
                for form in airflow_local.key_forms(TEST_KEY_HEX):
                    assert form not in text, f"the key appears in {path}"
        print(f"standalone test: {time.monotonic() - started:.0f} s until the report (partner: {partner})")
    finally:
        airflow_local.stop(proc)
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)  # nothing of the process group it started is left
