"""Output checks of the command-line tools and the report: they replace only what they wrote themselves.

Each check runs before any work and raises :class:`~cpr_engine.errors.OutputError` (one line naming
the file or folder) for an output that would replace something of the user's.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import OutputError, first_few


def first_link(folder: Path) -> Path | None:
    """The first symbolic link below ``folder`` (links are not followed), or None."""
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(root, name)):
                return Path(root, name)
    return None


def check_can_write(folder: Path, flag: str) -> None:
    """Refuse (OutputError) an output folder that cannot be written: probed with a temporary file in it or, when
    it does not exist yet, in its nearest existing parent, which must be a folder."""
    existing = folder
    while not os.path.lexists(existing):
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{flag} {folder}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputError(f"{flag} {folder} cannot be written ({exc.strerror or exc})") from None


def check_tool_folder(folder: Path, marker: str, flag: str, tool: str) -> None:
    """Refuse an output folder ``tool`` may not write into: it must be new, empty, or written by an
    earlier run (it holds the regular file ``marker``), hold no symbolic link, and be writable."""
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputError(f"{flag} {folder} exists and is not a folder")
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    mark = folder / marker
    if entries and (mark.is_symlink() or not mark.is_file()):
        raise OutputError(f"{flag} {folder} holds files that {tool} did not write ({first_few(entries)}); give a new "
                          f"or empty folder, or one an earlier {tool} run wrote")
    link = first_link(folder) if entries else None
    if link:
        raise OutputError(f"{flag} {folder} holds a symbolic link that {tool} did not create: {link}; remove it or "
                          f"give another folder")
    check_can_write(folder, flag)


def check_own_file(path: Path, is_own: Callable[[Path], bool], tool: str, flag: str) -> None:
    """Refuse to replace ``path`` unless it is missing, or a regular file (not a link) that ``is_own``
    recognizes as written by ``tool``; refuse it too when its folder cannot be written."""
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file() or not is_own(path)):
        raise OutputError(f"{path} exists and was not written by {tool}; move it away or give another {flag}")
    check_can_write(path.parent, flag)


def json_has_key(key: str) -> Callable[[Path], bool]:
    """Recognizer for :func:`check_own_file`: the file parses as a JSON object that has ``key``."""
    def recognize(path: Path) -> bool:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and key in data
    return recognize


def first_line_is(line: str) -> Callable[[Path], bool]:
    """Recognizer for :func:`check_own_file`: the file's first line is exactly ``line`` (before its line end)."""
    def recognize(path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                return f.readline(len(line) + 3).rstrip(b"\r\n") == line.encode()
        except OSError:
            return False
    return recognize


def shown_name(name: str) -> str:
    """``name`` for a line of output: as it is when printable without a comma or quote, else Python's
    repr of it (quoted, control characters escaped), so that a file name cannot forge a line or a field."""
    return name if name.isprintable() and not any(c in name for c in ",'\"") else repr(name)
