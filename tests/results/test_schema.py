"""The results document: its builder, its typed records and the JSON Schema that ships."""

from __future__ import annotations

import json
import types
from dataclasses import fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from pytest_hwopt.core.contention import Contention
from pytest_hwopt.core.measurement import Measurement
from pytest_hwopt.core.settings import Settings
from pytest_hwopt.core.verdicts import Check
from pytest_hwopt.results import schema
from pytest_hwopt.results.baseline import Row
from pytest_hwopt.results.schema import document, json_schema, records_of, settings_record

jsonschema = pytest.importorskip("jsonschema")


def check_dict(**overrides):
    check = Check(kind="speedup", variant="fused", vs="naive", status="passed", message="msg")
    return {**check.to_dict(), **overrides}


# ---- the builder -------------------------------------------------------------------------

def test_document_shape():
    records = [
        {"test": "t::a", "device": "cpu", "results": [{"variant": "naive", "median_ms": 1.0}],
         "checks": [check_dict()]},
        {"test": "t::b", "results": [{"variant": "x"}, {"variant": "y"}]},
    ]
    doc = document(records, {"python": "3.12"}, "1.2.3")
    assert set(doc) == {"version", "format", "environment", "tests", "results", "checks"}
    assert doc["version"] == "1.2.3"
    assert doc["format"] == schema.FORMAT
    assert doc["environment"] == {"python": "3.12"}
    assert doc["tests"] == [{"test": "t::a", "device": "cpu"}, {"test": "t::b"}]
    assert [(r["test"], r["variant"]) for r in doc["results"]] == [("t::a", "naive"),
                                                                  ("t::b", "x"), ("t::b", "y")]
    assert len(doc["checks"]) == 1
    assert doc["checks"][0]["test"] == "t::a"
    assert doc["checks"][0]["kind"] == "speedup"
    json.dumps(doc)  # JSON-ready


def test_document_check_test_is_the_records():
    """A check's own (empty) 'test' field is replaced by its record's test id."""
    doc = document([{"test": "t::a", "checks": [check_dict(test="")]}], {}, "0")
    assert doc["checks"][0]["test"] == "t::a"


def test_document_does_not_modify_records():
    rec = {"test": "t::a", "results": [{"variant": "v"}], "checks": [check_dict()]}
    document([rec], {}, "0")
    assert rec["results"] == [{"variant": "v"}]
    assert "test" not in rec["results"][0]



def test_records_of_inverts_document():
    records = [
        {"test": "t::a", "device": "cpu", "rounds": 3, "results": [{"variant": "naive"}],
         "checks": [check_dict(test="t::a")]},
        {"test": "t::b", "device": "cpu", "results": [{"variant": "x"}], "checks": []},
    ]
    doc = document(records, {"python": "3.12"}, "1")
    assert records_of(doc) == [
        {**records[0], "results": [{"test": "t::a", "variant": "naive"}]},
        {**records[1], "results": [{"test": "t::b", "variant": "x"}]},
    ]
    assert records_of({"results": [{"variant": "v"}]}) == [
        {"test": "", "results": [{"variant": "v"}], "checks": []}]


def test_settings_record_has_every_setting():
    record = settings_record(Settings(backends=("a", "b")))
    assert set(record) == {f.name for f in fields(Settings)}
    assert record["backends"] == ["a", "b"]


# ---- the records match what the code writes ----------------------------------------------

def test_records_have_the_keys_the_code_writes():
    m = Measurement(name="v", samples_ms=[1.0, 2.0], rounds_ms=[1.5])
    assert set(m.to_dict()) == set(schema.VariantResult.__required_keys__)
    assert set(schema.ResultRow.__required_keys__) == (
        set(schema.VariantResult.__required_keys__) | {"test"})
    assert set(check_dict()) == set(schema.CheckRecord.__required_keys__)
    assert set(Contention(0.0, 0.0, 1.0).to_dict()) == set(schema.Contention.__required_keys__)
    assert set(Row("t", "v", 1.0, 1.0, 1.0, 0.5, "unchanged").to_dict()) == set(
        schema.BaselineRow.__required_keys__)
    assert set(schema.SettingsRecord.__required_keys__) == {f.name for f in fields(Settings)}
    assert set(get_type_hints(schema.Record)) == set(get_type_hints(schema.RecordMeta)) | {
        "results", "checks"}
    assert set(schema.Record.__required_keys__) == (
        set(schema.RecordMeta.__required_keys__) | {"results", "checks"})


# ---- the JSON Schema ---------------------------------------------------------------------

def test_the_schema_is_a_valid_draft_2020_12_schema():
    found = json_schema()
    assert found["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(found)
    assert json_schema() is not found  # a fresh copy each time


# the TypedDicts that describe a part of the written document; each has a $defs entry
IN_DOCUMENT = ("ResultsDocument", "Environment", "SettingsRecord", "Peak", "PublishedPeak",
               "RecordMeta", "Contention", "Telemetry", "ResultRow", "MemoryDetails",
               "CheckRecord", "CheckDetail", "BaselineSection", "BaselineRow", "Revision",
               "HistorySection", "HistorySeries", "HistoryChange")
JSON_TYPE = {str: "string", int: "integer", float: "number", bool: "boolean",
             type(None): "null"}


def _python_types(annotation: Any) -> set[str] | None:
    """JSON types a value of ``annotation`` can be; None for any."""
    origin = get_origin(annotation)
    if annotation is Any:
        return None
    if origin in (Union, types.UnionType):
        out: set[str] = set()
        for arg in get_args(annotation):
            found = _python_types(arg)
            assert found is not None
            out |= found
        return out
    if origin is Literal:
        return {JSON_TYPE[type(a)] for a in get_args(annotation)}
    if origin is list:
        return {"array"}
    if origin is dict or is_typeddict(annotation):
        return {"object"}
    return {JSON_TYPE[annotation]}


def _schema_types(prop: dict[str, Any], defs: dict[str, Any]) -> set[str] | None:
    if "$ref" in prop:
        return _schema_types(defs[prop["$ref"].rsplit("/", 1)[1]], defs)
    if "const" in prop:
        return {JSON_TYPE[type(prop["const"])]}
    kind = prop.get("type")
    if kind is None:
        return None
    return {kind} if isinstance(kind, str) else set(kind)


def _agree(where: str, annotation: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    assert _python_types(annotation) == _schema_types(prop, defs), where
    args = [a for a in get_args(annotation) if a is not type(None)]
    inner = args[0] if len(args) == 1 and get_origin(annotation) in (Union, types.UnionType) \
        else annotation
    if is_typeddict(inner):
        assert prop.get("$ref") == f"#/$defs/{inner.__name__}", where
    elif get_origin(inner) is Literal:
        assert prop["enum"] == list(get_args(inner)), where
    elif get_origin(inner) is list:
        _agree(f"{where}[]", get_args(inner)[0], prop["items"], defs)
    elif get_origin(inner) is dict and get_args(inner)[1] is not Any:
        _agree(f"{where}{{}}", get_args(inner)[1], prop["additionalProperties"], defs)


@pytest.mark.parametrize("name", IN_DOCUMENT)
def test_typed_records_and_json_schema_agree(name):
    defs = json_schema()["$defs"]
    typed = getattr(schema, name)
    definition = defs[name]
    hints = get_type_hints(typed)
    assert definition["type"] == "object"
    assert set(hints) == set(definition["properties"]), name
    assert set(typed.__required_keys__) == set(definition.get("required", [])), name
    for key, annotation in hints.items():
        _agree(f"{name}.{key}", annotation, definition["properties"][key], defs)


def test_every_schema_definition_is_a_typed_record():
    found = json_schema()
    assert set(found["$defs"]) == set(IN_DOCUMENT)
    assert found["$ref"] == "#/$defs/ResultsDocument"


# ---- real documents validate -------------------------------------------------------------

TESTS = '''
import pytest
from pytest_hwopt import hwopt


@hwopt.speedup(min=2.0, vs="slow")
@hwopt.latency(p95_ms=10_000)
@hwopt.memory(max_mb=100_000)
@hwopt.energy(max_mj=1.0)
def test_pair(hwopt_bench):
    hwopt_bench.measure("slow", slow, bytes=1e6, flops=2e6)
    hwopt_bench.measure("fast", fast)
    hwopt_bench.note("ratio", 1.5)


def test_variants(hwopt_bench):
    hwopt_bench.measure("fast", fast)


@hwopt.latency(p95_ms=10_000)
def test_benchmark(benchmark):
    benchmark(fast)
'''


@pytest.fixture
def no_xdist_worker(monkeypatch):
    """pytest-benchmark turns itself off in an xdist worker; the inner run is not one."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)


def test_written_documents_validate(pytester, workloads, fast_args, no_xdist_worker):
    pytest.importorskip("pytest_benchmark")
    pytester.makepyfile(test_it=workloads + TESTS)
    common = (*fast_args, "--benchmark-max-time=0.05", "--hwopt-report-only")
    first = pytester.runpytest_subprocess(*common, "--hwopt-json=first.json")
    first.assert_outcomes(passed=3)
    second = pytester.runpytest_subprocess(*common, "--hwopt-compare=first.json",
                                           "--hwopt-json=second.json")
    second.assert_outcomes(passed=3)
    validator = jsonschema.Draft202012Validator(json_schema())
    for name in ("first.json", "second.json"):
        doc = json.loads((pytester.path / name).read_text())
        validator.validate(doc)
    # what the document holds: a hwopt_bench test, a pytest-benchmark one, a baseline
    assert [t.get("source") for t in doc["tests"]] == [None, None, "pytest-benchmark"]
    assert {r["variant"] for r in doc["results"]} == {"slow", "fast", "benchmark"}
    assert "achieved_gbs" in doc["results"][0]
    assert {c["status"] for c in doc["checks"]} >= {"passed", "skipped"}
    assert doc["baseline"]["rows"] and "baseline_mismatch" in doc["environment"]


def test_a_drifted_document_is_refused():
    validator = jsonschema.Draft202012Validator(json_schema())
    check = check_dict(test="t::a")
    env = {"python": "3.12", "platform": "p", "hostname": "h", "versions": {}, "threads": 1,
           "thread_env": {}, "cpu": "c", "machine": "m", "logical_cores": 2,
           "settings": settings_record(Settings())}
    good = {"version": "1", "format": 1, "environment": env,
            "tests": [{"test": "t::a", "device": "cpu"}], "results": [], "checks": [check]}
    validator.validate(good)
    for bad in ({**good, "format": 2}, {**good, "checks": [{**check, "status": "ok"}]},
                {**good, "checks": [{**check, "renamed": 1}]},
                {**good, "tests": [{"test": "t::a"}]}):
        assert not validator.is_valid(bad)
