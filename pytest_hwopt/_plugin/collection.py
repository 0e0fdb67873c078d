"""Collection and set-up: ``hwopt_backend`` parametrisation, budget markers, requirements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwopt._plugin.state import State, specs_key, state_of, uses_plugin

if TYPE_CHECKING:
    from pytest_hwopt.backends.base import Backend
    from pytest_hwopt.core.specs import Requirement, Spec
    from pytest_hwopt.hardware.devices import Device


@pytest.hookimpl(trylast=True)
def pytest_hwopt_backends(config: pytest.Config) -> list[Backend]:
    """The built-in backends, offered through the same hook as users' own."""
    from pytest_hwopt.backends import builtin

    cache = config.cache.mkdir("hwopt") if getattr(config, "cache", None) is not None else None
    return builtin.all_backends(state_of(config).settings, cache)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test requesting ``hwopt_backend`` runs once per backend: ``--hwopt-backends``, else
    every backend available on the device (all of them, to skip with reasons, if none is)."""
    if "hwopt_backend" not in metafunc.fixturenames or _parametrized_by_test(metafunc):
        return
    state = state_of(metafunc.config)
    names = list(state.settings.backends)
    if not names:
        backends = state.backends()
        candidates = [n for n in backends if n != "pytorch"]
        device = state.device()
        names = [n for n in candidates if backends[n].unavailable_reason(device) is None]
        names = names or candidates
    metafunc.parametrize("hwopt_backend", names, indirect=True, ids=names)


def _parametrized_by_test(metafunc: pytest.Metafunc) -> bool:
    """The test picks its backends itself:
    ``parametrize("hwopt_backend", [...], indirect=True)``."""
    for mark in metafunc.definition.iter_markers(name="parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "hwopt_backend" in names:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Parse the test's budget markers (a bad argument fails this test alone), let hooks and
    the budgets file amend them, and skip when a ``hwopt.requires`` is not met."""
    if not uses_plugin(item, benchmark=True):
        return  # an ordinary test pays nothing
    from pytest_hwopt.core.specs import BUDGET_KINDS, SpecError, parse_marker, parse_requires
    from pytest_hwopt.markers import marker_arguments

    specs: list[Spec] = []
    bad = ""
    try:
        for kind in BUDGET_KINDS:
            for mark in reversed(list(item.iter_markers(name=f"hwopt_{kind}"))):
                args, kwargs = marker_arguments(mark)
                specs.append(parse_marker(kind, args, kwargs))
        requirements = [parse_requires(*marker_arguments(m))
                        for m in item.iter_markers(name="hwopt_requires")]
    except SpecError as exc:
        bad = str(exc)
    if bad:  # failed outside the handler, so the message is printed once
        pytest.fail(f"bad marker argument: {bad}", pytrace=False)
    item.config.hook.pytest_hwopt_budgets(item=item, specs=specs)
    item.stash[specs_key] = specs
    state = state_of(item.config)
    for req in requirements:
        reason = unmet(req, state)
        if reason:
            pytest.skip(reason)


def identity(item: pytest.Item) -> dict[str, Any]:
    """How pytest names the test, for every place that shows or matches it: ``name``
    (``test_op[ns::op]``), ``originalname`` (``test_op``) and, for a parametrized test, its
    ``param`` (the callspec id, ``ns::op``) and ``params`` (argument name -> value; values
    JSON cannot hold as their ``repr``). Read from the item, never parsed from the node id,
    whose ids may hold ``::``, ``[`` and ``]``."""
    out: dict[str, Any] = {"name": item.name,
                           "originalname": getattr(item, "originalname", item.name)}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        out["param"] = callspec.id
        out["params"] = {str(k): _json_value(v) for k, v in callspec.params.items()}
    return out


def _json_value(value: object) -> object:
    """``value`` as JSON holds it: numbers, text, lists and string-keyed dicts of them as
    they are, anything else as its ``repr`` (records travel between xdist workers)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _json_value(v) for k, v in value.items()}
    return repr(value)


def base_nodeid(item: pytest.Item) -> str:
    """The node id without the parameter brackets: ``f.py::test_op`` for
    ``f.py::test_op[ns::op]`` (the parent's node id and the original name)."""
    original = getattr(item, "originalname", None)
    if not original or original == item.name or item.parent is None:
        return item.nodeid
    return f"{item.parent.nodeid}::{original}" if item.parent.nodeid else original


def unavailable(name: str, backend: Backend, state: State) -> str | None:
    """The skip reason when ``backend`` cannot run on the session's device."""
    device = state.device()
    reason = backend.unavailable_reason(device)
    if reason:
        return f"hwopt: backend {name} unavailable on {device.torch_device}: {reason}"
    return None


def _names_device(wanted: str, device: Device) -> bool:
    """``cpu``, ``cuda``, ``cuda:N``, or a CPU feature key (``cpu+amx_bf16``) this CPU matches."""
    from pytest_hwopt.core.devicekeys import feature_key, key_rank

    if wanted.lower() in (device.kind, device.torch_device):
        return True
    return feature_key(wanted) is not None and key_rank(wanted, device.budget_keys()) is not None


def unmet(req: Requirement, state: State) -> str | None:
    """Why ``req`` is not met on this session's device and backends (None when it is)."""
    device = state.device()
    if req.devices and not any(_names_device(d, device) for d in req.devices):
        flags = device.facts.get("cpu_flags") if device.kind == "cpu" else None
        shown = (f"{device.name}; flags {', '.join(flags)}" if isinstance(flags, list) and flags
                 else device.name)
        return (f"hwopt: requires device {' or '.join(req.devices)}; measuring on "
                f"{device.torch_device} ({shown})")
    backends = state.backends()
    for name in req.backends:
        if name not in backends:
            return f"hwopt: requires backend {name!r}, which is not registered"
        reason = unavailable(name, backends[name], state)
        if reason:
            return reason
    return None
