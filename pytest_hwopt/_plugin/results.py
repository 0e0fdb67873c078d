"""Results a team keeps: budgets per machine, saved baselines, regressions, pytest-benchmark JSON.

Registered in ``pytest_configure`` as ``"hwopt-results"``; its options are registered with
the others in :mod:`pytest_hwopt._plugin.options`.

Options:

``--hwopt-budgets=PATH`` (ini ``hwopt_budgets``)
    a TOML budgets file (see :mod:`pytest_hwopt.core.budgetfile`); without it the
    ``[[tool.hwopt.budget]]`` tables of the rootdir's ``pyproject.toml`` are used.
``--hwopt-save=NAME``
    save this run's document (raw samples included) as
    ``<rootdir>/.hwopt/<machine-key>/NNNN_NAME.json``; a path ending in ``.json``
    is written as given, and refused if it exists unless ``--hwopt-save-overwrite``.
``--hwopt-compare=NAME|NNNN|PATH``
    compare with the latest run saved as NAME on this machine, the run numbered
    NNNN, or a JSON file: a significant regression beyond ``--hwopt-max-regression``
    (ini ``hwopt_max_regression``, default 10%) fails that test.
``--hwopt-benchmark-json=PATH``
    also write the results in pytest-benchmark's JSON format.

With a baseline, the session's document gets ``environment.baseline_mismatch`` (what
differs from the baseline's environment) and ``baseline`` (file, threshold, counts and
one row per variant); ``--hwopt-json`` is written again to include them, since the main
plugin writes it before ``pytest_hwopt_session_results`` runs.

Loading this module imports neither torch nor NumPy.
"""

from __future__ import annotations

import platform
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from pytest_hwopt._plugin.history import (
    COMPARE_VALUE,
    SessionHistory,
    revision_entry,
    session_history,
)
from pytest_hwopt._plugin.options import ini as _ini
from pytest_hwopt._plugin.options import output_path
from pytest_hwopt._plugin.state import State, state_of, xdist_worker
from pytest_hwopt.core.settings import DEFAULT_MAX_REGRESSION

if TYPE_CHECKING:
    from pytest_hwopt.results.schema import Environment, ResultsDocument


class _OnFirstUse:
    """A module imported when one of its names is first used: loading the plugin stays cheap
    for runs that keep no baseline and read no budgets file."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(import_module(self._name, __package__), attr)


baseline: Any = _OnFirstUse("pytest_hwopt.results.baseline")
budgetfile: Any = _OnFirstUse("pytest_hwopt.core.budgetfile")


class ResultsPlugin:
    """Hook implementations for budgets files, baselines and pytest-benchmark JSON."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.entries: list[budgetfile.BudgetEntry] = []
        self.budgets_source: Path | None = None
        self.baseline: dict[str, Any] | None = None
        self.baseline_path: Path | None = None
        self.baseline_index: dict[str, dict[str, list[float]]] = {}
        self.rows: list[baseline.Row] = []
        self.mismatch: list[str] = []
        self.save_name: str | None = None
        self.save_path: Path | None = None
        self.saved: Path | None = None
        self.html: Path | None = None
        self.html_path: Path | None = None  # --hwopt-html, checked at start
        self.benchmark_json: Path | None = None
        self.notes: list[str] = []
        self._compared = False
        self._worker = xdist_worker(config) is not None

        raw = self._option("hwopt_max_regression") or _ini(config, "hwopt_max_regression")
        try:
            self.max_regression = baseline.parse_threshold(raw) if raw else DEFAULT_MAX_REGRESSION
        except ValueError as exc:
            raise pytest.UsageError(f"--hwopt-max-regression={raw}: {exc}") from None
        self._load_budgets()
        self._check_save()
        self.history: SessionHistory | None = session_history(config,
                                                              self._option("hwopt_compare"))
        self._load_baseline()
        # every output asked for can be written, or the run ends now (exit 4) saying why
        out = self._option("hwopt_benchmark_json")
        if out:
            self.benchmark_json = output_path(config, "--hwopt-benchmark-json", out,
                                              "benchmarks.json")
        html = self._option("hwopt_html")
        if html:
            self.html_path = output_path(config, "--hwopt-html", html, "report.html")

    # ---- configuration ---------------------------------------------------------------

    def _option(self, name: str) -> Any:
        return self.config.getoption(name, None)

    def _here(self, value: str) -> Path:
        """A path given on the command line, relative to the invocation directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.config.invocation_params.dir / path

    def _load_budgets(self) -> None:
        given = self._option("hwopt_budgets")
        try:
            if given:
                self.budgets_source = self._here(given)
                self.entries = budgetfile.load(self.budgets_source)
                return
            ini = _ini(self.config, "hwopt_budgets")
            if ini:
                base = (self.config.inipath.parent if self.config.inipath
                        else self.config.rootpath)
                self.budgets_source = base / ini
                self.entries = budgetfile.load(self.budgets_source)
                return
            pyproject = self.config.rootpath / "pyproject.toml"
            if pyproject.is_file():
                self.entries = budgetfile.load_pyproject(pyproject)
                if self.entries:
                    self.budgets_source = pyproject
        except budgetfile.BudgetFileError as exc:
            where = f"--hwopt-budgets={given}: " if given else ""
            raise pytest.UsageError(f"{where}{exc}") from None

    def _check_save(self) -> None:
        name = self._option("hwopt_save")
        if not name:
            return
        if baseline.is_path_like(name):
            path = self._here(name)
            if path.is_dir():
                raise pytest.UsageError(f"--hwopt-save={name}: is a directory; give a name "
                                        "or a file path ending in .json")
            output_path(self.config, "--hwopt-save", name, "run.json")
            if path.exists() and not self._option("hwopt_save_overwrite"):
                raise pytest.UsageError(f"--hwopt-save={name}: {path} exists; pass "
                                        "--hwopt-save-overwrite to replace it")
            self.save_path = path
            return
        try:
            baseline.check_name(name)
        except ValueError as exc:
            raise pytest.UsageError(f"--hwopt-save={name}: {exc}") from None
        # saved under <rootdir>/.hwopt/<machine>/: that folder must be one we can write
        output_path(self.config, "--hwopt-save", name, "run.json",
                    target=self.config.rootpath / baseline.SAVE_DIR / "machine" / "run.json")
        self.save_name = name

    def _load_baseline(self) -> None:
        value = self._option("hwopt_compare")
        if not value or value == COMPARE_VALUE:  # history: judged by self.history
            return
        candidate = self._here(value)
        if baseline.is_path_like(value) or candidate.is_file():
            path = candidate
        else:
            directory = self.saved_directory()
            found = baseline.find_saved(directory, value)
            if found is None:
                runs = baseline.saved_runs(directory)
                listed = (", ".join(p.name for _, _, p in runs[-10:]) if runs
                          else "none; save one with --hwopt-save=NAME")
                raise pytest.UsageError(f"--hwopt-compare={value}: no run saved as {value!r} "
                                        f"for this machine in {directory}; saved: {listed}")
            path = found
        try:
            self.baseline = baseline.load_document(path)
        except baseline.BaselineError as exc:
            raise pytest.UsageError(f"--hwopt-compare={value}: {exc}") from None
        self.baseline_path = path
        self.baseline_index = baseline.samples_by_test(self.baseline)

    def _state(self) -> State:
        return state_of(self.config)

    def _device(self) -> Any:
        from pytest_hwopt.hardware.devices import DeviceError

        state = self._state()
        try:
            return state.device()
        except DeviceError as exc:
            raise pytest.UsageError(f"--hwopt-device={state.settings.device}: {exc}") from None

    def machine_key(self) -> str:
        """``<host>-<device name>`` of this run (the device is resolved if need be)."""
        return baseline.machine_key(platform.node(), self._device().name)

    def saved_directory(self) -> Path:
        return self.config.rootpath / baseline.SAVE_DIR / self.machine_key()

    # ---- hooks -----------------------------------------------------------------------

    def pytest_hwopt_budgets(self, item: pytest.Item, specs: list[Any]) -> None:
        if not self.entries:
            return
        from pytest_hwopt._plugin.collection import base_nodeid

        matching = budgetfile.select(self.entries, item.nodeid, base_nodeid(item))
        if not matching:
            return
        keys = (self._device().budget_keys() if budgetfile.needs_device(matching) else [])
        names = getattr(item, "fixturenames", ())
        measures = "hwopt_bench" in names or "benchmark" in names
        budgetfile.apply(specs, matching, keys, add=measures)

    def pytest_hwopt_checks(self, item: pytest.Item, checks: list[Any],
                            measurements: dict[str, Any]) -> None:
        if self.history is not None:
            self.history.checks(item, checks, measurements, self._history_environment)
        old = self.baseline_index.get(item.nodeid)
        if not old:
            return
        t = self.max_regression
        for name, m in measurements.items():
            if name not in old or not m.samples_ms:
                continue
            row = baseline.compare_samples(item.nodeid, name, old[name], m.samples_ms, t)
            if row.verdict not in (baseline.REGRESSION, baseline.IMPROVEMENT):
                continue
            from pytest_hwopt.core.checks import Check, Status

            regressed = row.verdict == baseline.REGRESSION
            checks.append(Check(
                kind="regression", variant=name, budget=1.0 + t, measured=row.ratio, unit="x",
                status=Status.FAILED if regressed else Status.PASSED, message=row.describe(t),
                metric="median_ratio", test=item.nodeid, point_passed=not regressed,
                detail={"baseline": str(self.baseline_path), "baseline_ms": row.baseline_ms,
                        "current_ms": row.current_ms, "p": row.p, "verdict": row.verdict}))

    @pytest.hookimpl(tryfirst=True)
    def pytest_hwopt_session_results(self, config: pytest.Config,
                                     document: ResultsDocument) -> None:
        env = document["environment"]
        cast(dict, document).setdefault("revision", revision_entry(config))  # commit, branch
        if self.history is not None:
            self.history.session_results(cast(dict, document), _run_threads(
                self._environment_now(env, document), document))
        if self.baseline is not None:
            self.rows = baseline.compare_documents(self.baseline, document, self.max_regression)
            self._compared = True
            self.mismatch = baseline.environment_mismatch(
                self.baseline.get("environment") or {}, self._environment_now(env, document))
            env["baseline_mismatch"] = list(self.mismatch)
            assert self.baseline_path is not None
            document["baseline"] = baseline.section(self.baseline_path, self.max_regression,
                                                    self.rows)
        if self.save_name or self.save_path:
            self._save(document)
        if self.benchmark_json is not None:
            from pytest_hwopt.results.benchmark_format import write_benchmark_json

            write_benchmark_json(self.benchmark_json, document)
        if self.html_path is not None:  # plotly was found at start (output_path)
            from pytest_hwopt.results.html import write_html

            self.html = write_html(self.html_path, document)

    def _environment_now(self, env: Environment, document: ResultsDocument) -> dict[str, Any]:
        """The environment to compare; under xdist the controller never resolved the device."""
        if "device" in env or not document.get("results"):
            return dict(env)
        device = self._device()
        now: dict[str, Any] = dict(env, device=device.torch_device, device_name=device.name)
        now.update({k: v for k, v in device.facts.items() if k not in now})
        return now

    def _history_environment(self) -> dict[str, Any]:
        """This process's environment, as the session's end records it (for fingerprints)."""
        from pytest_hwopt.hardware import environment

        state = self._state()
        return environment.collect(self._device(), state.settings.threads)

    def _save(self, document: ResultsDocument) -> None:
        if not document.get("results"):
            self.notes.append("hwopt: nothing measured; run not saved")
            return
        if self.save_path is not None:
            if self.save_path.exists() and not self._option("hwopt_save_overwrite"):
                self.notes.append(f"hwopt: {self.save_path} appeared during the run; not "
                                  "overwritten (pass --hwopt-save-overwrite)")
                return
            from pytest_hwopt.results.jsonio import write_json_atomic

            self.saved = write_json_atomic(self.save_path, document)
        else:
            assert self.save_name is not None
            self.saved = baseline.save_numbered(self.saved_directory(), self.save_name,
                                                document)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if self._worker:
            return
        tr = terminalreporter
        lines: list[str] = []
        if self.entries and self.budgets_source is not None:
            lines.append(f"hwopt: {len(self.entries)} budget entr"
                         f"{'y' if len(self.entries) == 1 else 'ies'} from "
                         f"{_shown(self.budgets_source, config)}")
        if self._compared:
            lines.append(f"hwopt: compared with baseline {_shown(self.baseline_path, config)}")
            for item in self.mismatch:
                lines.append(f"hwopt: environment differs from the baseline: {item}")
            ran = {r.test for r in self.rows if r.verdict != baseline.MISSING}
            shown = [r for r in self.rows if r.verdict != baseline.MISSING or r.test in ran]
            not_run = {r.test for r in self.rows if r.test not in ran}
            if shown:
                lines.extend(baseline.format_table(shown))
            lines.append(f"hwopt: baseline comparison: "
                         f"{baseline.summary_line(shown, self.max_regression)}"
                         + (f"; {len(not_run)} test(s) of the baseline not run"
                            if not_run else ""))
        if self.saved is not None:
            lines.append(f"hwopt: run saved to {_shown(self.saved, config)}")
        if self.html is not None:
            lines.append(f"hwopt: HTML report written to {_shown(self.html, config)}")
        if self.benchmark_json is not None and self.benchmark_json.exists():
            lines.append(f"hwopt: pytest-benchmark JSON written to "
                         f"{_shown(self.benchmark_json, config)}")
        if self.history is not None:
            lines.extend(self.history.summary_lines())
        lines.extend(self.notes)
        if not lines:
            return
        tr.write_sep("-", "hwopt results")
        for line in lines:
            tr.write_line(line)


def _run_threads(env: dict[str, Any], document: ResultsDocument) -> dict[str, Any]:
    """``env`` with the thread count the variants ran with, where they all ran with one (an
    xdist controller's own count is not the workers')."""
    counts = {r.get("threads") for r in document.get("results") or []}
    if len(counts) == 1 and isinstance(next(iter(counts)), int):
        env = dict(env, threads=next(iter(counts)))
    return env


def _shown(path: Path | None, config: pytest.Config) -> str:
    if path is None:
        return "-"
    try:
        return str(Path(path).resolve().relative_to(config.invocation_params.dir.resolve()))
    except ValueError:
        return str(path)
