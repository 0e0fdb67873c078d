"""The run history: every run appended to one store, read back as series per machine.

Pure: no pytest, no torch, no NumPy. A *run* is one results document (the one
``--hwopt-json`` writes) with when it ran, the commit and branch it measured, and the
*fingerprint* of the machine (:func:`fingerprint`): runs are only comparable with runs of the
same fingerprint.

The store is behind :class:`HistoryStore` (append a run, read runs and series), so another
database can stand behind it later; :class:`SqliteStore` is the one there is: a single SQLite
file (the standard library's ``sqlite3``, nothing to start). Its tables:

``machines(fingerprint, description)``
    one row per fingerprint; ``description`` is the JSON of what it was made from.
``runs(id, recorded_at, commit_sha, branch, fingerprint, hostname, source, environment)``
    ``recorded_at`` is ISO 8601 UTC; ``source`` says where the run came from (``pytest``
    or the file added with ``pytest-hwopt history --add``).
``results(run_id, test, variant, reference, median_ms, mean_ms, p95_ms, min_ms, iqr_ms,
disturbed_fraction, samples, summary)``
    per test and variant the summary statistics, the raw per-call ``samples`` (ms, JSON) and
    the whole result row without its per-call sample lists (``summary``, JSON; its
    ``rounds_ms`` and ``rounds_disturbed``, one value per interleaved round, give the
    within-run ratio round by round: :func:`paired_ratio`); ``reference`` is the
    variant this one is compared with inside the run (a speedup check's ``vs``, a model
    candidate's eager reference, or for such a reference its first candidate), if any.
``checks(run_id, test, kind, variant, vs, status, measured, low, high, budget, unit, record)``
    every check, ``record`` being the whole check (JSON).

Writing is one transaction (``BEGIN IMMEDIATE``): an interrupted append leaves the store as
it was, and appenders in several processes (xdist, a CI matrix on one runner) wait for each
other (busy timeout :data:`BUSY_TIMEOUT_S`) rather than lose a run. A file that is not a
store of ours (another SQLite database, a damaged or non-SQLite file) is a
:class:`HistoryError` naming it, and is never written to.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Final, Protocol

#: ``PRAGMA application_id`` of a history store: "hwop" in ASCII
APPLICATION_ID: Final = 0x68776F70
#: ``PRAGMA user_version``: the store's schema; raised when a table changes
SCHEMA_VERSION: Final = 1
#: seconds an appender waits for another one to finish before giving up
BUSY_TIMEOUT_S: Final = 60.0

#: environment entries that make a machine fingerprint (see :func:`fingerprint`)
FINGERPRINT_KEYS: Final = ("machine", "cpu", "cpu_flags", "device", "device_name", "gpu",
                           "driver", "cuda", "cudnn", "python", "threads")
#: library versions left out of the fingerprint: they do not change timings
UNTIMED_LIBRARIES: Final = frozenset({"pytest"})

#: CI variables holding the commit and the branch, in the order they are looked for
COMMIT_VARIABLES: Final = ("GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT", "CIRCLE_SHA1",
                           "BITBUCKET_COMMIT", "GIT_COMMIT", "BUILD_SOURCEVERSION")
BRANCH_VARIABLES: Final = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME",
                           "BUILDKITE_BRANCH", "CIRCLE_BRANCH", "BITBUCKET_BRANCH",
                           "GIT_BRANCH", "BUILD_SOURCEBRANCHNAME")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS machines (
    fingerprint TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_at TEXT NOT NULL,
    commit_sha TEXT,
    branch TEXT,
    fingerprint TEXT NOT NULL REFERENCES machines(fingerprint),
    hostname TEXT,
    source TEXT NOT NULL,
    environment TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    test TEXT NOT NULL,
    variant TEXT NOT NULL,
    reference TEXT,
    median_ms REAL NOT NULL,
    mean_ms REAL,
    p95_ms REAL,
    min_ms REAL,
    iqr_ms REAL,
    disturbed_fraction REAL,
    samples TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (run_id, test, variant)
);
CREATE TABLE IF NOT EXISTS checks (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    test TEXT NOT NULL,
    kind TEXT NOT NULL,
    variant TEXT,
    vs TEXT,
    status TEXT,
    measured REAL,
    low REAL,
    high REAL,
    budget REAL,
    unit TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_test ON results(test, variant);
CREATE INDEX IF NOT EXISTS runs_by_machine ON runs(fingerprint, recorded_at);
"""


class HistoryError(ValueError):
    """A store or an input that cannot be used; the message names the file."""


# ---- what a run records -------------------------------------------------------------------

@dataclass(frozen=True)
class Revision:
    """The code a run measured: commit and branch, ``None`` where unknown."""

    commit: str | None = None
    branch: str | None = None


def revision(environ: Mapping[str, str], cwd: str | Path | None = None) -> Revision:
    """The commit and branch from the CI's variables (:data:`COMMIT_VARIABLES`,
    :data:`BRANCH_VARIABLES`), else from ``git`` in ``cwd`` (2 s at most); ``None`` for what
    neither says (no git, not a repository, a detached head has no branch)."""
    commit = next((environ[k] for k in COMMIT_VARIABLES if environ.get(k)), None)
    branch = next((environ[k] for k in BRANCH_VARIABLES if environ.get(k)), None)
    if commit is None:
        commit = _git(cwd, "rev-parse", "HEAD")
    if branch is None:
        found = _git(cwd, "rev-parse", "--abbrev-ref", "HEAD")
        branch = found if found and found != "HEAD" else None
    return Revision(commit, branch)


def _git(cwd: str | Path | None, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=2.0, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def fingerprint(environment: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(id, description)`` of the machine an environment describes.

    The description holds the entries of :data:`FINGERPRINT_KEYS` the environment has (CPU
    model and flags, architecture, device, GPU name, driver, CUDA and cuDNN versions, Python,
    thread count) and the library versions (``versions``, less :data:`UNTIMED_LIBRARIES`);
    the host name is not in it, so identical CI runners share a fingerprint. The id is the
    first 12 hex digits of the SHA-256 of the description's canonical JSON.
    """
    description: dict[str, Any] = {}
    for key in FINGERPRINT_KEYS:
        value = environment.get(key)
        if value is None:
            continue
        description[key] = sorted(value) if key == "cpu_flags" and isinstance(
            value, list) else value
    versions = environment.get("versions")
    if isinstance(versions, Mapping):
        description["versions"] = {k: v for k, v in sorted(versions.items())
                                   if k not in UNTIMED_LIBRARIES}
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12], description


def machine_label(fingerprint_id: str, description: Mapping[str, Any]) -> str:
    """``3f2a9c1b0d4e (AMD EPYC 7B13, 2 threads)``: the id with the device and threads."""
    device = description.get("gpu") or description.get("device_name") or description.get(
        "cpu") or "unknown device"
    threads = description.get("threads")
    more = f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else ""
    return f"{fingerprint_id} ({device}{more})"


def references(document: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """``(test, variant) -> reference``: the variant each one is compared with inside its run
    (:func:`pair_references` of the results' ``reference`` and the speedup checks)."""
    pairs = [(str(c.get("test", "")), c["variant"], c["vs"])
             for c in document.get("checks") or []
             if c.get("kind") == "speedup" and c.get("vs") and c.get("variant")]
    pairs += [(r["test"], r["variant"], r["reference"]) for r in document.get("results") or []
              if r.get("reference") and r["reference"] != r.get("variant")]
    return pair_references(pairs)


def pair_references(pairs: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    """``(test, variant) -> reference`` from ``(test, candidate, reference)`` pairs (a
    speedup check's variant and ``vs``, a model candidate and its eager run): a candidate's
    reference, and for a reference variant its first candidate, so that a machine slower for
    both sides leaves each side's ratio unchanged. Variants in no pair are absent."""
    out: dict[tuple[str, str], str] = {}
    pairs = list(pairs)
    for test, candidate, reference in pairs:
        out.setdefault((test, candidate), reference)
    for test, candidate, reference in pairs:
        out.setdefault((test, reference), candidate)
    return out


@dataclass(frozen=True)
class Run:
    """One run to append: its document's results and checks with when, what and where."""

    recorded_at: str  # ISO 8601, UTC
    revision: Revision
    fingerprint: str
    machine: dict[str, Any]  # the fingerprint's description
    hostname: str | None
    source: str  # "pytest", or the file it was added from
    environment: dict[str, Any]
    results: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    references: dict[tuple[str, str], str] = field(default_factory=dict)


def now_utc() -> str:
    """The current time as ISO 8601 UTC, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def run_of(document: Mapping[str, Any], *, source: str, recorded_at: str | None = None,
           rev: Revision | None = None, environment: Mapping[str, Any] | None = None) -> Run:
    """A :class:`Run` of a results document.

    ``recorded_at`` and ``rev`` default to the document's ``revision`` entry (written by
    every run since the history exists), then to now and unknown; ``environment`` to the
    document's (pass the one with the device resolved where the document's lacks it).
    HistoryError for a result without samples or a median.
    """
    env = dict(environment if environment is not None else document.get("environment") or {})
    kept = document.get("revision") if isinstance(document.get("revision"), Mapping) else {}
    assert isinstance(kept, Mapping)
    if rev is None:
        rev = Revision(kept.get("commit"), kept.get("branch"))
    when = recorded_at or kept.get("time") or now_utc()
    fid, description = fingerprint(env)
    results = [dict(r) for r in document.get("results") or []]
    for n, row in enumerate(results):
        median = row.get("median_ms")
        if not isinstance(median, (int, float)) or not math.isfinite(median) or median <= 0:
            raise HistoryError(f"{source}: results[{n}] ({row.get('test')} "
                               f"{row.get('variant')}) has no positive median_ms")
    return Run(recorded_at=str(when), revision=rev, fingerprint=fid, machine=description,
               hostname=env.get("hostname"), source=source, environment=env,
               results=results, checks=[dict(c) for c in document.get("checks") or []],
               references=references(document))


# ---- reading back -------------------------------------------------------------------------

@dataclass(frozen=True)
class RunInfo:
    """A stored run, without its results."""

    id: int
    recorded_at: str
    commit: str | None
    branch: str | None
    fingerprint: str
    hostname: str | None
    source: str


@dataclass(frozen=True)
class Point:
    """One variant's result in one stored run: a point of its series."""

    run: RunInfo
    test: str
    variant: str
    reference: str | None
    median_ms: float
    samples: tuple[float, ...]
    #: the run's per-round values (ms) and which rounds held a disturbed sample; empty for
    #: runs stored before rounds were kept, and for results without rounds
    rounds_ms: tuple[float, ...] = ()
    rounds_disturbed: tuple[bool, ...] = ()


class HistoryStore(Protocol):
    """What the plugin and the command need from a history store. :class:`SqliteStore` is
    the one implementation; a server database would be another."""

    name: str

    def append(self, run: Run) -> int:
        """Store ``run`` in one transaction; its id. Nothing is stored when this raises."""
        ...

    def machines(self) -> dict[str, dict[str, Any]]:
        """fingerprint -> description, of every machine with a stored run."""
        ...

    def runs(self) -> list[RunInfo]:
        """Every stored run, oldest first."""
        ...

    def points(self, fingerprint: str | None = None, test: str | None = None
               ) -> list[Point]:
        """Every stored result, oldest run first; only one machine's (``fingerprint``) and
        tests matching ``test`` (a pattern with ``*`` and ``?``, else a substring)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> HistoryStore: ...

    def __exit__(self, *exc: object) -> None: ...


def matches(pattern: str | None, test: str) -> bool:
    """``--test PATTERN``: ``*``/``?`` wildcards on the node id, or a substring of it."""
    if not pattern:
        return True
    if any(c in pattern for c in "*?"):
        return fnmatchcase(test, pattern)
    return pattern in test


def open_store(path: str | Path, *, create: bool = True) -> HistoryStore:
    """The store at ``path`` (an SQLite file; made when missing and ``create``).

    HistoryError, naming the file, for a file that is not a pytest-hwopt history store
    (another SQLite database, not SQLite at all, damaged, or of a newer schema), for a
    missing one when not ``create``, or one that cannot be opened.
    """
    return SqliteStore(path, create=create)


class SqliteStore:
    """A :class:`HistoryStore` in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.name = str(path)
        if self.path.is_dir():
            raise HistoryError(f"{self.name}: is a directory; give a file such as "
                               "history.sqlite")
        if not create and not self.path.exists():
            raise HistoryError(f"{self.name}: no such history store")
        existed = self.path.exists() and self.path.stat().st_size > 0
        if not existed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: transactions are begun and ended here, explicitly
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise HistoryError(f"{self.name}: cannot open the history store: {exc}") from None
        try:
            self._check_or_create()
        except BaseException:
            self._db.close()
            raise

    def _fail(self, exc: sqlite3.Error) -> HistoryError:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return HistoryError(f"{self.name}: the history store stayed locked by another "
                                f"process for {BUSY_TIMEOUT_S:.0f} s: {exc}")
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
                exc, sqlite3.OperationalError):
            return HistoryError(f"{self.name}: not a pytest-hwopt history store: not an "
                                f"SQLite database, or a damaged one ({exc}); it was left as "
                                "it is")
        return HistoryError(f"{self.name}: history store error: {exc}")

    def _check_or_create(self) -> None:
        try:
            app = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = [r[0] for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        except sqlite3.Error as exc:
            raise self._fail(exc) from None
        if app == 0 and not tables:
            self._create()
            return
        if app != APPLICATION_ID:
            listed = ", ".join(tables[:8]) + (", ..." if len(tables) > 8 else "")
            raise HistoryError(f"{self.name}: not a pytest-hwopt history store: another "
                               f"SQLite database (tables: {listed or 'none'}); it was left "
                               "as it is")
        if version > SCHEMA_VERSION:
            raise HistoryError(f"{self.name}: a history store of schema {version}, written by "
                               f"a newer pytest-hwopt (this one reads schema "
                               f"{SCHEMA_VERSION}); upgrade pytest-hwopt")

    def _create(self) -> None:
        with self._transaction():
            # another process may have made it while this one waited for the lock
            app = self._db.execute("PRAGMA application_id").fetchone()[0]
            if app == APPLICATION_ID:
                return
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    class _Tx:
        def __init__(self, store: SqliteStore) -> None:
            self.store = store

        def __enter__(self) -> None:
            try:
                # IMMEDIATE: take the write lock now, so concurrent appenders queue here
                self.store._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self.store._fail(exc) from None

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
            db = self.store._db
            if kind is None:
                try:
                    db.execute("COMMIT")
                except sqlite3.Error as err:
                    db.execute("ROLLBACK")
                    raise self.store._fail(err) from None
                return
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.store._fail(exc) from None

    def _transaction(self) -> SqliteStore._Tx:
        return SqliteStore._Tx(self)

    def append(self, run: Run) -> int:
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO machines VALUES (?, ?)",
                             (run.fingerprint, _json(run.machine)))
            cursor = self._db.execute(
                "INSERT INTO runs (recorded_at, commit_sha, branch, fingerprint, hostname, "
                "source, environment) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run.recorded_at, run.revision.commit, run.revision.branch, run.fingerprint,
                 run.hostname, run.source, _json(run.environment)))
            run_id = cursor.lastrowid
            assert run_id is not None
            self._db.executemany(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _result_rows(run_id, run))
            self._db.executemany(
                "INSERT INTO checks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _check_rows(run_id, run.checks))
        return int(run_id)

    def machines(self) -> dict[str, dict[str, Any]]:
        rows = self._read("SELECT fingerprint, description FROM machines")
        return {fid: json.loads(text) for fid, text in rows}

    def runs(self) -> list[RunInfo]:
        return [RunInfo(*row) for row in self._read(
            "SELECT id, recorded_at, commit_sha, branch, fingerprint, hostname, source "
            "FROM runs ORDER BY recorded_at, id")]

    def points(self, fingerprint: str | None = None, test: str | None = None
               ) -> list[Point]:
        query = ("SELECT r.id, r.recorded_at, r.commit_sha, r.branch, r.fingerprint, "
                 "r.hostname, r.source, x.test, x.variant, x.reference, x.median_ms, "
                 "x.samples, x.summary FROM results x JOIN runs r ON r.id = x.run_id")
        args: tuple[str, ...] = ()
        if fingerprint is not None:
            query += " WHERE r.fingerprint = ?"
            args = (fingerprint,)
        query += " ORDER BY r.recorded_at, r.id"
        out = []
        for row in self._read(query, args):
            if not matches(test, row[7]):
                continue
            rounds, flags = _rounds(row[12])
            out.append(Point(RunInfo(*row[:7]), row[7], row[8], row[9], float(row[10]),
                             tuple(json.loads(row[11])), rounds, flags))
        return out

    def _read(self, query: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            with closing(self._db.execute(query, tuple(args))) as cursor:
                return list(cursor.fetchall())
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rounds(summary: str) -> tuple[tuple[float, ...], tuple[bool, ...]]:
    """A stored row's per-round values and flags; empty where it has none (or bad ones)."""
    try:
        row = json.loads(summary)
    except ValueError:
        return (), ()
    rounds = row.get("rounds_ms") if isinstance(row, dict) else None
    if not isinstance(rounds, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in rounds):
        return (), ()
    flags = row.get("rounds_disturbed")
    kept = (tuple(bool(f) for f in flags) if isinstance(flags, list)
            and len(flags) == len(rounds) else ())
    return tuple(float(v) for v in rounds), kept


def clean_rounds(rounds: Sequence[float], disturbed: Sequence[bool] = ()) -> list[float]:
    """The rounds without a disturbed sample (``disturbed[k]``; a missing flag is clean), or
    all of them when none is clean."""
    clean = [v for k, v in enumerate(rounds) if not (k < len(disturbed) and disturbed[k])]
    return clean or list(rounds)


def paired_ratio(rounds: Sequence[float], reference_rounds: Sequence[float],
                 disturbed: Sequence[bool] = (), reference_disturbed: Sequence[bool] = ()
                 ) -> tuple[float, float] | None:
    """A variant's within-run ratio to its reference, round by round: ``(median of the
    per-round ratios, its standard error on the log scale)``, over the rounds where both
    have a positive value and neither a disturbed sample (all rounds when that leaves fewer
    than :data:`PAIRED_MIN_ROUNDS`). None when the two have no rounds of equal count, or
    fewer than :data:`PAIRED_MIN_ROUNDS` usable ones: then the ratio of medians stands.

    Each round measures every variant side by side, so a change of the machine's speed
    during the run moves both values of a round; the ratio of the two medians, each over
    the whole run, does not cancel such a change when it falls between them (a step in
    speed half-way through the rounds reads as a 10% move of a 3x pair). The error is
    :func:`pytest_hwopt.results.changepoints.log_se` of the per-round ratios."""
    from pytest_hwopt.results.changepoints import log_se

    n = len(rounds)
    if n == 0 or n != len(reference_rounds):
        return None
    usable = [k for k in range(n) if rounds[k] > 0 and reference_rounds[k] > 0
              and math.isfinite(rounds[k]) and math.isfinite(reference_rounds[k])]
    flags = [bool(disturbed[k]) if k < len(disturbed) else False for k in range(n)]
    ref_flags = [bool(reference_disturbed[k]) if k < len(reference_disturbed) else False
                 for k in range(n)]
    clean = [k for k in usable if not (flags[k] or ref_flags[k])]
    picked = clean if len(clean) >= PAIRED_MIN_ROUNDS else usable
    if len(picked) < PAIRED_MIN_ROUNDS:
        return None
    ratios = sorted(rounds[k] / reference_rounds[k] for k in picked)
    mid = len(ratios) // 2
    value = ratios[mid] if len(ratios) % 2 else math.sqrt(ratios[mid - 1] * ratios[mid])
    return value, log_se(ratios)


#: the fewest paired rounds a within-run ratio is read from (else the ratio of medians)
PAIRED_MIN_ROUNDS: Final = 3


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


#: per-call lists kept out of ``summary`` (``samples`` has a column of its own); the per-round
#: ``rounds_ms`` and ``rounds_disturbed`` stay in it (a few hundred values at most)
_SAMPLE_LISTS: Final = ("samples", "disturbed")


def _result_rows(run_id: int, run: Run) -> Iterator[tuple[object, ...]]:
    for row in run.results:
        test, variant = row["test"], row["variant"]
        if row.get("median_ms") is None:
            continue  # a serve variant none of whose requests completed: no figure
        yield (run_id, test, variant, run.references.get((test, variant)),
               float(row["median_ms"]), row.get("mean_ms"), row.get("p95_ms"),
               row.get("min_ms"), row.get("iqr_ms"), row.get("disturbed_fraction"),
               _json([float(s) for s in row.get("samples") or []]),
               _json({k: v for k, v in row.items() if k not in _SAMPLE_LISTS}))


def _check_rows(run_id: int, checks: Iterable[Mapping[str, Any]]
                ) -> Iterator[tuple[object, ...]]:
    for c in checks:
        yield (run_id, str(c.get("test", "")), str(c.get("kind", "")), c.get("variant"),
               c.get("vs"), c.get("status"), _number(c.get("measured")),
               _number(c.get("low")), _number(c.get("high")), _number(c.get("budget")),
               c.get("unit"), _json(c))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None

