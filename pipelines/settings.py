"""Every path the pipeline uses, resolved from this file's location, never from the working directory.

A *home* (``--home DIR``, ``EST_HOME``, default ``var/`` in the repository) holds everything one installation
writes: the DuckDB file, partner drop folders, reference layers, published outputs and Airflow's own files.
Two homes never share a file, so tests and demos run side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"
PARTNER_CONTRACTS_DIR = SCHEMAS_DIR / "partners"
SQL_DIR = REPO_ROOT / "sql"
REPORTS_DIR = REPO_ROOT / "reports"
DAGS_DIR = REPO_ROOT / "dags"
DEFAULT_HOME = REPO_ROOT / "var"

# Real reference data shared by the team (read-only). CI lays it beside the clone, as ../shared.
SHARED_DATA_DIR = Path(os.environ.get("EST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SE_STATISTICS_DIR = SHARED_DATA_DIR / "se-statistics"
POLISEN_EVENTS_DIR = SHARED_DATA_DIR / "polisen-events"

# The municipality this installation serves (SCB kommunkod). Örebro runs the original EST model.
MUNICIPALITY_CODE = os.environ.get("EST_MUNICIPALITY", "1880")
MUNICIPALITY_NAME = "Örebro"
TIMEZONE = "Europe/Stockholm"

# National projected CRS (SWEREF 99 TM); partner coordinates arrive in it or in WGS 84.
CRS_SWEREF99TM = "EPSG:3006"
CRS_WGS84 = "EPSG:4326"
GRID_CELL_METRES = 250  # as SCB's grid statistics

KEY_ENV_VAR = "EST_PSEUDONYM_KEY"
DESO_GPKG_ENV_VAR = "EST_DESO_GPKG"  # path to SCB's DeSO GeoPackage when a user has it


@dataclass(frozen=True)
class Home:
    """The folder layout of one installation. See README, 'The home folder'."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "est.duckdb"

    @property
    def inbox(self) -> Path:
        """inbox/<partner>/: where partners drop deliveries."""
        return self.root / "inbox"

    @property
    def out(self) -> Path:
        """out/: everything published (reports, maps, receipts, exports)."""
        return self.root / "out"

    @property
    def receipts(self) -> Path:
        return self.out / "receipts"

    @property
    def reference(self) -> Path:
        """reference/: layers the municipality owns (areas, address register)."""
        return self.root / "reference"

    @property
    def config(self) -> Path:
        """config/: files the security department edits (the intervention register)."""
        return self.root / "config"

    @property
    def interventions_file(self) -> Path:
        return self.config / "interventions.yaml"

    @property
    def address_register(self) -> Path:
        return self.reference / "address_register.csv"

    @property
    def areas_file(self) -> Path:
        return self.reference / "areas.parquet"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def work(self) -> Path:
        """work/: scratch space for temporary files (moved into out/ when complete)."""
        return self.root / "work"

    @property
    def area_index_cache(self) -> Path:
        """Where the point-in-area index of the installed areas is kept between processes (derived from the
        areas, rebuilt whenever they change: pipelines/geography.py, ``_area_index``)."""
        return self.work / "area-index"

    def partner_inbox(self, partner: str) -> Path:
        return self.inbox / partner

    def ensure(self) -> "Home":
        for path in (self.root, self.inbox, self.out, self.receipts, self.reference, self.config, self.work):
            path.mkdir(parents=True, exist_ok=True)
        return self


def home_from(path: str | os.PathLike | None = None) -> Home:
    """The home named by ``path``, else ``EST_HOME``, else ``var/`` in the repository."""
    chosen = path or os.environ.get("EST_HOME") or DEFAULT_HOME
    return Home(Path(chosen).expanduser().resolve())
