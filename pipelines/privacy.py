"""One place knows privacy: keys, pseudonyms, personnummer, free-text scrubbing, small numbers, CSV cells.

Every rule here comes from PRIVACY.md (the team's privacy rules, beside the repository in ``../shared``); each
function names the section it implements. Thresholds are named constants that carry their reason, so a reviewer
checks one file and a test can fail when a number changes (STYLE.md, practice 5).

Nothing in this module reads files, logs values or talks to Airflow: the caller fetches the key (an Airflow
secret or the ``EST_PSEUDONYM_KEY`` environment variable) and passes plain values in.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import os
import re
import secrets
import sys
import unicodedata
from datetime import date
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import settings
from pipelines.readers import one_array

# --------------------------------------------------------------------------------------------------------------
# Keys (PRIVACY.md, "Keys and pseudonyms")
# --------------------------------------------------------------------------------------------------------------

# "Keys are at least 32 random bytes": 256 bits, the full strength of HMAC-SHA-256. The key is the only secret:
# whoever guesses it can hash all ~37 million possible personnummer in seconds and reverse every pseudonym.
MIN_KEY_BYTES = 32

# HKDF (RFC 5869) "info" prefix: binds every derived key to this project and this use, so the same master key
# used by some other system can never produce our domain keys. Bump the version to rotate every domain at once.
HKDF_INFO_PREFIX = b"est-pipeline/pseudonym/v1/"

# Domain labels: "analysis", "record", "export:housing". Lower case only, because "Analysis" and "analysis"
# would silently derive two different keys and the pseudonyms would no longer join.
DOMAIN_LABEL = re.compile(r"[a-z][a-z0-9_]*(?::[a-z0-9][a-z0-9_\-]*)?")

_HEX = re.compile(r"[0-9a-fA-F]+")


class PseudonymKeyError(RuntimeError):
    """The pseudonym key is missing or unusable. No key, no run: there is no fallback (PRIVACY.md).

    The message names the variable and what is wrong with it; it never contains the key or any part of it.
    """


def load_key(env_var: str = settings.KEY_ENV_VAR, value: str | None = None) -> bytes:
    """The master pseudonym key as bytes, from ``value`` or else the environment variable ``env_var``.

    The key is hexadecimal text of at least ``MIN_KEY_BYTES`` bytes (64 hex characters); surrounding whitespace
    (a trailing newline from a secrets file) is ignored. Missing, not hexadecimal or too short raises
    :class:`PseudonymKeyError`: "no key, no run", no default and no fallback (PRIVACY.md, "Keys and
    pseudonyms").
    In Airflow, read the secret inside the task (a Variable or Connection whose name contains "secret", so
    Airflow masks it) and pass it as ``value``; ``env_var`` is then only the name used in messages.
    """
    where = f"the pseudonym key {env_var!r}"
    if value is None:
        value = os.environ.get(env_var)
    if value is not None and "," in value:
        # A key chain after rotation (pipelines/keys.py): the current key first, then the ones it replaced.
        parts = [load_key(f"{env_var} (key {k + 1} of the chain)", part) for k, part in enumerate(value.split(","))]
        return MasterKey(parts[0], previous=tuple(parts[1:]))
    if value is None or not value.strip():
        raise PseudonymKeyError(
            f"{where} is not set: no key, no run (PRIVACY.md, 'Keys and pseudonyms'). Set it to "
            f"{2 * MIN_KEY_BYTES} or more hexadecimal characters from the secret store; there is no fallback."
        )
    text = value.strip()
    if not _HEX.fullmatch(text):
        raise PseudonymKeyError(
            f"{where} is not hexadecimal text: only 0-9 and a-f may appear (no spaces, no '0x', not base64)."
        )
    if len(text) % 2:
        raise PseudonymKeyError(f"{where} has an odd number of hexadecimal characters ({len(text)}).")
    if len(text) < 2 * MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"{where} is too short: {len(text) // 2} bytes, at least {MIN_KEY_BYTES} random bytes "
            f"({2 * MIN_KEY_BYTES} hexadecimal characters) are required."
        )
    return bytes.fromhex(text)


class MasterKey(bytes):
    """The current master key, and (after ``est keys rotate``) the keys it replaced, newest first.

    Written in the secret as comma-separated hex, current first: ``<new>,<old>``. Pseudonyms are then
    HMAC(current, HMAC(previous, ... HMAC(oldest, value))): the chain that ``pipelines.keys.rotate`` applied to
    the rows it re-keyed, so a new delivery of a retained record lands on the same pseudonym. See
    pipelines/keys.py for why rotation is a chain."""

    previous: tuple[bytes, ...]

    def __new__(cls, key: bytes, previous: tuple[bytes, ...] = ()):
        obj = super().__new__(cls, key)
        obj.previous = tuple(bytes(k) for k in previous)
        return obj

    def __repr__(self) -> str:
        return f"MasterKey(<{len(self)} bytes>, previous=<{len(self.previous)} keys>)"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a master key is never pickled or serialised")


def new_random_key_hex() -> str:
    """A fresh random master key as hex text (32 bytes). For the demo and first setup only: a real key lives in
    the secret store, never in a file in the repository (PRIVACY.md, "Keys and pseudonyms")."""
    return secrets.token_hex(MIN_KEY_BYTES)


def hkdf_extract(salt: bytes | None, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869 section 2.2) with SHA-256. An absent salt is 32 zero bytes, as the RFC says."""
    return hmac.digest(salt or bytes(hashlib.sha256().digest_size), ikm, "sha256")


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869 section 2.3) with SHA-256."""
    if not 0 < length <= 255 * 32:
        raise ValueError("HKDF-SHA-256 can produce 1 to 8160 bytes")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
        counter += 1
    return out[:length]


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """HKDF with SHA-256 (RFC 5869): extract then expand. Tested against the RFC's appendix A vectors."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


class DomainKey:
    """A key for one pseudonym domain ("analysis", "record", "export:<partner>").

    One key per domain, so pseudonyms of one domain cannot be joined with another's; ``key_id`` is stored next
    to each pseudonym so keys can be rotated (PRIVACY.md, "Keys and pseudonyms"). The key is never shown:
    ``repr``/``str`` give the domain and key id only, and the object refuses to be pickled, so it cannot end up
    in XCom, a log line or a file by accident; derive it inside the task that uses it.
    """

    __slots__ = ("_key", "_text", "domain", "key_id", "_inner", "_outer")

    def __init__(self, key: bytes, domain: str):
        if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"a domain key must be at least {MIN_KEY_BYTES} bytes")
        # The HMAC key is SHA-256 of a text form of the domain's HKDF output. HMAC hashes a key longer than its
        # 64-byte block first (RFC 2104, section 2), so HMAC(text, m) == HMAC(SHA-256(text), m): Python's hmac
        # keyed with ``self.key`` and polars-hash keyed with the text (it takes its key as text, and computes
        # about five times faster, see _keyed) give the same pseudonyms, bit for bit. Still 256 secret bits.
        text = HMAC_KEY_TEXT_PREFIX + bytes(key).hex()
        key = hashlib.sha256(text.encode("ascii")).digest()
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "domain", domain)
        # Not secret: 32 bits of an HMAC under the key reveal nothing about the key, but tell keys apart.
        object.__setattr__(self, "key_id", hmac.digest(key, b"key-id", "sha256").hex()[:8])
        # HMAC's inner and outer hash states after the padded key (RFC 2104), computed once: copying them per
        # value is about 2.5 times faster than hmac.digest() and gives the same result (tested).
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        object.__setattr__(self, "_inner", hashlib.sha256(bytes(b ^ 0x36 for b in padded)))
        object.__setattr__(self, "_outer", hashlib.sha256(bytes(b ^ 0x5C for b in padded)))

    @property
    def key(self) -> bytes:
        """The HMAC-SHA-256 key: ``hmac.new(key.key, value, "sha256")`` is this domain's pseudonym of value."""
        return self._key

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a DomainKey is immutable")

    def __repr__(self) -> str:
        return f"DomainKey(domain={self.domain!r}, key_id={self.key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DomainKey):
            return NotImplemented
        return self.domain == other.domain and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash((self.domain, self.key_id))

    def __reduce__(self):
        raise TypeError(
            "a DomainKey is never pickled or serialised (it would land in XCom or a file): "
            "pass the secret's name and call derive_key() inside the task"
        )

    def __copy__(self) -> "DomainKey":
        return self

    def __deepcopy__(self, memo: dict) -> "DomainKey":
        return self

    def hmac_hex(self, message: bytes) -> str:
        """HMAC-SHA-256(key, message) as 64 hex characters."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def derive_key(master: bytes, domain: str) -> DomainKey:
    """The key of one pseudonym domain: HKDF-SHA-256(master, info = prefix + domain), 32 bytes.

    Domains: "analysis" (persons, inside the analysis layer), "record" (partners' record and case ids),
    "export:<partner>" (one per partner export). Different domains give unrelated keys, so a partner holding its
    export cannot join it to the analysis data or to another partner's export (PRIVACY.md, "Keys and
    pseudonyms": one key per domain, derived with HKDF and a domain label).
    """
    if not isinstance(master, (bytes, bytearray)):
        raise TypeError("the master key must be bytes (use load_key())")
    if len(master) < MIN_KEY_BYTES:
        raise PseudonymKeyError(f"the master key is {len(master)} bytes; at least {MIN_KEY_BYTES} are required")
    if not isinstance(domain, str) or not DOMAIN_LABEL.fullmatch(domain):
        raise ValueError(
            f"domain label {domain!r} is not valid: lower case, like 'analysis', 'record' or 'export:housing'"
        )
    okm = hkdf_sha256(bytes(master), salt=None, info=HKDF_INFO_PREFIX + domain.encode("utf-8"), length=32)
    previous = getattr(master, "previous", ())
    if previous:
        chain = tuple(derive_key(bytes(k), domain) for k in reversed(previous))  # oldest first
        return ChainedDomainKey(okm, domain, chain)
    return DomainKey(okm, domain)


class ChainedDomainKey(DomainKey):
    """A domain key after rotation: HMAC(current, HMAC(previous, ... HMAC(oldest, value))). Its key_id is the
    current key's, so the rows it made are told apart from those the old chain made (pipelines/keys.py)."""

    __slots__ = ("chain",)

    def __init__(self, key: bytes, domain: str, chain: tuple[DomainKey, ...]):
        super().__init__(key, domain)
        object.__setattr__(self, "chain", tuple(chain))

    def hmac_hex(self, message: bytes) -> str:
        for link in self.chain:
            message = link.hmac_hex(message).encode("ascii")
        return super().hmac_hex(message)


# --------------------------------------------------------------------------------------------------------------
# Pseudonyms (PRIVACY.md, "Keys and pseudonyms")
# --------------------------------------------------------------------------------------------------------------

# Where a domain key's HMAC key comes from (DomainKey): SHA-256 of this prefix and the HKDF output in hex.
HMAC_KEY_TEXT_PREFIX = "est-pseudonym-hmac-key:v1:"
# From this many distinct values on, polars-hash computes the HMACs (its start-up costs a few milliseconds).
POLARS_HMAC_MIN_VALUES = 5_000
# How many values _pseudonymise_arrow looks at to judge whether a column is mostly distinct.
DISTINCT_SAMPLE = 20_000

# Full HMAC-SHA-256 output, 64 hex characters. Truncating to 32 would still be collision-free in practice, but
# saves little (32 bytes a value) and would make every reviewer check that "HMAC-SHA-256" still holds.
PSEUDONYM_HEX_CHARS = 64


def _require_text(uniques: Iterable[Any]) -> None:
    for value in uniques:
        if not isinstance(value, str):
            raise TypeError(
                f"identifiers must be text, found {type(value).__name__}: read identifier columns as text so a "
                "leading zero survives (PRIVACY.md, 'Identifiers')"
            )


def _keyed(uniques: Iterable[str], key: DomainKey) -> list[str]:
    uniques = uniques if isinstance(uniques, list) else list(uniques)
    if len(uniques) >= POLARS_HMAC_MIN_VALUES:
        import polars as pl

        return _hmac_polars(pl.Series("v", uniques, dtype=pl.Utf8), key).to_list()
    return [key.hmac_hex(value.encode("utf-8")) for value in uniques]


def _hmac_polars(values, key: DomainKey):
    """The same HMACs as DomainKey.hmac_hex for a polars Series of text, computed by polars-hash in Rust on both
    cores (measured here: about 5 million values a second against about 1 million for the Python loop); a
    rotated key's chain link by link. tests/test_privacy.py checks both give the same pseudonyms."""
    import polars as pl
    import polars_hash  # noqa: F401  (registers the .chash namespace)

    column = values.alias("v").to_frame()
    for link in (*getattr(key, "chain", ()), key):
        column = column.select(pl.col("v").chash.hmac_sha256(key=link._text))
    return column.get_column("v")


def pseudonymise(values, key: DomainKey, keep_arrow: bool = False):
    """Keyed pseudonyms: HMAC-SHA-256(domain key, UTF-8 of the value) as 64 lower-case hex characters.

    Never a plain or salted hash: every valid personnummer can be hashed in seconds, so only a secret key makes
    the pseudonym one-way (PRIVACY.md, "Keys and pseudonyms"). Values are keyed exactly as given: canonicalise
    first (``canonical_personnummer`` for personnummer) so that one person gets one pseudonym. Values must be
    text; numbers are refused because a number has already lost its leading zeros (PRIVACY.md, "Identifiers").
    Nulls stay null. Store ``key.key_id`` beside the pseudonyms.

    Accepts a pandas Series (returns an object Series with the same index and name; with ``keep_arrow`` an
    Arrow-backed Series gives an Arrow-backed one, so 64-character pseudonyms never become Python strings on
    their way to the loader), a pyarrow Array or ChunkedArray (returns a pyarrow string Array), or a numpy
    array / list (returns a numpy object array).

    Works in bulk: the HMAC is computed once per distinct value (pandas factorize / pyarrow dictionary
    encoding) and mapped back; from POLARS_HMAC_MIN_VALUES distinct values on by polars-hash (about 2.5 million
    rows/s here for 300,000 distinct ids, factorizing included), below that by Python's hashlib. Arrow values
    that are mostly distinct (record ids) are keyed one by one by polars-hash, without the dictionary.
    """
    if not isinstance(key, DomainKey):
        raise TypeError("key must be a DomainKey (derive_key(load_key(), domain))")
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return _pseudonymise_arrow(values, key)
    if isinstance(values, pd.Series) and _arrow_backed(values):
        keyed = _pseudonymise_arrow(pa.array(values.array), key)
        if keep_arrow:
            return pd.Series(pd.arrays.ArrowExtensionArray(keyed), index=values.index, name=values.name)
        return pd.Series(keyed.to_numpy(zero_copy_only=False), index=values.index, name=values.name, dtype=object)

    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    if not (pd.api.types.is_string_dtype(series.dtype) or series.dtype == object):
        if not series.isna().all():
            raise TypeError(
                f"identifiers must be text, found dtype {series.dtype}: read identifier columns as text so a "
                "leading zero survives (PRIVACY.md, 'Identifiers')"
            )
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    uniques = uniques.tolist()
    _require_text(uniques)
    # The last slot is None, so the NA code -1 picks it.
    lookup = np.array(_keyed(uniques, key) + [None], dtype=object)
    out = lookup[codes]
    if isinstance(values, pd.Series):
        return pd.Series(out, index=values.index, name=values.name, dtype=object)
    return out


def _pseudonymise_arrow(values, key: DomainKey) -> pa.Array:
    array = one_array(values)
    if array.type == pa.null():
        return pa.nulls(len(array), pa.string())
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
            or pa.types.is_string_view(array.type)):
        raise TypeError(
            f"identifiers must be text, found arrow type {array.type}: read identifier columns as text "
            "(PRIVACY.md, 'Identifiers')"
        )
    if len(array) >= POLARS_HMAC_MIN_VALUES:
        import polars as pl

        sample = array.slice(0, DISTINCT_SAMPLE)
        if pc.count_distinct(sample, mode="all").as_py() * 4 >= len(sample) * 3:
            # Mostly distinct values (record ids): keying every value costs what keying the distinct ones
            # would, so the dictionary encoding (a hash table over the column) and the take back are skipped.
            # Judged on a sample: either way gives the same pseudonyms, and counting a whole 300,000-value
            # column's distinct values cost about 0.01 s a file here.
            return _hmac_polars(pl.Series("v", array), key).to_arrow().cast(pa.string())
    encoded = pc.dictionary_encode(array.cast(pa.string()))
    if len(encoded.dictionary) >= POLARS_HMAC_MIN_VALUES:
        import polars as pl

        # Arrow in, Arrow out: the distinct values never become Python strings.
        digests = _hmac_polars(pl.Series("v", encoded.dictionary), key).to_arrow().cast(pa.string())
    else:
        digests = pa.array(_keyed(encoded.dictionary.to_pylist(), key), type=pa.string())
    return pc.take(digests, encoded.indices)


def pseudonymise_personnummer(values: pd.Series, key: DomainKey, reference_date: date | None = None):
    """Canonicalise personnummer then key them: (pseudonyms, status). Invalid ones get no pseudonym and are
    flagged in ``status`` (PRIVACY.md, "Identifiers": flagged, never passed on in clear)."""
    canonical, status = canonical_personnummer(values, reference_date=reference_date)
    return pseudonymise(canonical, key), status


# --------------------------------------------------------------------------------------------------------------
# Personnummer and samordningsnummer (PRIVACY.md, "Identifiers")
# --------------------------------------------------------------------------------------------------------------

STATUS_VALID = "valid"
STATUS_INVALID_CHECKSUM = "invalid_checksum"
STATUS_INVALID_DATE = "invalid_date"
STATUS_NOT_A_PERSONNUMMER = "not_a_personnummer"
STATUS_MISSING = "missing"
PERSONNUMMER_STATUSES = (
    STATUS_VALID, STATUS_INVALID_CHECKSUM, STATUS_INVALID_DATE, STATUS_NOT_A_PERSONNUMMER, STATUS_MISSING,
)

# A samordningsnummer (coordination number) is a personnummer whose day of birth has 60 added (Skatteverket).
COORDINATION_DAY_OFFSET = 60

# The "+" separator marks a person who is 100 or older: from the year they turn 100 (Skatteverket, and
# PRIVACY.md, "Identifiers"). Without it, a 10-digit number belongs to someone younger than 100.
CENTENARIAN_YEARS = 100

# Dash-like characters people and systems put between date and serial: hyphen, non-breaking hyphen, figure
# dash, en dash, em dash, horizontal bar, minus sign, small and full-width hyphen-minus.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_PLUSES = "\uff0b\ufe62"
_SPACES = "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"


@functools.cache
def _digit_table() -> dict[int, str]:
    """Every Unicode decimal digit (category Nd: full-width, Arabic-Indic, Devanagari, ...) -> ASCII digit.

    Found by ``re``'s ``\\d`` (for str patterns exactly the characters with a decimal value, as
    ``unicodedata.decimal``) over all code points at once, rather than asking unicodedata 1.1 million times."""
    every = "".join(map(chr, range(128, sys.maxunicode + 1)))
    table = {}
    for char in re.findall(r"\d", every):
        value = unicodedata.decimal(char, None)
        if value is not None:
            table[ord(char)] = str(value)
    return table


@functools.cache
def _fold_table() -> dict[int, str]:
    """str.translate table: Unicode digits to ASCII, dashes to "-", pluses to "+", spaces to " ", invisible
    characters out."""
    table = dict(_digit_table())
    table.update({ord(c): "-" for c in _DASHES})
    table.update({ord(c): "+" for c in _PLUSES})
    table.update({ord(c): " " for c in _SPACES})
    table.update({ord(c): "" for c in _INVISIBLE})
    return table


def fold_digits(text: str) -> str:
    """Fold Unicode decimal digits to ASCII and dash, plus and space variants to their ASCII forms."""
    return text.translate(_fold_table())


_PERSONNUMMER = re.compile(
    r"(?P<century>[0-9]{2})?(?P<yy>[0-9]{2})(?P<mm>[0-9]{2})(?P<dd>[0-9]{2})"
    r" *(?P<sep>[-+]?) *(?P<serial>[0-9]{3})(?P<check>[0-9])"
)
# Luhn doubles every other digit from the left of YYMMDDNNN and adds the digits of the product: 7 -> 14 -> 5.
_LUHN_DOUBLED = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.uint8)
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _luhn_matrix(digits: np.ndarray) -> np.ndarray:
    """Luhn check of each row of an (n, 10) array of digits: weights 2,1,2,... over the first 9 digits."""
    doubled = _LUHN_DOUBLED[digits[:, 0:9:2]].sum(axis=1, dtype=np.int32)
    total = doubled + digits[:, 1:9:2].sum(axis=1, dtype=np.int32)
    return (10 - total % 10) % 10 == digits[:, 9]


def _digit_rows(strings: Iterable[str], width: int) -> np.ndarray:
    joined = "".join(strings).encode("ascii")
    return np.frombuffer(joined, dtype=np.uint8).reshape(-1, width) - np.uint8(ord("0"))


def _arrow_digit_rows(strings: pa.Array, width: int) -> np.ndarray:
    """(n, width) digits of an arrow string array whose values are all ``width`` ASCII digits, without Python
    objects: read straight from the array's data buffer."""
    strings = strings.cast(pa.string())
    if len(strings) == 0:
        return np.zeros((0, width), dtype=np.uint8)
    start = strings.offset
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int32)[start: start + len(strings) + 1]
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
    return data.reshape(-1, width) - np.uint8(ord("0"))


# The characters the fold table maps to something other than a digit, as RE2 classes (pyarrow) per target.
_RE2_FOLDS = tuple(
    ("[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]", target)
    for chars, target in ((_DASHES, "-"), (_PLUSES, "+"), (_SPACES, " "), (_INVISIBLE, ""))
)


def _arrow_text(values: pd.Series) -> pa.Array:
    """``values`` as an arrow string array with nulls, Unicode digits, dashes and spaces folded to ASCII.

    Only the (rare) non-ASCII values are looked at: dashes, pluses, spaces and invisible characters are
    replaced by pyarrow (RE2), and only values still not ASCII after that (Unicode digits, other scripts) go
    through Python's str.translate. The result is the same as str.translate with the fold table on every value."""
    array = _arrow_strings(values.astype("str")).cast(pa.string())
    ascii_ok = pc.fill_null(pc.string_is_ascii(array), True).to_numpy(zero_copy_only=False)
    if not ascii_ok.all():
        positions = np.flatnonzero(~ascii_ok)
        odd = pc.take(array, pa.array(positions))
        for pattern, target in _RE2_FOLDS:
            # Dashes first (by far the most common); each later pass only over the values still not ASCII.
            still = ~pc.string_is_ascii(odd).to_numpy(zero_copy_only=False)
            if not still.any():
                break
            if still.all():
                odd = pc.replace_substring_regex(odd, pattern, target)
            else:
                rest = pc.replace_substring_regex(pc.filter(odd, pa.array(still)), pattern, target)
                odd = pc.replace_with_mask(odd, pa.array(still), rest)
        still = ~pc.string_is_ascii(odd).to_numpy(zero_copy_only=False)
        if still.any():
            rest = np.flatnonzero(still)
            folded = [v.translate(_fold_table()) for v in pc.take(odd, pa.array(rest)).to_pylist()]
            odd = pc.replace_with_mask(odd, pa.array(still), pa.array(folded, type=pa.string()))
        array = pc.replace_with_mask(array, pa.array(~ascii_ok), odd)
    return array


def luhn_ok(digits10: str) -> bool:
    """Whether a 10-digit personnummer (YYMMDDNNNC) has the right check digit C: Luhn over the 9 digits before
    it (PRIVACY.md, "Identifiers"). Unicode digits are folded; anything but 10 digits is a ValueError."""
    folded = fold_digits(digits10)
    if len(folded) != 10 or not folded.isascii() or not folded.isdigit():
        raise ValueError("luhn_ok needs exactly 10 digits (YYMMDDNNNC)")
    return bool(_luhn_matrix(_digit_rows([folded], 10))[0])


def canonical_personnummer(
    values: pd.Series, reference_date: date | None = None
) -> tuple[pd.Series, pd.Series]:
    """Canonical 12-digit personnummer (YYYYMMDDNNNC, ASCII) and a status for each value, vectorised.

    So that one person gets one pseudonym whatever the format (PRIVACY.md, "Identifiers"), all of these give
    198507099805: ``850709-9805``, ``8507099805``, ``198507099805``, ``850709 9805``, ``850709–9805`` (any
    dash), and the same with full-width or other Unicode digits. Samordningsnummer (day + 60,
    ``850769-...``) are accepted and keep their day as given, since that is the identifier.

    Century of a 10-digit form, relative to ``reference_date`` (default: today):
    - with "-" or no separator, the century that makes the person younger than 100 on ``reference_date``
      (born on or before that date, less than 100 years earlier);
    - with "+", the latest year at least 100 years before the reference year: Skatteverket changes the "-" to a
      "+" from the *year* the person turns 100, so in March 2025 "250701+..." is someone born in July 1925.
    A 12-digit form keeps its century (18, 19 or 20) and must not lie after ``reference_date``.

    Status: "valid", "invalid_checksum" (Luhn over the 9 digits before the check digit fails), "invalid_date"
    (no such day, or a birth after the reference date), "not_a_personnummer", "missing". Only valid numbers get
    a canonical value; the others are None and are never passed on in clear.

    Values must be text (an integer column has lost the leading zero of everyone born 2000-2009).
    Vectorised: the usual shapes are read straight from the bytes with numpy, the rest with pyarrow's RE2
    (tests/test_privacy.py checks both readings agree); 150,000 numbers in about 0.08 s (shared 2-core container).
    """
    if not isinstance(values, pd.Series):
        values = pd.Series(values, dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty") and not values.isna().all():
        raise TypeError(
            f"personnummer must be read as text, found {pd.api.types.infer_dtype(values, skipna=True)} values: "
            "a number has lost its leading zero (PRIVACY.md, 'Identifiers')"
        )
    ref = reference_date or date.today()
    n = len(values)
    # pyarrow's compute kernels (RE2) do the parsing: about 8 times faster than pandas' Python-regex extract.
    text = _arrow_text(values)
    text = pc.utf8_trim_whitespace(text)
    missing = pc.fill_null(pc.equal(text, ""), True).to_numpy(zero_copy_only=False)

    # The usual shapes (YYMMDD-NNNC, YYMMDDNNNC, YYYYMMDDNNNC, ...) are read straight from the bytes; the
    # regular expression parses the rest. Either way: per row, the 10 digits YYMMDDNNNC, the century if given
    # and whether the separator was "+".
    matched, ten, century, has_century, plus = _shaped_personnummer(text, missing)
    rest = ~missing & ~matched
    if rest.any():
        positions = np.flatnonzero(rest)
        parsed = pc.extract_regex(text.take(pa.array(positions)), f"^{_PERSONNUMMER.pattern}$")
        hit = parsed.is_valid().to_numpy(zero_copy_only=False)
        if hit.any():
            rows = positions[hit]
            ex = parsed.filter(pa.array(hit))

            def field(name: str) -> pa.Array:
                return ex.field(name)

            matched[rows] = True
            has_century[rows] = pc.not_equal(field("century"), "").to_numpy(zero_copy_only=False)
            century_text = field("century")
            century[rows] = pc.cast(pc.if_else(pc.equal(century_text, ""), "0", century_text),
                                    pa.int64()).to_numpy()
            plus[rows] = pc.equal(field("sep"), "+").to_numpy(zero_copy_only=False)
            ten[rows] = _arrow_digit_rows(pc.binary_join_element_wise(
                field("yy"), field("mm"), field("dd"), field("serial"), field("check"), ""
            ), 10)

    codes = np.full(n, 3, dtype=np.int8)  # index into PERSONNUMMER_STATUSES: not_a_personnummer
    codes[missing] = 4
    canonical = np.full(n, None, dtype=object)

    if matched.any():
        every = bool(matched.all())
        rows = np.flatnonzero(matched)
        if not every:
            ten, has_century, century, plus = ten[rows], has_century[rows], century[rows], plus[rows]

        def pair(k: int) -> np.ndarray:
            return ten[:, k].astype(np.int64) * 10 + ten[:, k + 1]

        yy, mm, dd = pair(0), pair(2), pair(4)
        coordination = dd > COORDINATION_DAY_OFFSET
        day = np.where(coordination, dd - COORDINATION_DAY_OFFSET, dd)
        month_day = mm * 100 + day
        ref_month_day = ref.month * 100 + ref.day

        # Under 100: the latest year <= the reference year ending in yy; a day later in the year than the
        # reference date would be an unborn person, so it is a century earlier.
        year_young = ref.year - (ref.year - yy) % 100
        unborn = (year_young == ref.year) & (month_day > ref_month_day)
        year_young = np.where(unborn, year_young - 100, year_young)
        # "+": the latest year ending in yy that is at least 100 years before the reference year.
        old = ref.year - CENTENARIAN_YEARS
        year_old = old - (old - yy) % 100
        year = np.where(has_century, century * 100 + yy, np.where(plus, year_old, year_young))

        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        month_ok = (mm >= 1) & (mm <= 12)
        max_day = _DAYS_IN_MONTH[np.clip(mm, 1, 12) - 1] + ((mm == 2) & leap)
        day_ok = (day >= 1) & (day <= max_day)
        not_future = (year * 10000 + month_day) <= (ref.year * 10000 + ref_month_day)
        century_ok = ~has_century | np.isin(century, (18, 19, 20))
        date_ok = month_ok & day_ok & not_future & century_ok
        luhn = _luhn_matrix(ten)

        sub_codes = np.where(~date_ok, 2, np.where(~luhn, 1, 0)).astype(np.int8)
        codes[rows] = sub_codes
        valid = sub_codes == 0
        chosen = np.flatnonzero(valid)
        if len(chosen) and ((year[chosen] < 1000) | (year[chosen] > 9999)).any():
            # A reference date in the first millennium: the year as text, as the digits' own width says.
            full = pc.binary_join_element_wise(
                pc.cast(pa.array(year[chosen]), pa.string()),
                pa.array(["".join(map(str, d)) for d in ten[chosen, 2:]], pa.string()), "",
            )
            canonical[rows[chosen]] = full.to_numpy(zero_copy_only=False)
        elif len(chosen):
            # A 4-digit year (1800..2099 for the usual reference dates): YYYY + MMDDNNNC, 12 ASCII bytes each.
            twelve = np.empty((len(chosen), 12), dtype=np.uint8)
            years = year[chosen]
            for k, scale in enumerate((1000, 100, 10, 1)):
                twelve[:, k] = (years // scale) % 10
            twelve[:, 4:] = ten[chosen, 2:]
            twelve += np.uint8(ord("0"))
            strings = pa.Array.from_buffers(
                pa.string(), len(chosen),
                [None, pa.py_buffer(np.arange(0, 12 * len(chosen) + 1, 12, dtype=np.int32)),
                 pa.py_buffer(twelve.tobytes())],
            )
            canonical[rows[chosen]] = strings.to_numpy(zero_copy_only=False)

    status = np.array(PERSONNUMMER_STATUSES, dtype=object)[codes]
    return (
        pd.Series(canonical, index=values.index, name=values.name, dtype=object),
        pd.Series(status, index=values.index, name="status", dtype=object),
    )


# Fixed shapes read from the bytes: total length -> (position of the separator or None, century given).
_PNR_SHAPES = {10: (None, False), 11: (6, False), 12: (None, True), 13: (8, True)}


def _shaped_personnummer(
    text: pa.Array, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(matched, (n, 10) digits YYMMDDNNNC, century, has_century, plus) for the values of a fixed shape:
    10 or 12 ASCII digits, or 6 or 8 digits, one "-", "+" or " " and 4 digits. The regular expression reads
    each of these exactly so (an optional century only fits a 12- or 13-character value; " *[-+]? *" with a
    single character between the digits is that character as separator, or a space and no separator)."""
    n = len(text)
    matched = np.zeros(n, dtype=bool)
    ten = np.zeros((n, 10), dtype=np.uint8)
    century = np.zeros(n, dtype=np.int64)
    has_century = np.zeros(n, dtype=bool)
    plus = np.zeros(n, dtype=bool)
    lengths = pc.fill_null(pc.binary_length(text), 0).to_numpy(zero_copy_only=False)
    for width, (separator, with_century) in _PNR_SHAPES.items():
        candidates = (lengths == width) & ~missing
        count = int(candidates.sum())
        if not count:
            continue
        rows = np.flatnonzero(candidates)
        subset = text if count == n else text.take(pa.array(rows))
        buffers = subset.buffers()
        start = int(np.frombuffer(buffers[1], dtype=np.int32)[subset.offset])
        matrix = np.frombuffer(buffers[2], dtype=np.uint8)[start: start + count * width].reshape(count, width)
        digit_columns = [k for k in range(width) if k != separator]
        digits = matrix[:, digit_columns] - np.uint8(ord("0"))  # a non-digit wraps to > 9
        ok = (digits <= 9).all(axis=1)
        if separator is not None:
            mark = matrix[:, separator]
            ok &= (mark == ord("-")) | (mark == ord("+")) | (mark == ord(" "))
            plus[rows[ok]] = mark[ok] == ord("+")
        good = rows[ok]
        matched[good] = True
        if with_century:
            has_century[good] = True
            century[good] = digits[ok, 0].astype(np.int64) * 10 + digits[ok, 1]
            ten[good] = digits[ok, 2:]
        else:
            ten[good] = digits[ok]
    return matched, ten, century, has_century, plus


# --------------------------------------------------------------------------------------------------------------
# Free text (PRIVACY.md, "Free text")
# --------------------------------------------------------------------------------------------------------------

TOKEN_PERSONNUMMER = "[personnummer]"
TOKEN_PHONE = "[telefon]"
TOKEN_EMAIL = "[e-post]"
TOKEN_PLATE = "[regnr]"
TOKEN_ADDRESS = "[adress]"

_DASH_CLASS = "\\-" + _DASHES
_PLUS_CLASS = "+" + _PLUSES
_HSPACE = " \u00a0\u202f\u2009"

_EMAIL_RE = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")

# Personnummer-shaped runs, any digits (Python's \d matches every Unicode decimal digit): YYMMDD or YYYYMMDD, an
# optional dash, plus or space, then 4 digits; not inside a longer run of digits.
_PNR_SEPARATOR = rf"(?:[{_HSPACE}]?[{_DASH_CLASS}{_PLUS_CLASS}][{_HSPACE}]?|[{_HSPACE}])"
_PNR_TEXT_RE = re.compile(rf"(?<!\d)(?:\d{{2}})?\d{{6}}{_PNR_SEPARATOR}?\d{{4}}(?!\d)")

# Swedish phone numbers. International: +46 / 0046, optional (0), then 7 to 10 digits with single spaces or
# dashes. National: 0 + area code (1 to 3 more digits, 07x for mobiles), an optional separator, then 6 to 8
# digits separated by single spaces only, so dates such as 07-06-2025 are not taken for numbers.
_SP = f"[{_HSPACE}]"
_PHONE_RE = re.compile(
    rf"(?<![\w+])(?:\+|00){_SP}?46{_SP}?(?:\(0\){_SP}?)?[1-9](?:[{_HSPACE}{_DASH_CLASS}]?\d){{6,9}}(?!\d)"
    rf"|(?<![\w+])0[1-9]\d{{0,3}}(?:{_SP}?[{_DASH_CLASS}/]{_SP}?|{_SP})?\d(?:{_SP}?\d){{5,7}}(?!\d)"
)

# Car plates: ABC 123 and the newer ABC 12A (capitals, optional space or dash), or glued lower case abc123.
# Three capitals and two digits then a § (SOL 14§) or a 4-digit year (BRÅ 2023) are not plates.
_PLATE_RE = re.compile(
    r"(?<![\w\-])(?:[A-Z]{3}[ \u00a0\-]?\d{2}[0-9A-Z]|[a-z]{3}\d{2}[0-9a-z])(?![\w§])"
)

# Street addresses with a house number. The street is a word ending in one of these (Drottninggatan,
# Storgatan, Ekersvägen, ...) followed by a 1-3 digit number, an optional letter (12B, 12 B) and an optional
# range (5-7). A number followed by ".04" or ":30" is a time ("Markbacken 22.04"), and four digits a year
# ("Sveaparken 2022"); neither is taken. A street named without a number, or "Vivalla centrum", stays.
STREET_SUFFIXES = (
    "gatan", "vägen", "gränd", "gränden", "stigen", "allén", "allé", "torget", "backen", "leden", "plan",
    "platsen", "stråket", "parken", "promenaden", "slingan", "gången",
)
_ADDRESS_RE = re.compile(
    r"(?<![\w\-])[^\W\d_][^\W\d_\-]*(?i:" + "|".join(sorted(STREET_SUFFIXES, key=len, reverse=True)) + r")"
    rf"[{_HSPACE}]+\d{{1,3}}(?:[A-Za-z](?![\w])|[{_HSPACE}][A-H](?![\w]))?"
    rf"(?:[{_HSPACE}]?[{_DASH_CLASS}][{_HSPACE}]?\d{{1,3}}[A-Za-z]?)?(?![\d\w]|[.:,]\d)"
)


def _personnummer_hits(text: pd.Series) -> set[str]:
    """The distinct personnummer-shaped runs in ``text`` that are to be replaced.

    A run is a personnummer when its last 10 digits pass Luhn (even if it might be a phone number: PRIVACY.md,
    "Free text"), or when it has a dash or "+" between a plausible date (month 01-12, day 01-31 or 61-91) and
    4 digits: a mistyped check digit still points at a person. Luhn runs once per distinct candidate.
    """
    found = text.str.extractall(f"(?P<run>{_PNR_TEXT_RE.pattern})")
    if found.empty:
        return set()
    runs = pd.Series(found["run"].unique(), dtype=object)
    digits = runs.str.translate(_fold_table()).str.replace(r"[^0-9]", "", regex=True)
    last10 = _digit_rows(digits.str.slice(-10).tolist(), 10)
    luhn = _luhn_matrix(last10)
    month = last10[:, 2] * 10 + last10[:, 3]
    day = last10[:, 4] * 10 + last10[:, 5]
    plausible = (month >= 1) & (month <= 12) & (((day >= 1) & (day <= 31)) | ((day >= 61) & (day <= 91)))
    separated = runs.str.contains(f"[{_DASH_CLASS}{_PLUS_CLASS}]", regex=True).to_numpy(dtype=bool)
    hit = luhn | (plausible & separated)
    return set(runs[hit])


# Cheap pre-filters, run by pyarrow's RE2 over the whole column: a text that does not match one cannot hold a
# match of the corresponding pattern, so the (slower, Python) pattern runs only on the few texts that do.
_RE2_HSPACE = r"[ \x{a0}\x{202f}\x{2009}]"
_PREFILTERS = {
    "e-post": r"@",
    "personnummer": r"\p{Nd}{6}",
    "telefon": r"0[1-9]|00|\+",
    "regnr": r"[A-Z]{3}[ \x{a0}\-]?\p{Nd}{2}|[a-z]{3}\p{Nd}{2}",
    "adress": rf"(?i:{'|'.join(STREET_SUFFIXES)}){_RE2_HSPACE}+\p{{Nd}}",
}


# From this many texts on, the scrubber first looks for repeated texts (one hash pass, pyarrow): when at most
# half the texts are distinct, each distinct text is scrubbed once and the results are taken back to the rows
# (counts weighted by how often each text occurs). Otherwise every text is scrubbed as it is.
SCRUB_DISTINCT_MIN_VALUES = 1_000
# One pass of all the pre-filters at once: most texts match none of them and are then not looked at again.
_ANY_PREFILTER = "|".join(f"(?:{pattern})" for pattern in _PREFILTERS.values())


def _str_series(array: pa.Array, dtype) -> pd.Series:
    """An Arrow string array as a pandas Series of the given Arrow-backed string dtype (no Python objects)."""
    chunked = pa.chunked_array([array.cast(pa.large_string())])
    return pd.Series(pd.arrays.ArrowStringArray(chunked, dtype=dtype), dtype=dtype)


def _prefilter_masks(text: pd.Series) -> dict[str, np.ndarray]:
    """Per pattern, the texts that might hold a match (pyarrow's RE2 over the column).

    Computed once on the texts as given: a replacement never creates a match of a later pre-filter (a token
    starts with "[" and ends with "]", which no pre-filter matches, and holds no digit, "@" or "+"), so the
    texts that need a pattern after the earlier replacements are among these (a few more are harmless: the
    pattern finds nothing in them)."""
    arrow = _arrow_strings(text)
    candidates = np.flatnonzero(_bool_mask(pc.match_substring_regex(arrow, _ANY_PREFILTER)))
    masks = {}
    subset = arrow.take(pa.array(candidates)) if len(candidates) < len(arrow) else arrow
    for name, pattern in _PREFILTERS.items():
        mask = np.zeros(len(arrow), dtype=bool)
        if len(candidates):
            mask[candidates] = _bool_mask(pc.match_substring_regex(subset, pattern))
        masks[name] = mask
    return masks


def _bool_mask(array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _scrub(values: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    if not isinstance(values, pd.Series):
        values = pd.Series(values, dtype=object)
    text = values.astype("str").reset_index(drop=True)
    dtype = text.dtype
    indices = None
    weights = None
    if _arrow_backed(text) and len(text) >= SCRUB_DISTINCT_MIN_VALUES:
        encoded = pc.dictionary_encode(_arrow_strings(text))
        if len(encoded.dictionary) * 2 <= len(text):
            indices = encoded.indices
            codes = pc.fill_null(indices, -1).to_numpy(zero_copy_only=False)
            weights = np.bincount(codes[codes >= 0], minlength=len(encoded.dictionary))
            text = _str_series(encoded.dictionary, dtype)
    masks = _prefilter_masks(text) if _arrow_backed(text) else None
    counts: dict[str, int] = {}

    def replace(name: str, pattern: re.Pattern, token: str) -> None:
        if masks is None:
            arrow = _arrow_strings(text)
            maybe = _bool_mask(pc.match_substring_regex(arrow, _PREFILTERS[name]))
        else:
            maybe = masks[name]
        if not maybe.any():
            counts[name] = 0
            return
        subset = text[maybe]
        repl: Any = token
        if name == "personnummer":
            hits = _personnummer_hits(subset)
            repl = lambda m: token if m.group(0) in hits else m.group(0)  # noqa: E731
        escaped = re.escape(token)
        before = np.asarray(subset.str.count(escaped).fillna(0), dtype=np.int64)
        subset = subset.str.replace(pattern, repl, regex=True)
        found = np.asarray(subset.str.count(escaped).fillna(0), dtype=np.int64) - before
        counts[name] = int(found.sum() if weights is None else found @ weights[maybe])
        text[maybe] = subset

    replace("e-post", _EMAIL_RE, TOKEN_EMAIL)
    replace("personnummer", _PNR_TEXT_RE, TOKEN_PERSONNUMMER)
    replace("telefon", _PHONE_RE, TOKEN_PHONE)
    replace("regnr", _PLATE_RE, TOKEN_PLATE)
    replace("adress", _ADDRESS_RE, TOKEN_ADDRESS)
    ordered = {name: counts[name] for name in ("personnummer", "telefon", "e-post", "regnr", "adress")}
    if indices is not None:
        text = _str_series(pc.take(_arrow_strings(text), indices), dtype)
    if not _arrow_backed(text):
        text = pd.Series(text.to_numpy(), dtype=dtype)
    return pd.Series(text.array, index=values.index, name=values.name, dtype=dtype), ordered


def _arrow_backed(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow"


def _arrow_strings(text: pd.Series) -> pa.Array:
    if _arrow_backed(text):
        array = pa.array(text.array)
    else:
        array = pa.array(text.to_numpy(dtype=object, na_value=None), type=pa.string())
    return one_array(array)


def scrub_text(values: pd.Series) -> pd.Series:
    """Free text with personnummer, phone numbers, e-mail addresses, car plates and street addresses replaced by
    "[personnummer]", "[telefon]", "[e-post]", "[regnr]", "[adress]" (PRIVACY.md, "Free text").

    Scrubbed text stays in the restricted layer; free text never reaches a shared output at all. Vectorised:
    a text repeated across rows is scrubbed once (when at most half the texts are distinct); per pattern, a
    cheap pre-filter (pyarrow, RE2, run once over all texts) picks the texts that might hold a match and one
    ``Series.str.replace`` with the compiled pattern runs over those. Personnummer candidates are extracted
    first and Luhn-checked once per distinct run; the replacement then looks each match up in that set. E-mail
    goes first (an address may hold digits), then personnummer (so a Luhn-valid 10-digit run counts as one even
    when it looks like a phone number), phone numbers, plates, addresses. Ages ("i 20-årsåldern"), times
    ("kl. 22.30"), dates ("2025-06-07"), case numbers ("5000-K123456-25"), road numbers ("LV 205") and place
    names without a number ("Vivalla") are left as they are. Nulls stay null; the result has pandas' "str"
    dtype. About 96,000 real narrative paragraphs (12 MB) take 1.4 to 1.6 s.
    """
    return _scrub(values)[0]


def scrub_report(values: pd.Series) -> dict[str, int]:
    """How many of each kind ``scrub_text`` removes from ``values``: {"personnummer": n, "telefon": n, ...}."""
    return _scrub(values)[1]


# --------------------------------------------------------------------------------------------------------------
# Published numbers (PRIVACY.md, "Published numbers")
# --------------------------------------------------------------------------------------------------------------

# Primary suppression: a published count from 1 to 4 is shown as "<5". Counts this small can point at a
# person, above all together with what a reader already knows about a street or a school.
PRIMARY_THRESHOLD = 5
# Cells fed by social services, schools or home care (a contract with ``sensitive: true``) are about children
# and health: the threshold is 10 there.
SENSITIVE_THRESHOLD = 10
# Where persons are known, a cell must involve at least 3 distinct persons, or it is suppressed: 20 incidents
# of one person are that person's record.
MIN_DISTINCT_PERSONS = 3

# Shown for a suppressed cell whose reason is not its own size (secondary suppression, too few persons): it
# states no range. Such a cell always holds at least the threshold (zeros are shown and 1..4 say "<5"); a reader
# can work that out, so the audit in ``suppression_intervals`` assumes the attacker knows it too.
HIDDEN_LABEL = ".."
TOTAL_KEY = "Totalt"


def suppressed_label(threshold: int = PRIMARY_THRESHOLD) -> str:
    """The label of a primarily suppressed count: "<5", or "<10" for the sensitive threshold."""
    return f"<{int(threshold)}"


SUPPRESSED_LABEL = suppressed_label(PRIMARY_THRESHOLD)


def threshold_for(sensitive: bool) -> int:
    """The primary threshold for a cell: SENSITIVE_THRESHOLD when any source feeding it is marked ``sensitive``
    in its contract (social services, schools, home care), else PRIMARY_THRESHOLD."""
    return SENSITIVE_THRESHOLD if sensitive else PRIMARY_THRESHOLD


def _counts(n) -> pd.Series:
    series = n if isinstance(n, pd.Series) else pd.Series(np.asarray(n))
    numeric = pd.to_numeric(series, errors="raise")
    if numeric.isna().any():
        raise ValueError("a published count cannot be missing: count it as 0")
    array = numeric.to_numpy(dtype=float)
    if (array < 0).any() or (array != np.round(array)).any():
        raise ValueError("published counts must be whole numbers of 0 or more")
    return pd.Series(array.astype(np.int64), index=series.index, name=series.name)


def is_suppressed(n, threshold: int = PRIMARY_THRESHOLD, distinct_persons=None) -> pd.Series:
    """Which counts must not be shown: 1 to threshold-1 (primary suppression), and, where ``distinct_persons``
    is given, any non-zero count involving fewer than MIN_DISTINCT_PERSONS persons (PRIVACY.md, "Published
    numbers"). Zero may be shown."""
    counts = _counts(n)
    mask = (counts > 0) & (counts < threshold)
    if distinct_persons is not None:
        persons = np.asarray(distinct_persons)
        mask = mask | ((counts > 0) & (persons < MIN_DISTINCT_PERSONS))
    return mask.rename("suppressed")


def suppress_counts(
    n, threshold: int = PRIMARY_THRESHOLD, distinct_persons=None
) -> tuple[pd.Series, pd.Series]:
    """Counts as they may be published, and which were suppressed: (display, suppressed).

    0 is shown as "0"; 1 to threshold-1 as "<threshold" ("<5", "<10"); a count of threshold or more that
    involves fewer than MIN_DISTINCT_PERSONS persons as HIDDEN_LABEL (saying "<5" there would be false).
    Apply it to every published number, totals included (PRIVACY.md, "Published numbers"); for a table with
    totals use ``secondary_suppression`` as well.
    """
    counts = _counts(n)
    suppressed = is_suppressed(counts, threshold, distinct_persons)
    display = counts.astype(str)
    display[suppressed & (counts >= threshold)] = HIDDEN_LABEL
    display[(counts > 0) & (counts < threshold)] = suppressed_label(threshold)
    return display.rename("display"), suppressed


def _grid_with_margins(table: pd.DataFrame, value_col: str, row_key: str, col_key: str,
                       threshold: int | Iterable[int]) -> pd.DataFrame:
    """The full grid with its margins in long form, and each cell's threshold: a cell's own (the largest of the
    rows that make it), a total's the largest in its row or column: a total fed by a sensitive cell is
    sensitive too.

    Rows and columns in sorted key order, each followed by its total (``TOTAL_KEY``), row by row; a missing
    combination is a zero. The same frame as pandas' ``pivot_table`` (sum, and max of the thresholds) with
    margins appended and stacked, which it was until it took 10 ms a table (a weekly report makes 18, a
    quarterly pack over 150): it is one scatter-add here (tests/test_privacy.py compares both)."""
    rows, row_names = pd.factorize(table[row_key], sort=True)
    cols, col_names = pd.factorize(table[col_key], sort=True)
    if TOTAL_KEY in row_names or TOTAL_KEY in col_names:
        raise ValueError(f"{TOTAL_KEY!r} is reserved for the margins")
    limit = np.broadcast_to(np.asarray(threshold, dtype=np.int64), (len(table),))
    base = int(limit.min()) if len(table) else PRIMARY_THRESHOLD
    named = (rows >= 0) & (cols >= 0)  # a row with a missing key is in no cell (pivot_table drops it too)
    n_rows, n_cols = len(row_names) + 1, len(col_names) + 1  # the last row and column are the totals
    cell = rows[named] * n_cols + cols[named]
    values = np.zeros(n_rows * n_cols, dtype=np.int64)
    np.add.at(values, cell, table[value_col].to_numpy()[named].astype(np.int64))
    limits = np.full(n_rows * n_cols, base, dtype=np.int64)
    np.maximum.at(limits, cell, limit[named])
    values, limits = values.reshape(n_rows, n_cols), limits.reshape(n_rows, n_cols)
    values[-1, :-1] = values[:-1, :-1].sum(axis=0)
    values[:, -1] = values[:, :-1].sum(axis=1)
    limits[-1, :-1] = limits[:-1, :-1].max(axis=0, initial=base)
    limits[:, -1] = limits[:, :-1].max(axis=1, initial=base)
    position = np.arange(n_rows * n_cols)
    return pd.DataFrame({
        row_key: np.repeat(np.append(np.asarray(row_names, dtype=object), TOTAL_KEY), n_cols),
        col_key: np.tile(np.append(np.asarray(col_names, dtype=object), TOTAL_KEY), n_rows),
        value_col: values.ravel(),
        "threshold": limits.ravel(),
        "is_total": (position // n_cols == n_rows - 1) | (position % n_cols == n_cols - 1),
    })


def suppression_intervals(grid: pd.DataFrame, value_col: str, row_key: str, col_key: str,
                          threshold: int = PRIMARY_THRESHOLD) -> pd.DataFrame:
    """What an attacker can learn about each suppressed cell of a published table with margins: the smallest
    and largest value consistent with everything shown (the visible cells and margins, every row and column
    adding up, a "<t" cell being 1..t-1, a HIDDEN_LABEL cell being at least t, where t is the cell's
    ``threshold`` column, else ``threshold``).

    The constraints are a network flow's (source -> rows -> cells -> columns -> sink), whose matrix is totally
    unimodular, so the linear-programming bounds are whole numbers and exact: a cell with min == max is
    recoverable. ``grid`` is the output of ``secondary_suppression``. Uses scipy's HiGHS solver.
    """
    from scipy.optimize import linprog

    hidden = grid.index[grid["suppressed"].to_numpy(dtype=bool)]
    if len(hidden) == 0:
        return pd.DataFrame(columns=[row_key, col_key, "low", "high"])
    position = {idx: k for k, idx in enumerate(hidden)}
    values = grid[value_col].to_numpy()
    rows_eq, rhs = [], []
    for key, other in ((row_key, col_key), (col_key, row_key)):
        for _, line in grid.groupby(key, sort=False):
            total_mask = (line[other] == TOTAL_KEY).to_numpy()
            coefficient = np.where(total_mask, -1.0, 1.0)
            row = np.zeros(len(hidden))
            constant = 0.0
            for idx, coef in zip(line.index, coefficient):
                if idx in position:
                    row[position[idx]] += coef
                else:
                    constant += coef * values[idx]
            if row.any():
                rows_eq.append(row)
                rhs.append(-constant)
    a_eq, b_eq = np.array(rows_eq), np.array(rhs)
    # What the label tells: "<5" is 1..4; ".." (secondary, or too few persons) is never 1..4 and never 0,
    # since zeros are shown and never used as complements.
    if "threshold" in grid:
        limits = grid.loc[hidden, "threshold"].to_numpy()
    else:
        limits = np.full(len(hidden), threshold)
    small = grid.loc[hidden, "display"].astype(str).str.startswith("<").to_numpy()
    # Where the table shows "<t" labels, a ".." cannot be 1..t-1; where it shows none, it may be anything >= 1.
    lowest = limits if small.any() else np.ones(len(hidden), dtype=np.int64)
    bounds = [(1, int(t) - 1) if s else (int(lo), None) for s, t, lo in zip(small, limits, lowest)]
    low, high = [], []
    for k in range(len(hidden)):
        c = np.zeros(len(hidden))
        c[k] = 1.0
        result_min = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        result_max = linprog(-c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        if result_min.status != 0 or result_max.status not in (0, 3):
            raise RuntimeError(f"suppression audit failed: {result_min.message} / {result_max.message}")
        low.append(round(result_min.fun))
        high.append(round(-result_max.fun) if result_max.status == 0 else np.inf)
    out = grid.loc[hidden, [row_key, col_key]].copy()
    out["low"], out["high"] = low, high
    return out


def _hidden_bounds(grid: pd.DataFrame, hidden: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """What the labels tell an attacker about each hidden cell: (lower, upper) with upper = inf for "..".
    The same reading as ``suppression_intervals``."""
    limits = (grid.loc[hidden, "threshold"].to_numpy() if "threshold" in grid
              else np.full(len(hidden), threshold)).astype(float)
    small = grid.loc[hidden, "display"].astype(str).str.startswith("<").to_numpy()
    lowest = limits if small.any() else np.ones(len(hidden))
    lower = np.where(small, 1.0, lowest)
    upper = np.where(small, limits - 1, np.inf)
    return lower, upper


def _reachable(successors: list[set[int]], start: int, goal: int, skip: tuple[int, int]) -> bool:
    """Whether ``goal`` can be reached from ``start`` without the arcs skip[0] -> skip[1] and back."""
    a, b = skip
    seen, stack = {start}, [start]
    while stack:
        node = stack.pop()
        for nxt in successors[node]:
            if (node == a and nxt == b) or (node == b and nxt == a) or nxt in seen:
                continue
            if nxt == goal:
                return True
            seen.add(nxt)
            stack.append(nxt)
    return False


def _bridges(ends_a: list[int], ends_b: list[int], size: int) -> list[bool]:
    """Which edges of an undirected graph on nodes 0..size-1 (edge i joins ends_a[i] and ends_b[i]) are bridges,
    on no cycle: Tarjan's low points, in one depth-first search (iterative; parallel edges allowed)."""
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(size)]
    for edge, (a, b) in enumerate(zip(ends_a, ends_b)):
        adjacency[a].append((b, edge))
        adjacency[b].append((a, edge))
    order, low = [-1] * size, [0] * size
    bridge = [False] * len(ends_a)
    counter = 0
    for root in range(size):
        if order[root] != -1 or not adjacency[root]:
            continue
        order[root] = low[root] = counter
        counter += 1
        stack = [(root, -1, iter(adjacency[root]))]
        while stack:
            node, via, neighbours = stack[-1]
            for nxt, edge in neighbours:
                if edge == via:
                    continue
                if order[nxt] == -1:
                    order[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append((nxt, edge, iter(adjacency[nxt])))
                    break
                low[node] = min(low[node], order[nxt])
            else:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    if low[node] > order[parent]:
                        bridge[via] = True
    return bridge


def pinned_cells(grid: pd.DataFrame, value_col: str, row_key: str, col_key: str,
                 threshold: int = PRIMARY_THRESHOLD) -> pd.Series:
    """Which hidden cells of a published two-way table with margins are pinned to one value by what is shown:
    the exact answer of ``suppression_intervals`` (low == high), for every cell at once, in milliseconds.

    Why it is exact: a table with margins is a network. Take one node per row line and per column line; put
    the column-total line on the rows' side and the row-total line on the columns' side; then every cell is
    an arc (an interior cell row -> column, a row total column-total -> row, a column total column ->
    row-total, the grand total row-total -> column-total) and "every line adds up" is flow conservation. The
    hidden cells can change, with everything shown staying true, exactly along circulations of hidden arcs; by
    conformal decomposition, a hidden cell can take another value iff it lies on a directed cycle of the
    residual graph (an arc forward where the cell is below its upper bound, backward where above its lower
    bound; bounds and values are whole numbers, so a step of 1 is feasible) that does not use the cell twice.
    A one-way arc lies on such a cycle iff its two ends are in the same strongly connected component; a cell
    free both ways needs a path between its ends through other cells (searched only when the components
    allow it). Tested against the LP on random tables (tests/test_suppression_attack.py).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    mask = grid["suppressed"].to_numpy(dtype=bool)
    hidden = grid.index[mask]
    if len(hidden) == 0:
        return pd.Series(False, index=grid.index, name="pinned")
    rows = grid[row_key].to_numpy()[mask]
    cols = grid[col_key].to_numpy()[mask]
    row_total = rows == TOTAL_KEY
    col_total = cols == TOTAL_KEY
    # One node per row line and per column line (numbered rows first, then columns).
    row_line, row_names = pd.factorize(rows)
    col_line, col_names = pd.factorize(cols)
    col_line = col_line + len(row_names)
    size = len(row_names) + len(col_names)
    # An interior cell and the grand total run row line -> column line; a row total (column-total line -> row
    # line) and a column total (column line -> row-total line) run the other way: exactly one key is a total.
    against = row_total ^ col_total
    tails = np.where(against, col_line, row_line)
    heads = np.where(against, row_line, col_line)
    values = grid[value_col].to_numpy(dtype=float)[mask]
    lower, upper = _hidden_bounds(grid, hidden, threshold)
    up, down = values < upper, values > lower
    src = np.concatenate([tails[up], heads[down]])
    dst = np.concatenate([heads[up], tails[down]])
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(size, size)).tocsr()
    _, component = connected_components(graph, directed=True, connection="strong")
    movable = (up | down) & (component[tails] == component[heads])
    # A cell free both ways makes a 2-cycle with itself (+1 then -1: no change at all). It moves only when its
    # ends are joined by a path of other cells: search for one without its own two arcs (a simple cycle of 3
    # or more arcs never uses a cell twice, and the only anti-parallel arcs are one cell's own pair).
    # Cells free both ways that lie on a cycle of such cells can move around it either way: only those on no
    # such cycle (the bridges of that undirected graph, found in one pass) need the search through every arc.
    # Searching for every cell took about a fifth of the quarterly pack's time here.
    both = np.flatnonzero(movable & up & down)
    if len(both):
        both = both[np.asarray(_bridges(tails[both].tolist(), heads[both].tolist(), size), dtype=bool)]
    if len(both):
        successors: list[set[int]] = [set() for _ in range(size)]
        for a, b in zip(src.tolist(), dst.tolist()):
            successors[a].add(b)
        for k in both:
            u, v = int(tails[k]), int(heads[k])
            movable[k] = _reachable(successors, v, u, skip=(u, v)) or _reachable(successors, u, v, skip=(u, v))
    out = pd.Series(False, index=grid.index, name="pinned")
    out[hidden] = ~movable
    return out


def secondary_suppression(table: pd.DataFrame, value_col: str, row_key: str, col_key: str,
                          threshold: int | pd.Series = PRIMARY_THRESHOLD, primary: pd.Series | None = None,
                          audit: bool = True, force: Iterable[tuple[Any, Any]] = (),
                          keep: Iterable[tuple[Any, Any]] = ()) -> pd.DataFrame:
    """Primary and secondary suppression of a two-way table published with row, column and grand totals.

    Returns the full grid in long form, margins included (``TOTAL_KEY`` as the row or column key): columns
    ``row_key, col_key, value_col, threshold, is_total, suppressed, suppression`` ("primary", "secondary" or
    "") and ``display``. Missing combinations are zeros, as the published table would show them.

    ``threshold`` is one number, or one per row of ``table`` (``threshold_for(sensitive)``): a total takes the
    largest threshold of the cells it adds up, so a total fed by social services is "<10" too.

    Rule (PRIVACY.md, "Published numbers"): no suppressed cell may be recoverable from the row or column
    totals. Primary suppression hides 1..threshold-1 (interior cells and totals alike, and the cells in
    ``primary``, e.g. too few persons). Then, until nothing changes, any row or column (its total included)
    with exactly one hidden member gets its smallest visible non-zero cell hidden too, or its total when it has
    none; zeros are never used, since a hidden zero protects nothing. With ``audit`` the result is
    then checked exactly (``pinned_cells``, the fast equivalent of ``suppression_intervals``) and, while any
    hidden cell is still pinned to one value by the totals, the smallest visible non-zero cell beside it is
    hidden as well. Fast enough for a municipality's whole quarterly area x category grid (seconds).

    When no pattern protects the table while "<5" labels are shown (four cells of 1 in a row whose total is
    "<5" must all be 1), it starts again and shows every hidden cell as HIDDEN_LABEL, which states no range:
    stricter than "<5", never looser.

    ``force``: (row, col) keys of grid cells, margins included, to hide from the start whatever their size
    (labelled "linked"): the cells another published table needs hidden. A forced zero stays shown, since a
    hidden zero protects nothing and every zero is shown elsewhere. ``keep``: keys of cells that another
    published table already gives away (a quarterly total whose weeks are all shown): hiding one would
    protect nothing, so secondary suppression never picks them.

    Linking with other tables (the weekly figures against the quarterly ones) is ``linked_suppression``'s job,
    which calls this with ``force``.
    """
    grid = _grid_with_margins(table, value_col, row_key, col_key, threshold)
    values = grid[value_col].to_numpy()
    limits = grid["threshold"].to_numpy()
    primary_mask = (values > 0) & (values < limits)
    if primary is not None:
        flagged = table.assign(_p=np.asarray(primary, dtype=bool))
        extra = flagged.groupby([row_key, col_key], observed=True)["_p"].any()
        keys = pd.MultiIndex.from_frame(grid[[row_key, col_key]])
        primary_mask |= extra.reindex(keys, fill_value=False).to_numpy(dtype=bool) & (values > 0)
    forced = list(force)
    forced_mask = np.zeros(len(grid), dtype=bool)
    if forced:
        keys = pd.MultiIndex.from_frame(grid[[row_key, col_key]])
        forced_mask = keys.isin(pd.MultiIndex.from_tuples(forced)) & (values > 0) & ~primary_mask
    kept = list(keep)
    public = np.zeros(len(grid), dtype=bool)
    if kept:
        public = pd.MultiIndex.from_frame(grid[[row_key, col_key]]).isin(pd.MultiIndex.from_tuples(kept))
    suppressed = primary_mask | forced_mask
    is_total = grid["is_total"].to_numpy()

    eligible = (values > 0) & ~public  # a cell secondary suppression may pick (while still shown)
    # Per direction, what never changes while cells get hidden: each grid row's line (a code), its members in the
    # order the cells of a line are picked (the line's smallest value first, ties by the other key), and each
    # line's total. Only `suppressed` changes between rounds: a round is a few numpy passes (it was a pandas
    # filter, sort and group-by each time, about a third of the quarterly pack's suppression time).
    lines = {}
    for key, other in ((row_key, col_key), (col_key, row_key)):
        codes, names = pd.factorize(grid[key])
        member = (grid[other] != TOTAL_KEY).to_numpy()
        order = grid.sort_values([key, value_col, other]).index.to_numpy()  # positions: the index is 0..n-1
        order = order[member[order]]
        total_of_line = np.full(len(names), -1)
        totals = np.flatnonzero(~member)
        total_of_line[codes[totals]] = totals
        lines[key] = (codes, pd.Index(names), order, total_of_line)

    def hide_one_in(lines_key: str, needy: pd.Index) -> bool:
        """For each line in ``needy``, hide its smallest visible non-zero member, else the line's total. The
        members of an ordinary row are its cells; those of the total row are the column totals."""
        codes, names, order, total_of_line = lines[lines_key]
        wanted = np.zeros(len(names), dtype=bool)
        found = names.get_indexer(needy)
        wanted[found[found >= 0]] = True
        candidates = order[wanted[codes[order]] & ~suppressed[order] & eligible[order]]
        candidate_lines = codes[candidates]
        first = np.ones(len(candidates), dtype=bool)
        first[1:] = candidate_lines[1:] != candidate_lines[:-1]  # `order` keeps each line's members together
        chosen = candidates[first]
        suppressed[chosen] = True
        wanted[candidate_lines] = False  # lines left without a member to hide: their total, if it can be
        margin = total_of_line[wanted]
        margin = margin[margin >= 0]
        margin = margin[~suppressed[margin] & eligible[margin]]
        suppressed[margin] = True
        return bool(len(chosen) or len(margin))

    def settle() -> None:
        while True:
            changed = False
            for key in (row_key, col_key):
                codes, names = lines[key][0], lines[key][1]
                per_line = np.bincount(codes, weights=suppressed, minlength=len(names))
                needy = names[per_line == 1]
                if len(needy) and hide_one_in(key, needy):
                    changed = True
            if not changed:
                return

    # The labels, made once: every audit round relabels the grid.
    value_text = grid[value_col].astype(str).to_numpy(dtype=object)
    small = (values > 0) & (values < limits)
    small_text = np.array([suppressed_label(t) if is_small else "" for t, is_small in zip(limits, small)],
                          dtype=object)

    def labelled(ranges: bool) -> pd.DataFrame:
        out = grid.copy()
        out["suppressed"] = suppressed
        out["suppression"] = np.where(primary_mask, "primary", np.where(
            forced_mask, "linked", np.where(suppressed, "secondary", "")))
        display = value_text.copy()
        display[suppressed] = HIDDEN_LABEL
        if ranges:
            display[small] = small_text[small]
        out["display"] = display
        return out

    def protect(ranges: bool) -> bool:
        """Hide more until no hidden cell is pinned; False when nothing is left to hide and one still is."""
        settle()
        while audit:  # each round hides at least one more cell or gives up, so it ends
            current = labelled(ranges)
            pinned_mask = pinned_cells(current, value_col, row_key, col_key).to_numpy()
            if not pinned_mask.any():
                break
            first = current.loc[np.flatnonzero(pinned_mask)[0]]
            changed = hide_one_in(row_key, pd.Index([first[row_key]])) or hide_one_in(
                col_key, pd.Index([first[col_key]]))
            if not changed:
                # Nothing visible is left beside it: hide the smallest visible non-zero cell anywhere.
                visible = np.flatnonzero(~suppressed & (values > 0) & ~public)
                if not len(visible):
                    return False
                suppressed[visible[np.argmin(values[visible] + is_total[visible] * values.max())]] = True
            settle()
        return True

    if protect(ranges=True):
        return labelled(ranges=True)
    # "<5" itself gives too much away here (e.g. four 1s and their total "<5": all must be 1). Start again and
    # show every hidden cell as ".." with no range, which reveals less than "<5" does.
    suppressed[:] = primary_mask | forced_mask
    if protect(ranges=False):
        return labelled(ranges=False)
    raise ValueError(  # not reached: with no ranges shown, an all-hidden table pins nothing
        "this table cannot be published with its totals without a recoverable cell: merge areas or categories "
        "(PRIVACY.md, 'Published numbers')"
    )


# --------------------------------------------------------------------------------------------------------------
# Linked tables: the weeks of a quarter against the quarter (PRIVACY.md, "Published numbers")
# --------------------------------------------------------------------------------------------------------------

# A published quarter is linked to the weekly reports of its weeks: an area's weekly counts add up to its
# quarterly total, a category's to its quarterly total, the weeks' totals to the quarter's. Suppressing each
# table on its own is not enough (a shown quarterly total minus the shown weeks gives the one hidden week back),
# so the quarter is suppressed against the weeks as published: ``linked_suppression``.

# Random objectives ``linked_pinned`` tries before the exact pair of linear programs per remaining hidden number.
# Each optimal vertex that moves a hidden number away from its true value proves that number is not pinned; on
# the generated quarters 12 leave the pinned numbers and a few others, so the exact step stays short.
LINK_PROBES = 12
# The weekly tables of a quarter, by what they add up to in the quarter's grid: "row" tables are over the
# grid's row keys (areas), "col" tables over its column keys (categories); TOTAL_KEY marks each week's total.
LINK_SIDES = ("row", "col")
_SEP = "\x1f"  # joins the parts of a number's name; never part of an area code or a category


def _quarter_name(row: pd.Series, col: pd.Series) -> pd.Series:
    return "q" + _SEP + row.astype(str) + _SEP + col.astype(str)


def _week_name(week: pd.Series, side: pd.Series, key: pd.Series) -> pd.Series:
    total = side.astype(str) == TOTAL_KEY
    name = "w" + _SEP + week.astype(str) + _SEP + side.astype(str) + _SEP + key.astype(str)
    return name.where(~total, "w" + _SEP + week.astype(str) + _SEP + TOTAL_KEY)


def _label_bounds(display: pd.Series, threshold: pd.Series, ranges: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) a reader knows for hidden numbers: "<t" is 1..t-1; ".." is at least t where its table
    shows "<" labels (a smaller number would say "<t"), else at least 1. As ``_hidden_bounds`` reads them."""
    small = display.astype(str).str.startswith("<").to_numpy()
    limits = threshold.to_numpy(dtype=float)
    lower = np.where(small, 1.0, np.where(ranges.to_numpy(dtype=bool), limits, 1.0))
    upper = np.where(small, limits - 1, np.inf)
    return lower, upper


def linked_system(grid: pd.DataFrame, value_col: str, row_key: str, col_key: str,
                  weeks: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Everything published for a quarter as one linear system: the numbers and the equations between them.

    ``grid`` is the quarter's protected grid (``secondary_suppression``'s output: margins keyed TOTAL_KEY,
    ``suppressed``, ``display``, ``threshold``). ``weeks`` holds the weekly tables as published, one row per
    number: ``week``, ``side`` ("row": a count per row key, "col": per column key, TOTAL_KEY: the week's total,
    one per week, shared by both tables), ``key``, ``n``, ``suppressed``, ``display``, ``threshold``.

    Returns (numbers, equations): numbers indexed by name with ``n``, ``suppressed``, ``low``, ``high`` (what
    the labels state about a hidden number); equations in long form ``eq, name, coef`` (each adds up to 0):
    the grid's rows and columns, each weekly table to its week's total, each row key's and column key's weeks
    to its quarterly margin, the weeks' totals to the quarter's. A weekly key absent from the grid must be 0.
    """
    T = TOTAL_KEY
    q = pd.DataFrame({"name": _quarter_name(grid[row_key], grid[col_key]).to_numpy(),
                      "row": grid[row_key].astype(str).to_numpy(), "col": grid[col_key].astype(str).to_numpy(),
                      "n": grid[value_col].to_numpy(dtype=np.int64),
                      "suppressed": grid["suppressed"].to_numpy(dtype=bool)})
    q_ranges = pd.Series(grid["display"].astype(str).str.startswith("<").any(), index=grid.index)
    q_low, q_high = _label_bounds(grid["display"], grid["threshold"], q_ranges)

    w = weeks.reset_index(drop=True).copy()
    w["side"], w["key"], w["week"] = w["side"].astype(str), w["key"].astype(str), w["week"].astype(str)
    w["name"] = _week_name(w["week"], w["side"], w["key"]).to_numpy()
    small = w["display"].astype(str).str.startswith("<")
    # A weekly table shows ranges when any of its numbers, its total included, is a "<" label. The week's
    # total belongs to both of the week's tables and is read by the stricter of them (no ranges wins).
    total_small = small[w["side"] == T].groupby(w.loc[w["side"] == T, "week"]).any()
    table_flag = small.groupby([w["week"], w["side"]]).any()
    keys = pd.MultiIndex.from_arrays([w["week"], w["side"]])
    member_flag = table_flag.reindex(keys, fill_value=False).to_numpy() | \
        total_small.reindex(w["week"], fill_value=False).to_numpy()
    sides = w[w["side"] != T].assign(_flag=member_flag[(w["side"] != T).to_numpy()])
    total_flag = sides.groupby("week")["_flag"].all().reindex(w["week"], fill_value=True).to_numpy()
    w_ranges = np.where(w["side"] == T, total_flag, member_flag)
    w_low, w_high = _label_bounds(w["display"], w["threshold"], pd.Series(w_ranges))

    unknown = ~(((w["side"] == "row") & w["key"].isin(q["row"])) | ((w["side"] == "col") & w["key"].isin(q["col"]))
                | (w["side"] == T))
    if (unknown & (w["n"] != 0)).any():
        raise ValueError("a weekly count belongs to no row or column of the quarter: the weeks are not the quarter's")
    w = w[~unknown].copy()
    w_low, w_high = w_low[~unknown.to_numpy()], w_high[~unknown.to_numpy()]

    numbers = pd.concat([
        pd.DataFrame({"n": q["n"].to_numpy(), "suppressed": q["suppressed"].to_numpy(), "low": q_low,
                      "high": q_high}, index=q["name"].to_numpy()),
        pd.DataFrame({"n": w["n"].to_numpy(dtype=np.int64), "suppressed": w["suppressed"].to_numpy(dtype=bool),
                      "low": w_low, "high": w_high}, index=w["name"].to_numpy()),
    ])
    if numbers.index.duplicated().any():
        raise ValueError("a published number appears twice: give each week's table each key once")

    # Each equation: its members with +1 and the number they add up to with -1.
    margins_r, margins_c = q[q["col"] == T].set_index("row")["name"], q[q["row"] == T].set_index("col")["name"]
    lines = [
        pd.DataFrame({"eq": "qr" + _SEP + q.loc[q["col"] != T, "row"], "name": q.loc[q["col"] != T, "name"],
                      "coef": 1.0}),
        pd.DataFrame({"eq": "qr" + _SEP + margins_r.index, "name": margins_r.to_numpy(), "coef": -1.0}),
        pd.DataFrame({"eq": "qc" + _SEP + q.loc[q["row"] != T, "col"], "name": q.loc[q["row"] != T, "name"],
                      "coef": 1.0}),
        pd.DataFrame({"eq": "qc" + _SEP + margins_c.index, "name": margins_c.to_numpy(), "coef": -1.0}),
    ]
    members = w[w["side"] != T]
    totals = w[w["side"] == T]
    for side in LINK_SIDES:  # each weekly table adds up to its week's total
        these = members[members["side"] == side]
        if len(these):
            lines.append(pd.DataFrame({"eq": "wt" + _SEP + side + _SEP + these["week"], "name": these["name"],
                                       "coef": 1.0}))
            weeks_of = these["week"].unique()
            tot = totals[totals["week"].isin(weeks_of)]
            lines.append(pd.DataFrame({"eq": "wt" + _SEP + side + _SEP + tot["week"], "name": tot["name"],
                                       "coef": -1.0}))
    # Across tables: a key's weeks add up to its quarterly margin, the weeks' totals to the grand total.
    for side, margins in (("row", margins_r), ("col", margins_c)):
        these = members[members["side"] == side]
        lines.append(pd.DataFrame({"eq": "x" + side + _SEP + these["key"], "name": these["name"], "coef": 1.0}))
        keys = pd.Index(these["key"].unique())
        lines.append(pd.DataFrame({"eq": "x" + side + _SEP + keys, "name": margins.reindex(keys).to_numpy(),
                                   "coef": -1.0}))
    if len(totals):
        grand = q.loc[(q["row"] == T) & (q["col"] == T), "name"]
        lines.append(pd.DataFrame({"eq": "xt", "name": totals["name"], "coef": 1.0}))
        lines.append(pd.DataFrame({"eq": "xt", "name": grand.to_numpy(), "coef": -1.0}))
    equations = pd.concat(lines, ignore_index=True)
    return numbers, equations


class _EqualityLP:
    """min c.x subject to A x = b and low <= x <= high, solved for one objective after another on the same
    constraints. HiGHS keeps the model and starts each solve from the last optimal basis: the audit asks
    thousands of these per quarterly pack, and scipy's ``linprog`` rebuilt and checked the model every time
    (about 5 ms each, most of the pack's LP time; 0.3 ms here on small systems)."""

    def __init__(self, a, b: np.ndarray, low: np.ndarray, high: np.ndarray):
        import highspy

        self._highspy = highspy
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        csc = a.tocsc()
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = csc.shape[1], csc.shape[0]
        lp.col_cost_ = np.zeros(csc.shape[1])
        lp.col_lower_, lp.col_upper_ = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        lp.row_lower_ = lp.row_upper_ = np.asarray(b, dtype=float)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = csc.shape[1], csc.shape[0]
        lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = csc.indptr, csc.indices, csc.data
        self.highs.passModel(lp)
        self.columns = np.arange(csc.shape[1], dtype=np.int32)

    def minimise(self, c: np.ndarray) -> tuple[float, np.ndarray]:
        """(the smallest value of c.x, a solution reaching it)."""
        self.highs.changeColsCost(len(self.columns), self.columns, np.asarray(c, dtype=float))
        self.highs.run()
        status = self.highs.getModelStatus()
        if status != self._highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"linked suppression audit failed: {self.highs.modelStatusToString(status)}")
        return self.highs.getInfo().objective_function_value, np.asarray(self.highs.getSolution().col_value)


def _linked_pinned_positions(numbers: pd.DataFrame, equations: pd.DataFrame, probes: int):
    """The positions (in ``numbers``) of the hidden numbers an LP pins, in order, found one by one: a caller
    that needs only the first stops the search there."""
    from scipy.sparse import coo_matrix

    hidden = numbers["suppressed"].to_numpy(dtype=bool)
    if not hidden.any():
        return
    k = int(hidden.sum())
    position = pd.Series(np.where(hidden, np.cumsum(hidden) - 1, -1), index=numbers.index)
    missing = ~equations["name"].isin(numbers.index)
    if missing.any():
        raise KeyError(f"equations name numbers that are not published: {list(equations['name'][missing][:3])}")
    pos = position.reindex(equations["name"]).to_numpy()
    coef = equations["coef"].to_numpy(dtype=float)
    value = numbers["n"].reindex(equations["name"]).to_numpy(dtype=float)
    eq_codes, eq_index = pd.factorize(equations["eq"])
    known = pos < 0
    constant = np.bincount(eq_codes[known], weights=coef[known] * value[known], minlength=len(eq_index))
    a = coo_matrix((coef[~known], (eq_codes[~known], pos[~known])), shape=(len(eq_index), k)).tocsr()
    a.sum_duplicates()
    a.eliminate_zeros()
    used = np.diff(a.indptr) > 0
    if (np.abs(constant[~used]) > 0.5).any():
        raise ValueError("the published numbers do not add up: the linked tables are not from the same data")
    a, b = a[used], -constant[used]
    truth = numbers["n"].to_numpy(dtype=float)[hidden]
    low = numbers["low"].to_numpy(dtype=float)[hidden]
    high = numbers["high"].to_numpy(dtype=float)[hidden]
    # A finite cap above every true value keeps the probes bounded; it changes no answer, since a small enough
    # move along any feasible direction stays below it.
    cap = np.where(np.isinf(high), truth + float(numbers["n"].abs().sum()) + 1.0, high)
    where = np.flatnonzero(hidden)
    solve = _EqualityLP(a, b, low, cap).minimise

    def moved(x: np.ndarray) -> np.ndarray:
        # Free means a second whole number is possible. The range of values is an interval holding the true
        # (whole) value, so a solution at least 1 away proves it; a smaller move does not (these systems are
        # not all network tables: a vertex may be fractional, and [n - 0.5, n + 0.5] still pins n).
        return np.abs(x - truth) > 1.0 - 1e-6

    free = np.zeros(k, dtype=bool)
    rng = np.random.default_rng(0)
    for _ in range(probes):
        free |= moved(solve(rng.normal(size=k))[1])
    for i in range(k):
        if free[i]:
            continue
        c = np.zeros(k)
        c[i] = 1.0
        lo, smallest = solve(c)
        free |= moved(smallest)
        if free[i]:
            continue  # the smallest value is a whole number below the true one: free, no need for the largest
        minus_hi, largest = solve(-c)
        free |= moved(largest)
        hi = -minus_hi
        if math.floor(hi + 1e-6) <= math.ceil(lo - 1e-6):
            yield int(where[i])


def linked_pinned(numbers: pd.DataFrame, equations: pd.DataFrame, probes: int = LINK_PROBES) -> pd.Series:
    """Which hidden numbers of a linked system (``linked_system``) an attacker with a linear-programming solver
    pins to one whole number: the smallest and largest value consistent with every shown number, every label
    and every equation leave one whole number between them.

    Exact for the linear relaxation, which is what an attacker's LP can do; a number an LP pins is pinned for
    whole numbers too. Random objectives go first (a vertex that moves a number by 1 or more proves it free),
    then linear programs per remaining number (HiGHS): its smallest value, and its largest unless the smallest
    already proves it free. Raises ValueError when the shown numbers contradict an equation: the tables are
    not the same data.
    """
    out = pd.Series(False, index=numbers.index, name="pinned")
    found = list(_linked_pinned_positions(numbers, equations, probes))
    out.iloc[found] = True
    return out


def first_linked_pinned(numbers: pd.DataFrame, equations: pd.DataFrame, probes: int = LINK_PROBES):
    """The name of the first hidden number (in the order of ``numbers``) that ``linked_pinned`` finds pinned,
    or None; it stops searching there, which is all ``linked_suppression`` needs from each round."""
    first = next(_linked_pinned_positions(numbers, equations, probes), None)
    return None if first is None else numbers.index[first]


def linked_suppression(table: pd.DataFrame, value_col: str, row_key: str, col_key: str, weeks: pd.DataFrame,
                       threshold: int | pd.Series = PRIMARY_THRESHOLD,
                       primary: pd.Series | None = None) -> pd.DataFrame:
    """``secondary_suppression`` of a quarter's table, safe against the weekly reports of its weeks as they
    were published (``weeks``, as in ``linked_system``).

    Rule (PRIVACY.md, "Published numbers": no suppressed cell may be recoverable "from the weekly figures
    against the quarterly ones"): the quarterly total of every row key (area) and column key (category) with
    exactly one hidden week in the weekly reports is hidden too (labelled "linked"), and the grand total when
    exactly one week's total is hidden; the grid is then suppressed as usual around those cells. The weekly
    tables and the quarter are then audited together (``linked_pinned``): while any number of either is
    pinned, a quarterly cell is hidden as well (for a pinned week, the quarterly margin it adds up to; for a
    pinned quarterly cell, the smallest visible non-zero cell of its row or column) and the grid suppressed
    again. A margin over two or more hidden weeks stays shown unless the audit finds it gives one away,
    which keeps the all-categories map readable. The weekly reports are never changed: they are out already
    when the quarter is published.
    """
    T = TOTAL_KEY
    w = weeks.astype({"side": str, "key": str})
    # A quarterly margin over exactly one hidden week gives that week away at once: hide it from the start.
    # With two or more hidden weeks the margin may stay shown unless the joint audit below finds it pins one.
    per_line = w[w["suppressed"].astype(bool)].groupby(["side", "key"]).size()
    lone = per_line[per_line == 1].index
    force = {(k, T) for side, k in lone if side == "row"} | {(T, k) for side, k in lone if side == "col"}
    if any(side == T for side, _ in lone):
        force.add((T, T))
    # A margin whose weeks are all shown is public already (their sum): never hide it to protect another cell.
    shown_lines = w.groupby(["side", "key"])["suppressed"].any()
    shown_lines = shown_lines[~shown_lines.to_numpy(dtype=bool)].index
    keep = {(k, T) for side, k in shown_lines if side == "row"} | {(T, k) for side, k in shown_lines if side == "col"}
    if any(side == T for side, _ in shown_lines):
        keep.add((T, T))
    rows = set(table[row_key].astype(str))
    cols = set(table[col_key].astype(str))
    force = {(r, c) for r, c in force if (r in rows or r == T) and (c in cols or c == T)}
    while True:
        grid = secondary_suppression(table, value_col, row_key, col_key, threshold=threshold, primary=primary,
                                     force=force, keep=keep)
        numbers, equations = linked_system(grid, value_col, row_key, col_key, w)
        pinned = first_linked_pinned(numbers, equations)
        if pinned is None:
            return grid
        parts = str(pinned).split(_SEP)
        if parts[0] == "q":
            line_rows, line_cols = {parts[1]}, {parts[2]}
        elif parts[2] == "row":
            line_rows, line_cols = {parts[3]}, set()
        elif parts[2] == "col":
            line_rows, line_cols = set(), {parts[3]}
        else:  # a week's total
            line_rows, line_cols = {T}, {T}
        r, c = grid[row_key].astype(str), grid[col_key].astype(str)
        public = pd.MultiIndex.from_frame(grid[[row_key, col_key]].astype(str)).isin(
            pd.MultiIndex.from_tuples(list(keep) or [("", "")]))
        visible = ~grid["suppressed"].to_numpy(dtype=bool) & (grid[value_col].to_numpy() > 0) & ~public
        on_line = (r.isin(line_rows) | c.isin(line_cols)).to_numpy()
        is_total = grid["is_total"].to_numpy()
        # A pinned week is pinned through the quarterly margin it adds up to: hide that margin first. A pinned
        # quarterly cell is freed, as within one table, by hiding another cell of its row or column.
        margin = ((r.isin(line_rows) & (c == T)) | (c.isin(line_cols) & (r == T))).to_numpy() & is_total
        order = ((margin & visible,) if parts[0] == "w" else ()) + (on_line & visible & ~is_total, on_line & visible,
                                                                      visible)
        choice = None
        for mask in order:
            if mask.any():
                candidates = grid[mask]
                choice = candidates.index[np.argmin(candidates[value_col].to_numpy())]
                break
        if choice is None:
            raise ValueError(
                "the weekly reports give a hidden number away whatever the quarter hides: protect the weekly "
                "tables against each other (PRIVACY.md, 'Published numbers')")
        force.add((grid.at[choice, row_key], grid.at[choice, col_key]))


# --------------------------------------------------------------------------------------------------------------
# CSV exports (PRIVACY.md, "Reports and maps")
# --------------------------------------------------------------------------------------------------------------

# A spreadsheet runs a cell beginning with one of these as a formula (OWASP, "CSV Injection").
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _neutralise_strings(series: pd.Series) -> pd.Series:
    try:
        starts = series.str.startswith(CSV_FORMULA_PREFIXES)
    except AttributeError:  # an object column holding no text at all
        return series
    mask = starts.fillna(False).astype(bool).to_numpy()
    if not mask.any():
        return series
    out = series.copy()
    out[mask] = "'" + out[mask].astype(str)
    return out


def neutralise_csv_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` in which every text cell (and column name) beginning with = + - @, a tab or a
    carriage return gets a leading apostrophe, so a spreadsheet shows it as text instead of running it as a
    formula (PRIVACY.md, "Reports and maps"; OWASP, "CSV Injection"). Numbers are left alone: -3 stays a number.
    """
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            out[column] = _neutralise_strings(series)
    out.columns = [
        "'" + c if isinstance(c, str) and c.startswith(CSV_FORMULA_PREFIXES) else c for c in out.columns
    ]
    return out
