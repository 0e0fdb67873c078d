"""Unit tests for pytest_hwopt.core.budgetfile: parsing, error positions, matching, merging."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pytest_hwopt.core import budgetfile
from pytest_hwopt.core.budgetfile import BudgetEntry, BudgetFileError, apply, device_rank, parse
from pytest_hwopt.core.devicekeys import cpu_feature_keys, resolve_budget
from pytest_hwopt.core.specs import Spec, parse_marker

CPU_KEYS = ["AMD EPYC 7763 64-Core Processor", "cpu"]
H100_KEYS = ["NVIDIA H100 80GB HBM3", "cuda:0", "cuda"]

EXAMPLE = '''
# budgets for the KV-cache suite
[[budget]]
test = "suites/test_kv_cache.py::*"
device = "cpu"
speedup = { min = 2.5, vs = "recompute-128", of = "cached-128" }
latency = { p95_ms = 20 }

[[budget]]
test = ["suites/test_a.py::test_x", "suites/test_b.py::*"]
memory = { max_mb = { cpu = 100, H100 = 2000 } }
'''


def test_parses_the_documented_example():
    entries = parse(EXAMPLE, "budgets.toml")
    assert len(entries) == 2
    first, second = entries
    assert first.patterns == ("suites/test_kv_cache.py::*",)
    assert first.device == "cpu"
    assert first.specs == (
        parse_marker("speedup", (), {"min": 2.5, "vs": "recompute-128", "of": "cached-128"}),
        parse_marker("latency", (), {"p95_ms": 20}))
    assert first.source == "budgets.toml:3"
    assert second.device is None
    assert second.patterns == ("suites/test_a.py::test_x", "suites/test_b.py::*")
    assert second.specs[0].values == {"max_mb": {"cpu": 100.0, "H100": 2000.0}}
    assert second.source == "budgets.toml:9"


def test_a_kind_may_hold_a_list_of_budgets_and_sub_tables_work():
    entries = parse('''
[[budget]]
test = "t.py::*"
latency = [{ p95_ms = 20, of = "a" }, { p50_ms = 5, of = "b" }]

[budget.throughput]
min = 100
''', "f.toml")
    kinds = [(s.kind, s.of) for s in entries[0].specs]
    assert kinds == [("latency", "a"), ("latency", "b"), ("throughput", None)]


def error(text: str, name: str = "budgets.toml", **kw) -> str:
    with pytest.raises(BudgetFileError) as info:
        parse(text, name, **kw)
    return str(info.value)


def test_invalid_budget_names_file_line_and_key():
    message = error('''[[budget]]
test = "a.py::*"
latency = { p95_ms = 20 }

[[budget]]
test = "b.py::*"
device = "cpu"
speedup = { min = 2.5 }
''')
    assert message.startswith("budgets.toml:8: [[budget]] #2, key 'speedup': ")
    assert "missing required argument 'vs'" in message


@pytest.mark.parametrize("body,line,words", [
    ('test = "a"\nlatency = { p95_ms = -1 }', 3, ["key 'latency'", "positive"]),
    ('test = "a"\nlatency = { p95 = 1 }', 3, ["key 'latency'", "unknown argument 'p95'"]),
    ('test = "a"\nspeed = { min = 2 }', 3, ["key 'speed'", "unknown key"]),
    ('test = "a"\nlatency = 20', 3, ["key 'latency'", "table of the marker's arguments"]),
    ('test = ""\nlatency = { p95_ms = 1 }', 2, ["key 'test'"]),
    ('test = 3\nlatency = { p95_ms = 1 }', 2, ["key 'test'"]),
    ('test = "a"\ndevice = 0\nlatency = { p95_ms = 1 }', 3, ["key 'device'"]),
    ('latency = { p95_ms = 1 }', 1, ["missing key 'test'"]),
    ('test = "a"', 1, ["no budget given"]),
    ('test = "a"\nroofline = { min_fraction = 2 }', 3, ["key 'roofline'", "(0, 1]"]),
])
def test_errors_point_at_the_line(body, line, words):
    message = error("[[budget]]\n" + body + "\n")
    assert message.startswith(f"budgets.toml:{line}: [[budget]] #1")
    for word in words:
        assert word in message


def test_error_in_a_sub_table_points_at_its_header():
    message = error('''[[budget]]
test = "a"

[budget.speedup]
min = 0
vs = "x"
''')
    assert message.startswith("budgets.toml:4: [[budget]] #1, key 'speedup'")


def test_invalid_toml_and_unknown_top_level_keys():
    assert error("[[budget]\ntest = 1\n").startswith("budgets.toml: invalid TOML:")
    message = error('[[budgets]]\ntest = "a"\n')
    assert message.startswith("budgets.toml:1: unknown key 'budgets'")
    assert "[[budget]]" in message


def test_pyproject_table(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('''[project]
name = "x"

[tool.hwopt]

[[tool.hwopt.budget]]
test = "t.py::*"
latency = { p95_ms = 3 }
''')
    entries = budgetfile.load_pyproject(pyproject)
    assert entries[0].specs == (Spec("latency", {"p95_ms": 3.0}),)
    assert entries[0].source == f"{pyproject}:6"


def test_pyproject_without_the_table_has_no_entries(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n[tool.other]\nhwopt = 1\n')
    assert budgetfile.load_pyproject(pyproject) == []


def test_pyproject_is_only_parsed_when_it_has_the_table(tmp_path, monkeypatch):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["pytest-hwopt", "x[hwopt]"]\n')
    monkeypatch.setattr(budgetfile, "_toml", lambda: pytest.fail("parsed"))
    assert budgetfile.load_pyproject(pyproject) == []


def test_without_a_toml_parser_the_error_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_toml(name, *args, **kwargs):
        if name in ("tomllib", "tomli"):
            raise ModuleNotFoundError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_toml)
    with pytest.raises(BudgetFileError, match="Python 3.11\\+ .* pip install tomli"):
        parse('[[budget]]\ntest = "a"\n', "b.toml")


def test_pyproject_errors_name_the_full_key(tmp_path):
    text = '[tool.hwopt]\nbudgets = []\n'
    assert error(text, "pyproject.toml", table=budgetfile.PYPROJECT_TABLE).startswith(
        "pyproject.toml:2: unknown key 'tool.hwopt.budgets'")
    text = '[[tool.hwopt.budget]]\ntest = "a"\nlatency = { p99_ms = "x" }\n'
    assert error(text, "pyproject.toml", table=budgetfile.PYPROJECT_TABLE).startswith(
        "pyproject.toml:3: [[tool.hwopt.budget]] #1, key 'latency'")


def test_missing_file(tmp_path):
    with pytest.raises(BudgetFileError, match="nope.toml: budgets file not found"):
        budgetfile.load(tmp_path / "nope.toml")


@pytest.mark.parametrize("pattern,nodeid,base,hit", [
    ("suites/test_kv_cache.py::*", "suites/test_kv_cache.py::test_decode[128]", None, True),
    ("suites/test_kv_cache.py::*", "suites/test_other.py::test_decode", None, False),
    # the plain node id (pytest's, from the item) covers every parametrized instance
    ("suites/test_a.py::test_b", "suites/test_a.py::test_b[cpu-fp16]", "suites/test_a.py::test_b",
     True),
    ("suites/test_a.py::test_b", "suites/test_a.py::test_bc", "suites/test_a.py::test_bc", False),
    ("suites/test_a.py::test_b[cpu-fp16]", "suites/test_a.py::test_b[cpu-fp16]", None, True),
    ("suites/test_a.py::test_b[cpu-fp16]", "suites/test_a.py::test_b[cpu-fp32]", None, False),
    ("*::test_decode*", "suites/x.py::test_decode_long", None, True),
    # brackets are literal: ids hold them
    ("t.py::test_op[shape=[1, 3]-sum]", "t.py::test_op[shape=[1, 3]-sum]", "t.py::test_op", True),
    ("t.py::test_op[shape=[1, 3]-*]", "t.py::test_op[shape=[1, 3]-sum]", "t.py::test_op", True),
    ("t.py::test_op[ns]", "t.py::test_opn", None, False),
    ("t.py::test_op[ns::op]", "t.py::test_op[ns::op]", "t.py::test_op", True),
    ("t.py::test_op?ns::op?", "t.py::test_op[ns::op]", "t.py::test_op", True),
])
def test_node_id_patterns(pattern, nodeid, base, hit):
    entry = BudgetEntry((pattern,), None, (Spec("latency", {"p95_ms": 1.0}),), "f:1")
    assert entry.matches_test(nodeid, base) is hit


@pytest.mark.parametrize("device,keys,rank", [
    (None, CPU_KEYS, (2, 0)),
    ("cpu", CPU_KEYS, (1, 0)),
    ("CPU", CPU_KEYS, (1, 0)),
    ("EPYC", CPU_KEYS, (0, 1)),
    ("AMD EPYC 7763 64-Core Processor", CPU_KEYS, (0, 0)),
    ("cuda", CPU_KEYS, None),
    ("H100", H100_KEYS, (0, 1)),
    ("h100", H100_KEYS, (0, 1)),
    ("cuda:0", H100_KEYS, (1, 0)),
    ("cuda:1", H100_KEYS, None),
    ("cuda", H100_KEYS, (2, 0)),
    ("A100", H100_KEYS, None),
    ("cpu", H100_KEYS, None),
    ("cpu+avx2", H100_KEYS, None),
])
def test_device_rank(device, keys, rank):
    assert device_rank(device, keys) == rank


# --- CPU feature keys in the file --------------------------------------------------------

AVX2_KEYS = ["AMD EPYC 9R14", *cpu_feature_keys(["avx2", "fma"]), "cpu"]
VNNI_KEYS = ["AMD EPYC 9R14", *cpu_feature_keys(["avx2", "fma", "avx512f", "avx512_vnni"]), "cpu"]


@pytest.mark.parametrize("device,keys,matches", [
    ("cpu+avx512_vnni", VNNI_KEYS, True),
    ("cpu+avx512_vnni", AVX2_KEYS, False),
    ("cpu-avx512_vnni", AVX2_KEYS, True),
    ("cpu-avx512_vnni", VNNI_KEYS, False),
    ("CPU+AVX2", AVX2_KEYS, True),
    ("cpu+avx2-avx512_vnni", AVX2_KEYS, True),
    ("cpu+avx2-avx512_vnni", VNNI_KEYS, False),
    ("cpu+avx2", CPU_KEYS, False),  # flags unknown: no feature key matches
    ("cpu-avx2", CPU_KEYS, False),
    ("avx", AVX2_KEYS, False),  # a CPU name's part never matches a feature key's spelling
])
def test_device_rank_of_feature_keys(device, keys, matches):
    assert (device_rank(device, keys) is not None) is matches


def test_feature_key_ranks_between_the_cpu_name_and_cpu():
    name, feature, more, kind = (device_rank(d, VNNI_KEYS) for d in
                                 ("EPYC", "cpu+avx512_vnni", "cpu+avx2+avx512_vnni", "cpu"))
    assert name < more < feature < kind


def test_entry_with_a_feature_key_applies_on_cpus_with_the_flag_only():
    entries = parse('''
[[budget]]
test = "*"
device = "cpu"
speedup = { min = 1.2, vs = "fp32", of = "int8" }

[[budget]]
test = "*"
device = "cpu+avx512_vnni"
speedup = { min = 3.0, vs = "fp32", of = "int8" }

[[budget]]
test = "*"
latency = { p95_ms = { cpu = 9, "cpu-avx512_vnni" = 20, "cpu+avx512_vnni" = 5 } }
''', "budgets.toml")
    assert entries[1].device == "cpu+avx512_vnni"
    for keys, minimum in ((VNNI_KEYS, 3.0), (AVX2_KEYS, 1.2), (CPU_KEYS, 1.2)):
        specs: list[Spec] = []
        apply(specs, entries, keys)
        by_kind = {spec.kind: spec for spec in specs}
        assert by_kind["speedup"].values["min"] == minimum
        latency = by_kind["latency"].values["p95_ms"]
        assert not isinstance(latency, float)
        expected = {id(VNNI_KEYS): 5.0, id(AVX2_KEYS): 20.0, id(CPU_KEYS): 9.0}[id(keys)]
        assert resolve_budget(latency, keys)[0] == expected


def test_more_feature_conditions_win_in_the_file_and_ties_go_to_the_later_entry():
    def run(*devices: str) -> float:
        specs: list[Spec] = []
        entries = [entry(d, Spec("speedup", {"min": float(n)}, vs="slow", of="fast"))
                   for n, d in enumerate(devices)]
        apply(specs, entries, VNNI_KEYS)
        value = specs[0].values["min"]
        assert isinstance(value, float)
        return value

    assert run("cpu+avx2+avx512_vnni", "cpu+avx512_vnni") == 0.0
    assert run("cpu+avx512_vnni", "cpu+avx2+avx512_vnni") == 1.0
    assert run("cpu+avx2", "cpu+avx512_vnni") == 1.0
    assert run("cpu+avx512_vnni", "cpu+avx2") == 1.0
    assert run("EPYC", "cpu+avx2+avx512_vnni") == 0.0


@pytest.mark.parametrize("device,words", [
    ("cpu+avx512vnni", ["unknown CPU flag 'avx512vnni'", "avx512_vnni, avx_vnni"]),
    ("cpu+", ["malformed", "cpu+avx512_vnni"]),
    ("cuda+fma", ["feature keys are for CPUs"]),
    ("avx2", ["is a CPU flag", "'cpu+avx2'"]),
])
def test_bad_feature_key_in_device_names_file_line_and_key(device, words):
    text = f'''
[[budget]]
test = "*"
device = "{device}"
speedup = {{ min = 2, vs = "a" }}
'''
    with pytest.raises(BudgetFileError) as info:
        parse(text, "budgets.toml")
    message = str(info.value)
    assert message.startswith("budgets.toml:4: [[budget]] #1, key 'device': ")
    assert f"{device!r}" in message
    for word in words:
        assert word in message


def test_bad_feature_key_in_a_value_names_the_marker_and_key():
    text = '''
[[budget]]
test = "*"
speedup = { min = { cpu = 1, "cpu+avx2" = 2, "cpu+avx512_vnni" = 3 }, vs = "a" }
'''
    with pytest.raises(BudgetFileError) as info:
        parse(text, "budgets.toml")
    message = str(info.value)
    assert message.startswith("budgets.toml:4: [[budget]] #1, key 'speedup': hwopt_speedup: "
                              "'min' per device: ")
    assert "'cpu+avx2+avx512_vnni'" in message


def entry(device: str | None, *specs: Spec, source: str = "f:1") -> BudgetEntry:
    return BudgetEntry(("*",), device, specs, source)


SPEED = Spec("speedup", {"min": 2.0}, vs="slow", of="fast")


def test_apply_replaces_same_kind_of_and_vs_and_adds_the_rest():
    specs = [SPEED, Spec("latency", {"p95_ms": 10.0}), Spec("speedup", {"min": 5.0}, vs="other")]
    new_speed = Spec("speedup", {"min": 1.5}, vs="slow", of="fast")
    memory = Spec("memory", {"max_mb": 10.0})
    applied = apply(specs, [entry("cpu", new_speed, memory)], CPU_KEYS)
    assert specs == [new_speed, Spec("latency", {"p95_ms": 10.0}),
                     Spec("speedup", {"min": 5.0}, vs="other"), memory]
    assert [s for s, _ in applied] == [new_speed, memory]


def test_apply_without_add_only_replaces():
    specs = [SPEED]
    apply(specs, [entry(None, Spec("memory", {"max_mb": 1.0}),
                        Spec("speedup", {"min": 9.0}, vs="slow", of="fast"))], CPU_KEYS, add=False)
    assert specs == [Spec("speedup", {"min": 9.0}, vs="slow", of="fast")]


def test_apply_collapses_duplicate_markers_of_one_key():
    specs = [Spec("latency", {"p95_ms": 1.0}), Spec("latency", {"p50_ms": 1.0})]
    apply(specs, [entry(None, Spec("latency", {"p99_ms": 3.0}))], CPU_KEYS)
    assert specs == [Spec("latency", {"p99_ms": 3.0})]


def test_most_specific_device_wins_whatever_the_order():
    def lat(ms: float) -> Spec:
        return Spec("latency", {"p95_ms": ms})

    entries = [entry("H100", lat(1)), entry("cuda:0", lat(2)), entry(None, lat(4)),
               entry("cuda", lat(3)), entry("A100", lat(5)), entry("cpu", lat(6))]
    specs: list[Spec] = []
    apply(specs, entries, H100_KEYS)
    assert specs == [lat(1)]
    specs = []
    apply(specs, entries, ["NVIDIA A100-SXM4-40GB", "cuda:1", "cuda"])
    assert specs == [lat(5)]
    specs = []
    apply(specs, entries, CPU_KEYS)
    assert specs == [lat(6)]
    # equally specific: the later entry wins
    specs = []
    apply(specs, [entry(None, lat(7)), entry(None, lat(8))], CPU_KEYS)
    assert specs == [lat(8)]


def test_entries_for_another_device_change_nothing():
    specs = [SPEED]
    assert apply(specs, [entry("cuda", Spec("speedup", {"min": 9.0}, vs="slow", of="fast"))],
                 CPU_KEYS) == []
    assert specs == [SPEED]


def test_select_and_needs_device():
    a = BudgetEntry(("a.py::*",), None, (SPEED,), "f:1")
    b = BudgetEntry(("b.py::*",), "cpu", (SPEED,), "f:5")
    assert budgetfile.select([a, b], "b.py::test") == [b]
    assert budgetfile.needs_device([a]) is False
    assert budgetfile.needs_device([a, b]) is True


@pytest.mark.parametrize("module", ["core.budgetfile", "results.baseline", "__main__",
                                    "results.benchmark_format"])
def test_pure_modules_import_no_pytest_or_frameworks(module):
    import importlib.util

    spec = importlib.util.find_spec(f"pytest_hwopt.{module}")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"pytest", "_pytest", "torch", "numpy", "pytest_benchmark"}
