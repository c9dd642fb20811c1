"""Delivery receipts: what a partner sent, what was accepted, what was not and why, and what to change.

A receipt names row numbers and reasons, never a value from the file: it is mailed to the partner and may be
read by people who must not see the rows. Written as JSON (for systems) and HTML (for people), atomically.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from pipelines.contracts import Contract
from pipelines.settings import REPORTS_DIR, Home

# What a partner can do about each kind of problem (keyed by the reason's field).
ADVICE = {
    "row": "Check the row's quoting and delimiter: it has a different number of fields than the header.",
    "record_id": "Give every row its own record id; send a correction as a higher revision of the same id.",
    "revision": "The revision must be a whole number.",
    "occurred_from": "Give when it happened in one of the date formats of your contract (e.g. 2026-03-02 21:30).",
    "occurred_to": "The end time must be a date, and not before the start time.",
    "reported_at": "The registration time must be a date in your contract's formats.",
    "category": "Use one of the categories in your contract (or ask the security department to add yours).",
    "coordinates": "Coordinates must be numbers inside Sweden (latitude ~55-69, longitude ~11-24, or SWEREF 99 TM).",
    "municipality": "Send only incidents in this municipality.",
    "person_id": "A personnummer must be valid (check digit); leave the column empty when it is unknown.",
}
ROWS_SHOWN_PER_REASON = 200


@dataclass
class Receipt:
    partner: str
    partner_name: str
    file_name: str
    delivery_id: str
    received_at: datetime
    contract_version: int
    status: str = "received"  # accepted | rejected | empty | duplicate
    reason: str | None = None
    encoding: str | None = None
    header: list[str] = field(default_factory=list)
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_unplaced: int = 0
    period_from: date | None = None
    period_to: date | None = None
    quarantine: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # header aliases used, gzip expanded, optional columns missing
    rows_withdrawn: int = 0  # period_snapshot contracts: earlier records of the period this file no longer holds

    @classmethod
    def start(cls, contract: Contract, file_name: str, delivery_id: str, received_at: datetime) -> "Receipt":
        return cls(contract.partner, contract.name, file_name, delivery_id, received_at, contract.version)

    def add_quarantine(self, reasons: dict[int, list[str]]) -> None:
        """Group quarantined rows by reason: each reason with its count and (the first) row numbers."""
        by_reason: dict[str, list[int]] = {}
        for row, found in reasons.items():
            for reason in found:
                by_reason.setdefault(reason, []).append(row)
        self.quarantine = [
            {
                "reason": reason,
                "rows": sorted(rows)[:ROWS_SHOWN_PER_REASON],
                "count": len(rows),
                "advice": ADVICE.get(reason.split(":", 1)[0], ""),
            }
            for reason, rows in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))
        ]

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("received_at", "period_from", "period_to"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data

    @property
    def stem(self) -> str:
        return f"{Path(self.file_name).stem}.{self.delivery_id[:12]}"


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    """One environment per process: it keeps the compiled template (compiling it took 0.01 s a receipt)."""
    return Environment(
        loader=FileSystemLoader(REPORTS_DIR), autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True, lstrip_blocks=True,
    )


def write_receipt(home: Home, receipt: Receipt) -> list[Path]:
    """out/receipts/<partner>/<file>.<hash>.json and .html, each written atomically."""
    from pipelines.publish import write_atomic

    folder = home.receipts / receipt.partner
    folder.mkdir(parents=True, exist_ok=True)
    data = receipt.to_json()
    json_path = folder / f"{receipt.stem}.json"
    html_path = folder / f"{receipt.stem}.html"
    write_atomic(json_path, json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    html = _environment().get_template("receipt.html.j2").render(receipt=data)
    write_atomic(html_path, html)
    return [json_path, html_path]
