"""Command-line options and ini keys, parsed once into a frozen :class:`Settings`.

Pure: the plugin registers :data:`OPTIONS` with pytest and passes the raw values
to :func:`parse_settings`, which names the option and the fix on bad input.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

#: the allowed slow-down against a baseline when none is given (``--hwopt-max-regression``,
#: ``pytest-hwopt compare --max-regression``): 10%; here so start-up need not load baselines
DEFAULT_MAX_REGRESSION: Final = 0.10


class OptionError(ValueError):
    """A bad option value; the message names the option and what it accepts."""


@dataclass(frozen=True)
class Option:
    """One ``--hwopt-*`` flag with its ``hwopt_*`` ini key (unless ``ini_help`` is empty)."""

    name: str  # the ini key; the flag is --hwopt-<name with dashes>
    help: str
    default: str | None = None
    flag: bool = False
    metavar: str = ""  # shown in --help; default: the name without its prefix, in capitals
    ini_help: str | None = None  # the ini key's help: None = same as help, "" = no ini key

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: Final = (
    Option("hwopt_device", "device to measure on: auto, cpu, cuda or cuda:N "
           "(default: auto, cuda when usable)", "auto"),
    Option("hwopt_backends", "comma-separated backends for tests using hwopt_backend "
           "(default: every backend available on the device)"),
    Option("hwopt_json", "write results, checks and environment as JSON to this path"),
    Option("hwopt_report_only", "measure and report, but budgets do not fail tests", flag=True),
    Option("hwopt_strict", "inconclusive checks fail their tests too (default: they issue "
           "pytest_hwopt.InconclusiveWarning and the test passes)", flag=True),
    Option("hwopt_disable", "run performance tests as plain tests: each variant is called "
           "once, outputs and accuracy budgets are still checked, every timing budget is "
           "reported skipped", flag=True),
    Option("hwopt_max_time", "seconds of interleaved rounds per test before a verdict is "
           "taken from the point estimate (default: 5)", "5"),
    Option("hwopt_min_rounds", "interleaved rounds before the first verdict (default: 8)", "8"),
    Option("hwopt_warmup_ms", "warm-up time per variant in ms, at least 3 calls (default: 50)",
           "50"),
    Option("hwopt_block_ms", "length of one variant's block of calls in a round, in ms "
           "(default: 10)", "10"),
    Option("hwopt_confidence", "confidence level of intervals and verdicts (default: 0.95)",
           "0.95"),
    Option("hwopt_threads", "threads of every pool a variant touches (PyTorch, ONNX Runtime, "
           "OpenVINO, BLAS/OpenMP), equal for every variant (default: the cores idle when "
           "the run started, at most the cores this process may use)"),
    Option("hwopt_seed", "seed of the round order and the bootstrap (default: 0)", "0"),
    Option("hwopt_ort_opt_level", "ONNX Runtime graph optimisation level of the onnxruntime "
           "backend: disable, basic, extended or all (default: all)", "all"),
    Option("hwopt_cache", "cache state of each timed sample on a GPU: warm, or cold (the L2 "
           "is flushed before each sample, outside the timed region) (default: warm)", "warm"),
    Option("hwopt_compile_mode", "torch.compile mode of the torch-compile backend (default: "
           "reduce-overhead, i.e. CUDA graphs, on cuda; default on cpu)"),
    Option("hwopt_processes", "repeat the measurement in N fresh worker processes, one after "
           "another, and decide on the estimates of all processes: auto (3 workers, only for "
           "checks still straddling their budget at the time limit), N (every sampled check) "
           "or 0 (never) (default: auto)", "auto", metavar="N|auto"),
)


#: options of the results a team keeps (budgets file, baselines, reports); read where those
#: are made, not parsed into :class:`Settings`
RESULT_OPTIONS: Final = (
    Option("hwopt_budgets", "TOML file of budgets per test and device that override or add to "
           "the markers (default: [[tool.hwopt.budget]] in pyproject.toml)", metavar="PATH",
           ini_help="TOML budgets file, relative to the ini file"),
    Option("hwopt_save", "save this run (raw samples included) as "
           ".hwopt/<machine>/NNNN_NAME.json under the rootdir, or to a path ending in .json",
           metavar="NAME", ini_help=""),
    Option("hwopt_save_overwrite", "let --hwopt-save=PATH replace an existing file", flag=True,
           ini_help=""),
    Option("hwopt_compare", "compare with the latest run saved as NAME on this machine (or run "
           "number NNNN, or a JSON file), or with 'history': the runs of this machine in "
           "--hwopt-history's store; significant regressions fail tests",
           metavar="NAME|PATH|history", ini_help=""),
    Option("hwopt_history", "append this run (summary statistics, raw samples, checks, "
           "commit, machine fingerprint) to a history store, an SQLite file made if missing",
           metavar="PATH", ini_help="history store (SQLite) each run is appended to, "
           "relative to the ini file"),
    Option("hwopt_max_regression", "slow-down vs the baseline that fails a test when "
           "significant (p < 0.01): 10% or 0.1 (default: 10%)", metavar="FRACTION",
           ini_help="allowed slow-down vs the baseline (default: 10%)"),
    Option("hwopt_html", "write a self-contained HTML report (summary, speedup intervals, "
           "latency distributions, cold starts, roofline, environment)", metavar="PATH",
           ini_help=""),
    Option("hwopt_benchmark_json", "also write results in pytest-benchmark's JSON format (for "
           "pytest-benchmark compare)", metavar="PATH", ini_help=""),
)


@dataclass(frozen=True)
class Settings:
    """Everything the plugin reads from options, validated."""

    device: str = "auto"
    backends: tuple[str, ...] = ()
    json_path: str | None = None
    report_only: bool = False
    strict: bool = False
    #: ``--hwopt-disable``: each variant called once, timing budgets skipped
    disable: bool = False
    max_time_s: float = 5.0
    min_rounds: int = 8
    warmup_ms: float = 50.0
    block_ms: float = 10.0
    confidence: float = 0.95
    threads: int = 1
    seed: int = 0
    ort_opt_level: str = "all"
    cache: str = "warm"
    compile_mode: str | None = None
    #: worker processes per test (``--hwopt-processes``); None: automatic, i.e.
    #: :data:`AUTO_PROCESSES` only for checks still inconclusive at the time limit
    processes: int | None = None


#: worker processes for a check still straddling its budget at the time limit
AUTO_PROCESSES: Final = 3

DEVICE_PATTERN: Final = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def default_threads() -> int:
    """Cores this process may run on (its CPU affinity): ``Settings.threads`` until the
    plugin has chosen the session's count. Without ``--hwopt-threads`` the plugin lowers it
    to the cores idle at start on first need (``hardware.threads``), before any backend is
    built or variant measured."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_settings(raw: Mapping[str, object]) -> Settings:
    """Validate raw option values (strings, bools or None for unset)."""

    def text(name: str) -> str | None:
        value = raw.get(name)
        if value is None or value == "":
            return None
        return str(value).strip()

    def number(name: str, cast: Callable[[str], float], check: Callable[[float], bool],
               what: str) -> float:
        opt = _by_name(name)
        value = text(name) or opt.default
        assert value is not None
        try:
            parsed = cast(value)
        except ValueError:
            raise OptionError(f"{opt.cli}={value}: expected {what}") from None
        if not (math.isfinite(parsed) and check(parsed)):
            raise OptionError(f"{opt.cli}={value}: expected {what}")
        return parsed

    device = (text("hwopt_device") or "auto").lower()
    if not DEVICE_PATTERN.match(device):
        raise OptionError(f"--hwopt-device={device}: expected auto, cpu, cuda or cuda:N "
                          "(e.g. cuda:0)")
    backends = tuple(b.strip() for b in (text("hwopt_backends") or "").split(",") if b.strip())
    threads_raw = text("hwopt_threads")
    threads = default_threads() if threads_raw is None else int(
        number("hwopt_threads", int, lambda v: v >= 1, "a whole number of threads >= 1"))
    return Settings(
        device=device,
        backends=backends,
        json_path=text("hwopt_json"),
        report_only=_flag(raw.get("hwopt_report_only")),
        strict=_flag(raw.get("hwopt_strict"), "hwopt_strict"),
        disable=_flag(raw.get("hwopt_disable"), "hwopt_disable"),
        max_time_s=number("hwopt_max_time", float, lambda v: v > 0, "seconds > 0, e.g. 5"),
        min_rounds=int(number("hwopt_min_rounds", int, lambda v: v >= 3,
                              "a whole number of rounds >= 3")),
        warmup_ms=number("hwopt_warmup_ms", float, lambda v: v >= 0, "milliseconds >= 0"),
        block_ms=number("hwopt_block_ms", float, lambda v: v > 0, "milliseconds > 0"),
        confidence=number("hwopt_confidence", float, lambda v: 0.5 <= v < 1,
                          "a level in [0.5, 1), e.g. 0.95"),
        threads=threads,
        seed=int(number("hwopt_seed", int, lambda v: v >= 0, "a whole number >= 0")),
        ort_opt_level=_choice("hwopt_ort_opt_level", text("hwopt_ort_opt_level") or "all",
                              ("disable", "basic", "extended", "all")),
        cache=_choice("hwopt_cache", text("hwopt_cache") or "warm", ("warm", "cold")),
        compile_mode=(_choice("hwopt_compile_mode", text("hwopt_compile_mode"),
                              ("default", "reduce-overhead", "max-autotune",
                               "max-autotune-no-cudagraphs"))
                      if text("hwopt_compile_mode") else None),
        processes=_processes(text("hwopt_processes")),
    )


def _processes(value: str | None) -> int | None:
    """``--hwopt-processes``: None for auto (the default), else a count >= 0."""
    if value is None or value.lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise OptionError(f"--hwopt-processes={value}: expected auto or a whole number of "
                          "worker processes >= 0 (0: never)")
    return count


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise OptionError(f"{_by_name(name).cli}={value}: expected one of {', '.join(choices)}")
    return value


def _flag(value: object, name: str = "hwopt_report_only") -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise OptionError(f"{name} = {value}: expected true or false")


def _by_name(name: str) -> Option:
    return next(o for o in OPTIONS if o.name == name)


#: the reason of every timing budget's ``skipped`` check under ``--hwopt-disable``
DISABLED_REASON: Final = ("timing off (--hwopt-disable): each variant was called once, "
                          "for its outputs")
