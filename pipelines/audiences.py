"""Who sees what: every output declares its audience and gets exactly the detail that audience may see
(PRIVACY.md; DESIGN.md section 1, "Users"; issue 4 item 5).

| audience | what it may see |
| --- | --- |
| ``public`` | aggregates per DeSO area (or a merge) and category, primary and secondary suppression, no grid cells |
| ``weekly_recipients`` | the weekly report: aggregates only (it becomes a public record), same suppression as public |
| ``analysis_meeting`` | aggregates, plus grid-cell hot spots, with the same suppression on every cell |
| ``partner:<id>`` | that partner's own rows (no free text, pseudonyms re-keyed into ``export:<id>``) and shared aggregates |

No audience ever gets free text, exact coordinates, a personnummer or an analysis pseudonym. Thresholds are the
privacy module's constants: one place knows them (STYLE.md, practice 5).

How the declaration is enforced (:func:`check_outputs`, run by tests/test_audiences.py over a rendered home):

1. every file under out/ is of a declared kind (:data:`OUTPUT_PATHS` -> :data:`OUTPUTS`), which fixes its
   audience (for a partner's folder, ``partner:<that folder>``);
2. every file is named by an audit entry (action ``publish`` or ``export``: the subject, or a name in the
   entry's ``detail["files"]``) whose audience resolves with :func:`audience` and is the declared one;
   :func:`pipelines.warehouse.audit` refuses a ``publish``/``export`` entry without a known audience;
3. each file holds no more detail than its audience may see: no stored pseudonym and no free text for anyone,
   no grid cell for an audience without ``grid_cells``, and a partner's export only that partner's rows (in its
   own pseudonym domain) and the shared aggregates' four columns.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import pandas as pd

from pipelines import privacy, warehouse
from pipelines.publish import write_atomic
from pipelines.settings import Home


@dataclass(frozen=True)
class Audience:
    name: str
    description: str
    own_rows: bool  # person-level rows of its own delivery (a partner), never anyone else's
    grid_cells: bool  # 250 m grid cells (hot spots) besides DeSO areas
    threshold: int  # primary suppression: 1..threshold-1 shown as "<threshold"
    sensitive_threshold: int  # for cells fed by social services, schools or home care
    secondary_suppression: bool
    free_text: bool = False  # never, for anyone: PRIVACY.md "Free text"
    pseudonym_domain: str | None = None  # the only pseudonyms it may see


_SHARED = dict(threshold=privacy.PRIMARY_THRESHOLD, sensitive_threshold=privacy.SENSITIVE_THRESHOLD,
               secondary_suppression=True)

AUDIENCES: dict[str, Audience] = {
    "public": Audience("public", "Anyone: open data, anything handed out.", own_rows=False, grid_cells=False,
                       **_SHARED),
    "weekly_recipients": Audience(
        "weekly_recipients", "Politicians and department heads: the weekly report, a public record once sent.",
        own_rows=False, grid_cells=False, **_SHARED),
    "analysis_meeting": Audience(
        "analysis_meeting", "The quarterly analysis meeting: maps, hot spots on grid cells, follow-up.",
        own_rows=False, grid_cells=True, **_SHARED),
}

# Which audience each output is for. A new output must be added here and to OUTPUT_PATHS (check_outputs, run by
# tests/test_audiences.py over a rendered home, fails on a file under out/ of no declared kind).
OUTPUTS = {
    "weekly_report": "weekly_recipients",
    "weekly_partner_view": "partner",
    "quarterly_map": "analysis_meeting",
    "quarterly_pack": "analysis_meeting",
    "open_data": "public",
    "receipt": "partner",
    "partner_export": "partner",
}

# Where each kind of output lives under out/ (POSIX path relative to out/; the first match wins). For a kind whose
# audience is "partner", the folder names the partner: its audience is "partner:<folder>".
OUTPUT_PATHS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"weekly/[^/]+/partners/(?P<partner>[a-z0-9_]+)/[^/]+"), "weekly_partner_view"),
    (re.compile(r"weekly/[^/]+/[^/]+"), "weekly_report"),
    (re.compile(r"quarterly/[^/]+/karta_[^/]+\.(?:html|csv)"), "quarterly_map"),
    (re.compile(r"quarterly/[^/]+/[^/]+"), "quarterly_pack"),
    (re.compile(r"open_data/.+"), "open_data"),
    (re.compile(r"receipts/(?P<partner>[a-z0-9_]+)/[^/]+"), "receipt"),
    (re.compile(r"exports/(?P<partner>[a-z0-9_]+)/[^/]+"), "partner_export"),
]

# Audit actions that publish a file; warehouse.audit refuses them without a known audience.
PUBLISHING_ACTIONS = ("publish", "export")


def partner_audience(partner: str) -> Audience:
    from pipelines.contracts import load_contracts

    if partner not in load_contracts():
        raise ValueError(f"no partner {partner!r}: an audience 'partner:<id>' needs a contract in schemas/partners/")
    return Audience(f"partner:{partner}", f"The partner {partner}: its own rows and shared aggregates.",
                    own_rows=True, grid_cells=False, pseudonym_domain=export_domain(partner), **_SHARED)


# Other spellings used by callers (the weekly report passes audience="recipients").
ALIASES = {"recipients": "weekly_recipients"}


def audience(name: str) -> Audience:
    """The audience called ``name``: one of AUDIENCES (or an alias), or ``partner:<id>``."""
    name = ALIASES.get(name, name)
    if name.startswith("partner:"):
        return partner_audience(name.split(":", 1)[1])
    if name not in AUDIENCES:
        raise ValueError(f"unknown audience {name!r} (known: {', '.join(AUDIENCES)}, partner:<id>)")
    return AUDIENCES[name]


def declared(relative: str) -> tuple[str, str] | None:
    """(kind, audience name) of the file at ``relative`` (POSIX path under out/), or None if of no declared kind."""
    for pattern, kind in OUTPUT_PATHS:
        match = pattern.fullmatch(relative)
        if match:
            target = OUTPUTS[kind]
            return kind, (f"partner:{match['partner']}" if target == "partner" else target)
    return None


def export_domain(partner: str) -> str:
    """The partner's own pseudonym domain: its export can be joined with nothing else (PRIVACY.md)."""
    return f"export:{partner.replace('_', '-')}"


# --------------------------------------------------------------------------------------------------------------
# The partner export
# --------------------------------------------------------------------------------------------------------------

OWN_COLUMNS = ["record", "revision", "iso_week", "occurred_date", "category", "place_type", "area_code",
               "location_precision", "persons"]


def _own_rows(con, partner: str, master: bytes) -> pd.DataFrame:
    rows = con.execute(
        "SELECT pseudonym_text(partner_record_id) AS partner_record_id, revision, iso_week, "
        "CAST(timezone('Europe/Stockholm', occurred_from) AS DATE) "
        "AS occurred_date, category, place_type, area_code::VARCHAR AS area_code, location_precision, persons "
        "FROM incidents "
        "WHERE partner = ? ORDER BY iso_week, partner_record_id", [partner]).df()
    key = privacy.derive_key(master, export_domain(partner))
    # HMAC of the stored pseudonym under the partner's export key: the identifiers themselves are not stored,
    # and the analysis/record pseudonyms never leave. The same record gets the same export pseudonym each time.
    record = privacy.pseudonymise(rows["partner_record_id"].astype(object), key)
    persons = []
    for value in rows["persons"]:
        if value is None or not hasattr(value, "__len__") or len(value) == 0:
            persons.append("")
        else:
            persons.append(" ".join(key.hmac_hex(("person:" + p).encode()) for p in value))
    out = rows.drop(columns=["partner_record_id", "persons"]).assign(record=record, persons=persons)
    out["area_code"] = out["area_code"].fillna("unplaced")
    return out[OWN_COLUMNS]


def _shared_aggregates(con, partner: str) -> pd.DataFrame:
    """Counts per ISO week x area x category over all partners, suppressed. A cell is also hidden when the
    other partners' part (the total minus the partner's own, which it knows) is 1..threshold-1: otherwise the
    partner could subtract its own rows and learn a small count of the others."""
    cells = con.execute(
        "SELECT w.iso_week, w.area_code, w.category, sum(w.n) AS n, "
        "sum(CASE WHEN w.partner = ? THEN w.n ELSE 0 END) AS own, "
        "bool_or(coalesce(p.sensitive, TRUE)) AS sensitive "
        "FROM weekly_counts w LEFT JOIN partners p ON p.partner = w.partner GROUP BY ALL ORDER BY ALL",
        [partner]).df()
    thresholds = [privacy.threshold_for(bool(s)) for s in cells["sensitive"]]
    display = cells["n"].astype("int64").astype(str).to_numpy(dtype=object)
    for i, (n, own, t) in enumerate(zip(cells["n"], cells["own"], thresholds)):
        others = int(n) - int(own)
        if 0 < int(n) < t:
            display[i] = privacy.suppressed_label(t)
        elif 0 < others < t:
            display[i] = privacy.HIDDEN_LABEL
    return pd.DataFrame({"iso_week": cells["iso_week"], "area_code": cells["area_code"],
                         "category": cells["category"], "n": display})


def export_partner(home: Home, partner: str, master: bytes, at: datetime | None = None) -> list[Path]:
    """Write the partner's export (own rows, shared aggregates) under out/exports/<partner>/ and log it.

    Audience ``partner:<partner>``; an audit entry says what, for whom, when and from which data (delivery ids
    as a digest and a count)."""
    target = partner_audience(partner)
    at = at or datetime.now(timezone.utc)
    folder = home.out / "exports" / partner
    with closing(warehouse.connect(home)) as con:
        own = _own_rows(con, partner, master)
        shared = _shared_aggregates(con, partner)
        deliveries = sorted(r[0] for r in con.execute(
            "SELECT delivery_id FROM ingest_ledger WHERE partner = ? AND status = 'accepted'", [partner]).fetchall())
        stamp = at.strftime("%Y%m%d")
        paths = [
            write_atomic(folder / f"export_{partner}_{stamp}_egna_rader.csv",
                         privacy.neutralise_csv_cells(own).to_csv(index=False, lineterminator="\n")),
            write_atomic(folder / f"export_{partner}_{stamp}_gemensamt.csv",
                         privacy.neutralise_csv_cells(shared).to_csv(index=False, lineterminator="\n")),
        ]
        relative = [p.relative_to(home.out).as_posix() for p in paths]
        with warehouse.transaction(con):
            warehouse.audit(con, "export", ", ".join(relative), audience=target.name, at=at, detail={
                "files": relative,
                "partner": partner, "own_rows": len(own), "shared_cells": len(shared),
                "weeks": [own["iso_week"].min(), own["iso_week"].max()] if len(own) else [],
                "deliveries": len(deliveries),
                "deliveries_sha256": hashlib.sha256("\n".join(deliveries).encode()).hexdigest(),
                "pseudonym_domain": target.pseudonym_domain,
            })
    return paths


# --------------------------------------------------------------------------------------------------------------
# Enforcing the declaration: every file under out/ logged for its declared audience, and no more detail
# --------------------------------------------------------------------------------------------------------------

#: Files read as text by :func:`check_outputs` (a PDF is read through its text operators; PNGs are pictures of
#: the same tables and are checked through them).
TEXT_SUFFIXES = {".html", ".htm", ".csv", ".json", ".txt", ".svg", ".xml", ".md", ".log", ".tsv"}
SHARED_COLUMNS = ["iso_week", "area_code", "category", "n"]
#: Free text shorter than this may be a controlled word ("Klotter"); longer stored descriptions must not appear.
FREE_TEXT_MIN_CHARS = 20
_HEX64 = re.compile(r"(?i)(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
# An SCB grid-cell id: easting (6 digits) then northing (7 digits) of the lower-left corner, as incidents.grid_cell.
_GRID_ID = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{7})(?![0-9A-Za-z])")


@dataclass(frozen=True)
class Problem:
    path: str  # relative to out/
    rule: str  # undeclared | unlogged | unknown_audience | wrong_audience | pseudonym | free_text | grid_cell | ...
    message: str  # never the personal value itself

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}: {self.message}"


@dataclass(frozen=True)
class Logged:
    audience: str  # as written in the audit log
    action: str
    logged_at: datetime


def logged_outputs(con, out: Path) -> dict[str, list[Logged]]:
    """Every file under out/ (POSIX path relative to it) that an audit entry names, with the entries naming it.

    A ``publish``/``export`` entry names its subject (one path relative to out/, or several joined by ", ") and
    each name in ``detail["files"]`` (relative to out/ when it has a "/", else to the subject's folder).
    Receipts: the ``ingest`` entry of a delivery names its receipt ``receipts/<partner>/<file stem>.<12 hex of
    the delivery id>.json|html``; its audience is the entry's, else the declared ``partner:<partner>``.
    """
    named: dict[str, list[Logged]] = {}
    rows = con.execute(
        "SELECT action, subject, audience, detail, logged_at FROM audit_log WHERE action IN ('publish', 'export', "
        "'ingest') ORDER BY logged_at").fetchall()
    receipts = {}
    for action, subject, target, detail_text, at in rows:
        detail = json.loads(detail_text or "{}")
        if action == "ingest":
            partner = detail.get("partner")
            if partner:
                receipts[(partner, PurePosixPath(subject).stem)] = Logged(target or f"partner:{partner}", action, at)
            continue
        subjects = [part.strip() for part in (subject or "").split(", ") if part.strip()]
        if action == "export" and subjects and "/" not in subjects[0] and detail.get("partner"):
            subjects = [f"exports/{detail['partner']}/{name}" for name in subjects]  # entries before files=paths
        base = PurePosixPath(subjects[0]).parent if subjects else PurePosixPath(".")
        files = set(subjects)
        for name in detail.get("files") or []:
            files.add(str(name) if "/" in str(name) else (base / str(name)).as_posix())
        for name in files:
            named.setdefault(name, []).append(Logged(target or "", action, at))
    receipt_name = re.compile(r"receipts/(?P<partner>[a-z0-9_]+)/(?P<stem>.+)\.[0-9a-f]{12}\.(?:json|html)")
    for path in sorted(out.glob("receipts/*/*")):
        relative = path.relative_to(out).as_posix()
        match = receipt_name.fullmatch(relative)
        if match and (match["partner"], match["stem"]) in receipts:
            named.setdefault(relative, []).append(receipts[(match["partner"], match["stem"])])
    return named


def published_files(out: Path) -> list[str]:
    """Every file under out/ as a POSIX path relative to it (a temporary file of write_atomic included)."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def output_audiences(con, out: Path) -> tuple[dict[str, str], list[Problem]]:
    """The audience of each file under out/ (the declared one, when an audit entry logs it so), and the problems:
    a file of no declared kind, a file no ``publish``/``export`` entry names, an unknown audience, or an entry
    whose audience is not the declared one."""
    named = logged_outputs(con, out)
    audiences_of: dict[str, str] = {}
    problems: list[Problem] = []
    for relative in published_files(out):
        kind = declared(relative)
        if kind is None:
            problems.append(Problem(relative, "undeclared", "no kind of output in audiences.OUTPUT_PATHS"))
            continue
        entries = named.get(relative, [])
        if not entries:
            problems.append(Problem(relative, "unlogged", f"no publish/export audit entry names this {kind[0]}"))
            continue
        for entry in entries:
            try:
                name = audience(entry.audience).name
            except ValueError:
                problems.append(Problem(relative, "unknown_audience",
                                        f"the {entry.action} entry of {entry.logged_at} names audience "
                                        f"{entry.audience!r}"))
                continue
            if name != kind[1]:
                problems.append(Problem(relative, "wrong_audience",
                                        f"logged for {name!r}, but a {kind[0]} is for {kind[1]!r}"))
        audiences_of[relative] = kind[1]
    return audiences_of, problems


def _text_of(path: Path) -> str | None:
    if path.suffix.lower() == ".pdf":
        from pipelines.audit_outputs import pdf_text

        return "\n".join(pdf_text(path.read_bytes()))
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return None
    return html.unescape(path.read_text(encoding="utf-8-sig", errors="replace"))


def grid_cell_ids(text: str) -> list[str]:
    """Tokens of ``text`` shaped like a 250 m SCB grid-cell id inside Sweden (easting 200 000-1 000 000 m,
    northing 6 100 000-7 700 000 m, both multiples of the cell size)."""
    from pipelines.settings import GRID_CELL_METRES

    found = []
    for match in _GRID_ID.finditer(text):
        east, north = int(match[1]), int(match[2])
        if (200_000 <= east <= 1_000_000 and 6_100_000 <= north <= 7_700_000
                and east % GRID_CELL_METRES == 0 and north % GRID_CELL_METRES == 0):
            found.append(match[0])
    return found


def check_outputs(home: Home, master: bytes | None = None) -> list[Problem]:
    """Every problem with what is under out/ (see the module docstring): undeclared or unlogged files, wrong
    audiences, and detail an audience may not see. ``master``: the pseudonym key; with it, a partner's export
    is also checked record by record against that partner's rows in its export domain. Empty list: all good."""
    with closing(warehouse.connect(home, read_only=True)) as con:
        audiences_of, problems = output_audiences(con, home.out)
        stored = {r[0] for r in con.execute("SELECT pseudonym_text(partner_record_id) FROM incidents").fetchall()}
        stored |= {r[0] for r in con.execute("SELECT unnest(persons) FROM incidents").fetchall()}
        descriptions = [r[0] for r in con.execute(
            "SELECT DISTINCT description FROM incidents WHERE length(description) >= ?",
            [FREE_TEXT_MIN_CHARS]).fetchall()]
        own_ids = {}
        for partner, ids in con.execute(
                "SELECT partner, list(pseudonym_text(partner_record_id)) FROM incidents GROUP BY partner").fetchall():
            own_ids[partner] = ids
    stored = {s.lower() for s in stored if s}
    for relative, name in sorted(audiences_of.items()):
        path = home.out / relative
        text = _text_of(path)
        if text is None:
            continue
        target = audience(name)
        tokens = {t.lower() for t in _HEX64.findall(text)}
        if tokens & stored:
            problems.append(Problem(relative, "pseudonym",
                                    f"{len(tokens & stored)} stored record or analysis pseudonym(s)"))
        leaked = sum(1 for d in descriptions if d in text)
        if leaked:
            problems.append(Problem(relative, "free_text", f"{leaked} stored free-text description(s)"))
        if not target.grid_cells:
            cells = grid_cell_ids(text)
            if cells:
                problems.append(Problem(relative, "grid_cell",
                                        f"{len(cells)} grid-cell id(s), but {name!r} sees DeSO areas only"))
        if target.own_rows:
            partner = name.split(":", 1)[1]
            problems += _partner_file_problems(relative, path, partner, own_ids, master)
    return problems


def _partner_file_problems(relative: str, path: Path, partner: str, own_ids: dict[str, list[str]],
                           master: bytes | None) -> list[Problem]:
    """A partner's files: a receipt is about its own deliveries; an export holds its own rows (every one, in its
    export domain when ``master`` is given) or the shared aggregates' columns, nothing else."""
    import csv
    import io

    found = []
    kind = declared(relative)[0]
    if kind == "receipt" and path.suffix == ".json":
        if json.loads(path.read_text(encoding="utf-8")).get("partner") != partner:
            found.append(Problem(relative, "other_partner", f"a receipt in {partner}'s folder about another partner"))
    if kind != "partner_export":
        return found
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    columns = list(rows[0]) if rows else path.read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    if path.name.endswith("_gemensamt.csv"):
        if columns != SHARED_COLUMNS:
            found.append(Problem(relative, "columns", f"shared aggregates with columns {columns}"))
    elif path.name.endswith("_egna_rader.csv"):
        if sorted(columns) != sorted(OWN_COLUMNS):
            found.append(Problem(relative, "columns", f"own rows with columns {columns}"))
        mine = own_ids.get(partner, [])
        if len(rows) != len(mine):
            found.append(Problem(relative, "other_rows",
                                 f"{len(rows)} rows, but {partner} has {len(mine)} rows in the warehouse"))
        if master is not None and "record" in columns:
            key = privacy.derive_key(master, export_domain(partner))
            expected = set(privacy.pseudonymise(pd.Series(mine, dtype=object), key)) if mine else set()
            foreign = {r["record"] for r in rows} - expected
            if foreign:
                found.append(Problem(relative, "other_rows",
                                     f"{len(foreign)} record(s) that are not {partner}'s own rows"))
    else:
        found.append(Problem(relative, "undeclared", "an export file that is neither own rows nor shared aggregates"))
    return found
