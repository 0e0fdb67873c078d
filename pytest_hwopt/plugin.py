"""The ``pytest11`` entry point: registers the plugin's parts, nothing more.

Loading this module imports no ML framework; the parts in :mod:`pytest_hwopt._plugin` import
backends, torch and NumPy only when a test that needs them runs.
"""

from __future__ import annotations

import pytest

from pytest_hwopt._plugin.imports import load_plainly

load_plainly()  # before the plugin's other modules are imported: see its docstring

from pytest_hwopt._plugin import options  # noqa: E402
from pytest_hwopt._plugin.state import State, state_key  # noqa: E402
from pytest_hwopt.core.settings import Settings  # noqa: E402
from pytest_hwopt.markers import MARKERS  # noqa: E402

#: the plugin objects registered for a run, by name
PARTS = ("hwopt-state", "hwopt-collection", "hwopt-fixtures", "hwopt-verdict",
         "hwopt-reporting", "hwopt-results", "hwopt-server")


def settings_of(config: pytest.Config) -> Settings:
    """The parsed ``--hwopt-*`` settings of a session (for conftests that build backends)."""
    return config.stash[state_key].settings


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_hwopt import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for text in MARKERS.values():
        config.addinivalue_line("markers", text)
    state = State(config, options.read_settings(config))
    config.stash[state_key] = state
    from pytest_hwopt._plugin import collection, fixtures, reporting, results, server, verdict

    manager = config.pluginmanager
    manager.register(state, "hwopt-state")
    manager.register(collection, "hwopt-collection")
    manager.register(fixtures, "hwopt-fixtures")
    manager.register(verdict, "hwopt-verdict")
    manager.register(reporting, "hwopt-reporting")
    manager.register(results.ResultsPlugin(config), "hwopt-results")
    manager.register(server, "hwopt-server")
    state.check_device_and_backends()


def pytest_unconfigure(config: pytest.Config) -> None:
    for name in PARTS:
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin, name)
    if state_key in config.stash:
        del config.stash[state_key]
