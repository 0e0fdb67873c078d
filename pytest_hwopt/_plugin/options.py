"""Every ``--hwopt-*`` option and ``hwopt_*`` ini key, registered and read in one place.

The core options (:data:`pytest_hwopt.core.settings.OPTIONS`) parse into a frozen
:class:`~pytest_hwopt.core.settings.Settings`; the results options (budgets file,
baselines, HTML, pytest-benchmark JSON) are read by :mod:`pytest_hwopt._plugin.results`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Final

import pytest

from pytest_hwopt.core import settings as core_settings

GROUP: Final = "hwopt"


def add_options(parser: pytest.Parser) -> None:
    """Register all options and ini keys in the ``hwopt`` option group."""
    group = parser.getgroup(GROUP, "inference performance budgets (pytest-hwopt)")
    for opt in core_settings.OPTIONS + core_settings.RESULT_OPTIONS:
        helptext = opt.help.replace("%", "%%")  # argparse formats help with %
        has_ini = opt.ini_help != ""
        if opt.flag:
            # None when not given, so that the ini value can stand in
            group.addoption(opt.cli, action="store_true", default=None if has_ini else False,
                            dest=opt.name, help=helptext)
        else:
            group.addoption(opt.cli, action="store", default=None, dest=opt.name,
                            metavar=opt.metavar or opt.name.split("_", 1)[1].upper(),
                            help=helptext)
        if has_ini:
            parser.addini(opt.name, opt.ini_help or opt.help,
                          **({"type": "bool", "default": False} if opt.flag else {"default": ""}))


def read_settings(config: pytest.Config) -> core_settings.Settings:
    """The validated core settings of this run; a bad value is a :class:`pytest.UsageError`
    naming the option and what it accepts."""
    raw: dict[str, object] = {}
    for opt in core_settings.OPTIONS:
        value = config.getoption(opt.name)
        raw[opt.name] = value if value is not None else config.getini(opt.name)
    try:
        settings = core_settings.parse_settings(raw)
    except core_settings.OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.cache == "cold" and settings.device == "cpu":
        raise pytest.UsageError("--hwopt-cache=cold flushes a GPU's L2 between samples; it "
                                "needs --hwopt-device=cuda (or auto on a GPU machine)")
    if settings.json_path:
        output_path(config, "--hwopt-json", settings.json_path, "results.json")
    return settings


#: output options whose file needs an optional package: option -> (module, the fix)
OUTPUT_NEEDS: Final = {
    "--hwopt-html": ("plotly", "pip install plotly (or pip install 'pytest-hwopt[html]')"),
}


def output_path(config: pytest.Config, option: str, value: str, example: str,
                target: Path | None = None) -> Path:
    """Where an output option writes (``target``, else ``value`` relative to the invocation
    directory); a :class:`pytest.UsageError` at start, naming the option and the fix, when
    the file cannot be written there (a directory, a file in place of a folder, no
    permission) or needs a package that is not installed (:data:`OUTPUT_NEEDS`). Missing
    folders are made when the file is written."""
    path = target if target is not None else Path(value).expanduser()
    if not path.is_absolute():
        path = config.invocation_params.dir / path
    where = f"{option}={value}"
    if path.is_dir():
        raise pytest.UsageError(f"{where}: is a directory; give a file path such as {example}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise pytest.UsageError(f"{where}: {folder} is a file, so no folder can be made "
                                "there; give another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise pytest.UsageError(f"{where}: no permission to write in {folder}; give a path "
                                "in a folder you can write to")
    needed = OUTPUT_NEEDS.get(option)
    if needed is not None and importlib.util.find_spec(needed[0]) is None:
        raise pytest.UsageError(f"{where}: this output needs {needed[0]}, which is not "
                                f"installed: {needed[1]}")
    return path


def option(config: pytest.Config, name: str) -> str | None:
    """A results option's command-line value (None when not given)."""
    value = config.getoption(name, None)
    return value if value else None


def ini(config: pytest.Config, name: str) -> str:
    """An ini value as stripped text ("" when unset or not registered)."""
    try:
        value = config.getini(name)
    except ValueError:  # not registered
        return ""
    return str(value).strip() if value else ""
