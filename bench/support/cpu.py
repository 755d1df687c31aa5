"""CPU time of processes, read from /proc/<pid>/stat: utime + stime, in milliseconds.

A snapshot is taken at the start and at the end of a measured phase; the difference is
the CPU a process (and the processes it spawned) used in between. Linux only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def _fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _ticks(pid: int, waited_children: bool) -> int:
    # From field 3 (state) on: utime is field 14, stime 15, cutime 16, cstime 17.
    fields = _fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if waited_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def _parents() -> dict[int, int]:
    """Every live process's parent."""
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int(_fields(int(entry.name))[1])
    return parents


def _descendants(pid: int, parents: Mapping[int, int]) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def process_ms(pid: int, *, children: bool = True) -> float:
    """`pid`'s CPU so far; with `children`, plus its live descendants' and the exited
    children it waited for (the kernel's cutime and cstime)."""
    ticks = _ticks(pid, children)
    if children:
        for child in _descendants(pid, _parents()):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ticks += _ticks(child, True)
    return ticks * TICK_MS


@dataclass(frozen=True)
class Watched:
    """A process whose CPU a phase reports, by the name it is reported under."""

    name: str
    pid: int
    children: bool = True


def snapshot(watched: Iterable[Watched]) -> dict[str, float]:
    """Each watched process's CPU so far (one that is gone reads as nothing)."""
    taken = {}
    for process in watched:
        with contextlib.suppress(OSError):
            taken[process.name] = process_ms(process.pid, children=process.children)
    return taken


def used(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU milliseconds each process used between two snapshots."""
    return {name: after[name] - before[name] for name in before if name in after}


def rabbitmq_pid() -> int | None:
    """The local broker's Erlang VM (beam.smp): as `rabbitmqctl status` names it, else the
    one /proc shows running the `rabbit` application."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError, KeyError):
        status = subprocess.run(
            ["rabbitmqctl", "-q", "status", "--formatter", "json"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return int(json.loads(status.stdout)["pid"])
    for pid, argv in _command_lines():
        if argv and argv[0].endswith("beam.smp") and "rabbit" in argv and "-s" in argv:
            return pid
    return None


def server_pid(port: int) -> int | None:
    """A local store server started with `--port <port>`: a SecantusDB or a mongod."""
    for pid, argv in _command_lines():
        named = any(a.endswith("mongod") or a == "secantus" for a in argv[:3])
        if named and any(a == "--port" and b == str(port) for a, b in itertools.pairwise(argv)):
            return pid
    return None


def _command_lines() -> Iterable[tuple[int, list[str]]]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                raw = (entry / "cmdline").read_bytes()
                yield int(entry.name), raw.decode(errors="replace").split("\0")[:-1]
