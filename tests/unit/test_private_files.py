"""The data directory and its files are owner-only whenever a service uses them, not only
when it made them: one left open to others (0755, 0644) is tightened, if it is ours."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.adapters import files
from shared.adapters.files import create_private, open_private, private_dir, private_file
from shared.adapters.sqlite.schema import connect
from shared.runtime import startup
from shared.runtime.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def made(path: Path, permissions: int, *, directory: bool = False) -> Path:
    """`path` as an earlier release, or its owner, left it."""
    if directory:
        path.mkdir()
    else:
        path.write_text("kept")
    os.chmod(path, permissions)
    return path


def test_an_existing_directory_open_to_others_is_tightened_and_its_parents_left(
    tmp_path: Path,
) -> None:
    parent = made(tmp_path / "home", 0o755, directory=True)
    data = made(parent / "data", 0o775, directory=True)
    assert private_dir(data) == data
    assert (mode(parent), mode(data)) == (0o755, 0o700)
    strict = made(parent / "strict", 0o500, directory=True)
    private_dir(strict)
    assert mode(strict) == 0o500  # nothing granted beyond owner-only: kept


def test_existing_files_open_to_others_are_tightened_wherever_they_are_used(
    tmp_path: Path,
) -> None:
    data = made(tmp_path / "data", 0o755, directory=True)
    store = made(data / "store", 0o644)
    log = made(data / "intake.log", 0o666)
    key = made(data / "key", 0o640)

    private_file(store)
    with open(open_private(log), "ab") as out:
        out.write(b"started\n")
    assert not create_private(key, "another")

    assert [mode(p) for p in (data, store, log, key)] == [0o700, 0o600, 0o600, 0o600]
    assert (store.read_text(), key.read_text()) == ("kept", "kept")


def test_anothers_file_is_left_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = made(tmp_path / "theirs", 0o644)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(theirs).st_uid + 1)
    files.tighten(theirs, files.FILE_MODE)
    private_file(theirs)
    assert mode(theirs) == 0o644


def test_the_embedded_store_tightens_its_file_and_its_wal_and_shared_memory_files(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    path = data / "redeem.sqlite3"
    first = connect(path)  # open, it keeps the WAL and shared-memory files
    first.execute("CREATE TABLE t (x)")
    kept = [path, data / f"{path.name}-wal", data / f"{path.name}-shm"]
    for loose in (data, *kept):
        os.chmod(loose, 0o755 if loose == data else 0o644)

    second = connect(path)
    try:
        assert (mode(data), [mode(p) for p in kept]) == (0o700, [0o600] * 3)
    finally:
        second.close()
        first.close()


def test_a_generated_secret_kept_open_to_others_is_tightened_at_start(tmp_path: Path) -> None:
    data = made(tmp_path / "data", 0o755, directory=True)
    kept = made(data / startup.REDEMPTION_ID_SECRET_FILE, 0o644)
    kept.write_text("an-old-secret-of-thirty-two-characters\n")

    settings = startup.with_redemption_id_secret(Settings(data_dir=data))

    assert settings.redemption_id_secret == "an-old-secret-of-thirty-two-characters"
    assert (mode(data), mode(kept)) == (0o700, 0o600)
