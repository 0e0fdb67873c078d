"""Neighbour processes that make a noise condition, and killing process groups.

* ``quiet``: nothing added;
* ``steady``: one steady neighbour, a process spinning a pure-Python loop,
  pinned to core 0 (``os.sched_setaffinity``) for the whole condition;
* ``bursty``: two processes following one random schedule: idle for a random
  5-200 ms, then busy for a random 5-200 ms with one or two of them spinning,
  over and over (about 0.75 cores on average), unpinned;
* ``crowded``: every usable core taken, one spinning process pinned to each
  (two on the 2-core CI machine).

``busy`` and ``flapping`` are the earlier names of ``steady`` and ``bursty``
(:data:`ALIASES`; results files written under them still read).

Each worker runs this file as a script (``python -I noise.py MODE PARENT ...``)
in its own session, so it needs the standard library only; it exits by itself
once its parent (the benchmark) is gone.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

NOISES: Final = ("quiet", "steady", "bursty", "crowded")
ALIASES: Final = {"busy": "steady", "flapping": "bursty"}
FLAP_PHASE_S: Final = (0.005, 0.200)  # bounds of one idle or busy phase, seconds
FLAPPING_WORKERS: Final = 2
START_SETTLE_S: Final = 0.3  # how long the workers get to start before the first run


def canonical(kind: str) -> str:
    """The name of a noise kind, earlier names (:data:`ALIASES`) mapped to today's.

    Raises ``ValueError`` for an unknown kind, listing the known ones.
    """
    name = ALIASES.get(kind, kind)
    if name not in NOISES:
        raise ValueError(f"unknown noise {kind!r}; known: {', '.join(NOISES)}")
    return name


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity), or ``[0, 1, ...]`` without one."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def worker(argv: Sequence[str]) -> None:
    """Body of a noise process.

    ``argv``: ``["busy", PARENT_PID]`` spins on core 0 (``["busy", PARENT_PID,
    CORE]`` on core ``CORE``, or the first usable core if that one is not);
    ``["flap", PARENT_PID, INDEX, SEED, START]`` follows the schedule drawn from
    ``SEED`` from ``START`` (``time.monotonic()`` seconds). Returns when the
    parent is gone; raises ``SystemExit`` for an unknown mode.
    """
    mode, parent = argv[0], int(argv[1])

    def orphaned() -> bool:
        return os.getppid() != parent

    if mode == "busy":
        if hasattr(os, "sched_setaffinity"):
            allowed = usable_cores()
            core = int(argv[2]) if len(argv) > 2 else 0
            os.sched_setaffinity(0, {core if core in allowed else allowed[0]})
        x = 0
        while True:
            for _ in range(200_000):  # about 5-10 ms of pure-Python work
                x ^= 1
            if orphaned():
                return
    if mode == "flap":
        # every flapping worker computes the same schedule from the same seed and
        # start time (CLOCK_MONOTONIC is system-wide), so they switch together;
        # worker `index` spins in a busy phase when index < that phase's count
        index, seed, start = int(argv[2]), int(argv[3]), float(argv[4])
        rng = random.Random(seed)
        edge = start
        while True:
            idle = rng.uniform(*FLAP_PHASE_S)
            busy = rng.uniform(*FLAP_PHASE_S)
            count = rng.choice((1, 2))
            edge += idle
            now = time.monotonic()
            if edge > now:
                time.sleep(edge - now)
            edge += busy
            if index < count:
                while time.monotonic() < edge:
                    pass
            if orphaned():
                return
    raise SystemExit(f"unknown noise mode {mode!r}")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``proc`` leads (it was started with a new session).

    Waits up to 10 s for ``proc`` itself; a group already gone is not an error.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Noise:
    """The processes of one noise condition, each in its own process group.

    ``kind`` is one of :data:`NOISES` (or an alias); ``seed`` draws the bursty
    schedule. ``start`` raises ``ValueError`` for an unknown kind and
    ``RuntimeError`` if a worker exits at once; ``stop`` kills them all (safe to
    call twice).
    """

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = ALIASES.get(kind, kind)
        self.seed = seed
        self.procs: list[subprocess.Popen[bytes]] = []

    def _commands(self) -> list[list[str]]:
        me = str(os.getpid())
        script = [sys.executable, "-I", str(Path(__file__).resolve())]
        if self.kind == "quiet":
            return []
        if self.kind == "steady":
            return [[*script, "busy", me, "0"]]
        if self.kind == "crowded":
            return [[*script, "busy", me, str(core)] for core in usable_cores()]
        if self.kind == "bursty":
            start = f"{time.monotonic() + 0.2:.6f}"
            return [[*script, "flap", me, str(i), str(self.seed), start]
                    for i in range(FLAPPING_WORKERS)]
        raise ValueError(f"unknown noise {self.kind!r}; known: {', '.join(NOISES)}")

    def start(self) -> None:
        cmds = self._commands()
        if not cmds:
            return
        for cmd in cmds:
            self.procs.append(subprocess.Popen(cmd, start_new_session=True,
                                               stdin=subprocess.DEVNULL))
        time.sleep(START_SETTLE_S)  # let them get going
        dead = [p.args for p in self.procs if p.poll() is not None]
        if dead:
            self.stop()
            raise RuntimeError(f"noise process exited at once: {dead}")

    def pids(self) -> list[int]:
        """Process ids of the running workers (empty for ``quiet``)."""
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            kill_group(proc)
        self.procs = []

    def __enter__(self) -> Noise:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    worker(sys.argv[1:])
