"""Writing published files so that a reader never sees half of one.

Reports and exports are mailed, archived and opened from shared folders while the pipeline may be rewriting
them (a rerun, a backfill). RELIABILITY.md: "A report or export is written to a temporary file and moved into
place, so a crash never leaves a half file and the previous version stays readable." ``os.replace`` within one
folder is atomic on POSIX and on Windows (same volume), so the temporary file lives beside its target, never in
another folder that might be another file system.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Mode for a new published file: readable by the group and others (mkstemp's 0600 would hide a report from the
# colleagues it is published to). An existing file keeps its own mode.
NEW_FILE_MODE = 0o644


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` (text is written as UTF-8, byte for byte, no newline translation) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsync'ed, and the file is renamed over
    ``path`` with ``os.replace``; the folder is fsync'ed too so that the rename survives a power cut. If anything
    fails (disk full, killed process), ``path`` still holds its previous content and the temporary file is
    removed (a killed process may leave a ``.<name>.*.tmp`` file, never a half ``<name>``). Returns ``path``.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable. Not possible (nor needed) on Windows, where directories cannot be opened."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
