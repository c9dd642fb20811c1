"""Partner data contracts: one YAML file per partner in schemas/partners/ (format in schemas/CONTRACTS.md).

A contract is data, not code: adding a partner whose format is one already known is adding a file.
Loading checks the contract itself, so a typo in a contract is a clear error at load time, not a wrong count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipelines.settings import PARTNER_CONTRACTS_DIR, SCHEMAS_DIR

FILE_TYPES = {"csv", "xlsx", "polisen_json"}
ENCODINGS = {"utf-8", "utf-8-sig", "windows-1252", "utf-16", "detect"}
CANONICAL_FIELDS = {
    "record_id", "revision", "occurred_from", "occurred_to", "reported_at", "category", "place_type",
    "address", "latitude", "longitude", "sweref99_n", "sweref99_e", "latlon", "area_code", "description",
    "person_id", "municipality",
}
REQUIRED_FIELDS = ("record_id", "occurred_from", "category")
TIME_FIELDS = ("occurred_from", "occurred_to", "reported_at")
NUMERIC_FIELDS = ("latitude", "longitude", "sweref99_n", "sweref99_e")
PARTNER_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class ContractError(ValueError):
    """A contract file is wrong: names the file and the problem."""


@dataclass(frozen=True)
class ColumnSpec:
    source: str | None  # the header name in the delivered file
    value: str | None = None  # a constant instead of a column
    formats: tuple[str, ...] = ()


@dataclass(frozen=True)
class Contract:
    partner: str
    name: str
    version: int
    sensitive: bool
    file_type: str
    patterns: tuple[str, ...]
    encoding: str
    delimiter: str
    decimal: str
    sheet: int | str
    timezone: str
    columns: dict[str, ColumnSpec]
    category_map: dict[str, str]
    place_type_map: dict[str, str]
    location_precision: str | None
    path: Path
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Contract-level settings for partners outside the installation's own geography (e.g. police.uk):
    expected_weekly: bool = True  # false: never listed as "missing" in the weekly report
    extent: dict[str, tuple[float, float]] = field(default_factory=dict)  # coordinate ranges; {} = Sweden
    area_codes: str = "installation"  # installation: place in the installation's areas | partner: keep given codes
    record_id_missing: str = "quarantine"  # quarantine | row_hash: derive an id from the row's content
    deliveries: str = "incremental"  # incremental | period_snapshot (see schemas/CONTRACTS.md)
    gazetteer: str | None = None  # schemas/<file>: place rows whose description names a district

    def source_columns(self) -> list[str]:
        """Header names this contract reads from a delivered file."""
        return [spec.source for spec in self.columns.values() if spec.source is not None]

    def required_source_columns(self) -> list[str]:
        return [
            self.columns[name].source
            for name in REQUIRED_FIELDS
            if self.columns[name].source is not None
        ]


def _taxonomy_codes() -> set[str]:
    return set(yaml.safe_load((SCHEMAS_DIR / "taxonomy.yaml").read_text(encoding="utf-8"))["categories"])


def _place_types() -> set[str]:
    return set(yaml.safe_load((SCHEMAS_DIR / "incident.yaml").read_text(encoding="utf-8"))["place_types"])


def parse_contract(raw: dict[str, Any], path: Path) -> Contract:
    """Check one contract's content and return it. Every problem names the file."""

    def fail(problem: str) -> ContractError:
        return ContractError(f"{path.name}: {problem}")

    if not isinstance(raw, dict):
        raise fail("not a YAML mapping")
    partner = str(raw.get("partner", ""))
    if not PARTNER_ID.match(partner):
        raise fail(f"partner id {partner!r} must be lower-case letters, digits and _")
    if path.stem != partner:
        raise fail(f"file name must be the partner id ({partner}.yaml)")
    file_spec = raw.get("file") or {}
    file_type = file_spec.get("type")
    if file_type not in FILE_TYPES:
        raise fail(f"file.type must be one of {sorted(FILE_TYPES)}, not {file_type!r}")
    encoding = str(file_spec.get("encoding", "detect")).lower()
    if encoding not in ENCODINGS:
        raise fail(f"file.encoding must be one of {sorted(ENCODINGS)}, not {encoding!r}")

    columns: dict[str, ColumnSpec] = {}
    for name, spec in (raw.get("columns") or {}).items():
        if name not in CANONICAL_FIELDS:
            raise fail(f"columns.{name} is not a canonical field ({', '.join(sorted(CANONICAL_FIELDS))})")
        if not isinstance(spec, dict) or ("from" not in spec and "value" not in spec):
            raise fail(f"columns.{name} needs 'from' (a header name) or 'value' (a constant)")
        formats = spec.get("formats") or ()
        if isinstance(formats, str):
            formats = (formats,)
        columns[name] = ColumnSpec(
            source=None if spec.get("from") is None else str(spec["from"]),
            value=None if spec.get("value") is None else str(spec["value"]),
            formats=tuple(str(f) for f in formats),
        )
    missing = [name for name in REQUIRED_FIELDS if name not in columns]
    if missing:
        raise fail(f"columns must map the required fields {missing}")

    codes = _taxonomy_codes()
    category_map = {str(k): str(v) for k, v in (raw.get("category_map") or {}).items()}
    unknown = sorted({v for v in category_map.values() if v not in codes})
    if unknown:
        raise fail(f"category_map maps to codes not in schemas/taxonomy.yaml: {unknown}")
    if columns["category"].value is not None and columns["category"].value not in codes:
        raise fail(f"columns.category.value {columns['category'].value!r} is not a taxonomy code")
    place_types = _place_types()
    place_type_map = {str(k): str(v) for k, v in (raw.get("place_type_map") or {}).items()}
    unknown = sorted({v for v in place_type_map.values() if v not in place_types})
    if unknown:
        raise fail(f"place_type_map maps to place types not in schemas/incident.yaml: {unknown}")
    precision = raw.get("location_precision")
    if precision is not None and precision not in {"point", "address", "area", "municipality"}:
        raise fail(f"location_precision {precision!r} is not point, address, area or municipality")
    aliases = {
        str(k): tuple(str(a) for a in (v if isinstance(v, list) else [v]))
        for k, v in (raw.get("aliases") or {}).items()
    }
    patterns = file_spec.get("patterns") or ["*"]
    gazetteer = raw.get("gazetteer")
    if gazetteer is not None and not (SCHEMAS_DIR / str(gazetteer)).is_file():
        raise fail(f"gazetteer {gazetteer!r} is not a file in schemas/")
    extent: dict[str, tuple[float, float]] = {}
    for name, bounds in (raw.get("extent") or {}).items():
        if name not in NUMERIC_FIELDS or not isinstance(bounds, list) or len(bounds) != 2:
            raise fail(f"extent.{name} must be one of {list(NUMERIC_FIELDS)} with [low, high]")
        extent[name] = (float(bounds[0]), float(bounds[1]))
    # Settings with a fixed set of values: (default, other allowed values). See schemas/CONTRACTS.md.
    choices = {
        "area_codes": ("installation", {"partner"}),
        "record_id_missing": ("quarantine", {"row_hash"}),
        "deliveries": ("incremental", {"period_snapshot"}),
    }
    chosen = {}
    for key, (default, others) in choices.items():
        value = str(raw.get(key, default))
        if value != default and value not in others:
            raise fail(f"{key} must be one of {sorted({default, *others})}, not {value!r}")
        chosen[key] = value
    return Contract(
        partner=partner,
        name=str(raw.get("name", partner)),
        version=int(raw.get("version", 1)),
        sensitive=bool(raw.get("sensitive", False)),
        file_type=file_type,
        patterns=tuple(patterns if isinstance(patterns, list) else [patterns]),
        encoding=encoding,
        delimiter=str(file_spec.get("delimiter", "detect")),
        decimal=str(file_spec.get("decimal", ".")),
        sheet=file_spec.get("sheet", 0),
        timezone=str(raw.get("timezone", "Europe/Stockholm")),
        columns=columns,
        category_map=category_map,
        place_type_map=place_type_map,
        location_precision=precision,
        path=path,
        aliases=aliases,
        expected_weekly=bool(raw.get("expected_weekly", True)),
        gazetteer=gazetteer,
        extent=extent,
        **chosen,
    )


def load_contract_file(path: Path) -> Contract:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContractError(f"{path.name}: not valid YAML: {exc}") from exc
    return parse_contract(raw, path)


@lru_cache(maxsize=8)
def _load_all(folder: Path) -> dict[str, Contract]:
    contracts = {}
    for path in sorted(folder.glob("*.yaml")):
        contract = load_contract_file(path)
        contracts[contract.partner] = contract
    return contracts


def load_contracts(folder: Path = PARTNER_CONTRACTS_DIR) -> dict[str, Contract]:
    """Every partner contract, by partner id."""
    return _load_all(folder)


def contract_for(partner: str, folder: Path = PARTNER_CONTRACTS_DIR) -> Contract:
    contracts = load_contracts(folder)
    if partner not in contracts:
        known = ", ".join(sorted(contracts)) or "none"
        raise ContractError(f"no contract for partner {partner!r} in {folder} (known: {known})")
    return contracts[partner]
