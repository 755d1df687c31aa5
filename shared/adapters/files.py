"""The data directory's files (the embedded store, logs, generated keys): readable by
their owner only. A directory is made 0700 and a file 0600 when this creates it; what
exists already keeps the mode its owner gave it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path`, made (with the parents missing, each as private) if it is not there yet."""
    for missing in [*reversed(path.parents), path]:
        if not missing.is_dir():
            missing.mkdir(mode=DIR_MODE, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """`path`, made empty if it is not there yet, in a directory made if need be."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    return path


def open_private(path: Path, mode: str = "ab") -> int:
    """A descriptor of `path` opened to append (`ab`) or to write anew (`wb`), the file
    made if need be; for `open(fd, ...)` or a child process's output."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    private_dir(path.parent)
    return os.open(path, flags, FILE_MODE)


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
        return False
    finally:
        draft.unlink()
    return True
