"""The data directory's files (the embedded store, logs, generated keys): readable by
their owner only. A directory is made 0700 and a file 0600 when this creates it; one
that exists already, when it is ours, loses what it grants beyond that when this uses
it (a directory this only passes through, a parent, is left as it is)."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path`, made (with the parents missing, each as private) if it is not there yet,
    else tightened (`tighten`)."""
    for missing in [*reversed(path.parents), path]:
        if not missing.is_dir():
            missing.mkdir(mode=DIR_MODE, exist_ok=True)
    tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """`path`, made empty if it is not there yet (else tightened), in a directory made if
    need be."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        _tighten(os.fstat(fd), FILE_MODE, lambda tight: os.fchmod(fd, tight))
    finally:
        os.close(fd)
    return path


def open_private(path: Path, mode: str = "ab") -> int:
    """A descriptor of `path` opened to append (`ab`) or to write anew (`wb`), the file
    made if need be (else tightened); for `open(fd, ...)` or a child process's output."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    private_dir(path.parent)
    fd = os.open(path, flags, FILE_MODE)
    try:
        _tighten(os.fstat(fd), FILE_MODE, lambda tight: os.fchmod(fd, tight))
    except BaseException:
        os.close(fd)
        raise
    return fd


def tighten(path: Path, mode: int) -> None:
    """Take from `path`, if it exists and is ours, what it grants beyond `mode` (0755 to
    0700, 0644 to 0600); one that grants less keeps it, another user's is left alone."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return
    _tighten(found, mode, lambda tight: os.chmod(path, tight))


def write_private(path: Path, text: str) -> None:
    """`text` as the whole of `path`."""
    with open(open_private(path, "wb"), "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def create_private(path: Path, text: str) -> bool:
    """Write `text` to `path` unless it exists; whether this made it. Whoever reads
    `path` finds all of `text` or no file, however many processes race to make it."""
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    write_private(draft, text)
    try:
        os.link(draft, path)
    except FileExistsError:
        tighten(path, FILE_MODE)
        return False
    finally:
        draft.unlink()
    return True


def _tighten(found: os.stat_result, mode: int, chmod: Callable[[int], None]) -> None:
    granted = stat.S_IMODE(found.st_mode)
    if granted & ~mode and found.st_uid == os.geteuid():
        chmod(granted & mode)
