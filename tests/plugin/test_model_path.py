"""hwopt_bench.model on real backends: export, gate on outputs, cold start, cache, hook."""

from __future__ import annotations

import json

import pytest

# torch cannot be imported twice in one process, so these sessions run in subprocesses
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

MODEL = '''
import torch
from pytest_hwopt import hwopt


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(),
                                       torch.nn.Linear(128, 16))

    def forward(self, x):
        return self.net(x)


def mlp():
    torch.manual_seed(0)
    return MLP(), (torch.randn(8, 64),)
'''

ARGS = ("--hwopt-device=cpu", "--hwopt-max-time=1", "--hwopt-warmup-ms=5",
        "--hwopt-min-rounds=4", "--hwopt-block-ms=2", "--hwopt-threads=1")


def test_onnxruntime_and_openvino_end_to_end(pytester, tmp_path):
    pytest.importorskip("openvino")
    out = tmp_path / "r.json"
    pytester.makepyfile(test_it=MODEL + '''
@hwopt.speedup(min=0.01, vs="pytorch")
@hwopt.latency(p95_ms=10_000)
@hwopt.cold_start(max_s=600)
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp())
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=onnxruntime,openvino",
                                f"--hwopt-json={out}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_mlp?onnxruntime?*speedup vs pytorch*onnxruntime*passed*",
                                 "*test_mlp?openvino?*speedup vs pytorch*openvino*passed*"])
    doc = json.loads(out.read_text())
    ort = next(r for r in doc["results"] if r["variant"] == "onnxruntime")
    assert ort["prepare_s"] > 0 and ort["first_call_ms"] > 0
    assert ort["exporter"] in ("dynamo", "torchscript")
    assert ort["intra_op_threads"] == 1 and ort["spinning"] is False
    assert ort["optimized_ops"], "optimised graph's operator counts are reported"
    kinds = {(c["test"].split("[")[1], c["kind"]) for c in doc["checks"]}
    assert ("onnxruntime]", "accuracy") in kinds, "outputs are gated by default"
    assert ("openvino]", "cold_start") in kinds


def test_default_selection_runs_available_backends_and_not_the_reference(pytester):
    pytester.makepyfile(test_it=MODEL + '''
def test_mlp(hwopt_backend, hwopt_bench):
    assert hwopt_backend != "pytorch"
''')
    result = pytester.runpytest_subprocess("--hwopt-device=cpu", "--co", "-q", "-p", "no:cacheprovider")
    names = [line for line in result.stdout.lines if "test_mlp[" in line]
    assert any("onnxruntime]" in n for n in names)
    assert not any("[pytorch]" in n or "tensorrt]" in n for n in names)


def test_gpu_only_backends_skip_with_reason(pytester):
    pytester.makepyfile(test_it=MODEL + '''
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp())
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=tensorrt,onnxruntime-trt", "-rs",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([
        "*hwopt: backend tensorrt unavailable on cpu: TensorRT needs an NVIDIA GPU*",
        "*hwopt: backend onnxruntime-trt unavailable on cpu: *needs an NVIDIA GPU*"])


CUSTOM = '''
import torch
from pytest_hwopt import Backend


class Doubling(Backend):
    """Correct: runs the module itself."""
    name = "same"

    def prepare(self, model, example_inputs, device, precision):
        def run(*inputs):
            with torch.inference_mode():
                return model(*inputs)
        return run


class Wrong(Backend):
    name = "wrong"

    def prepare(self, model, example_inputs, device, precision):
        return lambda *inputs: model(*inputs) * 1.01


class Frozen(Backend):
    """Bakes the example's outputs in: right on the example, wrong on fresh inputs."""
    name = "frozen"

    def prepare(self, model, example_inputs, device, precision):
        with torch.inference_mode():
            frozen = model(*example_inputs)
        return lambda *inputs: frozen


class Broken(Backend):
    name = "broken"

    def unavailable_reason(self, device):
        return "the broken runtime is not installed"


def pytest_hwopt_backends(config):
    return [Doubling(), Wrong(), Frozen(), Broken()]
'''


def test_custom_backends_from_a_conftest_and_the_gate(pytester):
    pytester.makeconftest(CUSTOM)
    pytester.makepyfile(test_it=MODEL + '''
@hwopt.speedup(min=0.01, vs="pytorch")
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp())
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=same,wrong,frozen,broken", "-rs",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    result.stdout.fnmatch_lines([
        "*outputs of wrong differ from pytorch: max abs error * at output at (*)*",
        "*outputs of frozen on fresh random inputs differ from pytorch*",
        "*backend broken unavailable on cpu: the broken runtime is not installed*",
    ])


def test_accuracy_marker_overrides_the_default_tolerance(pytester):
    pytester.makeconftest(CUSTOM)
    pytester.makepyfile(test_it=MODEL + '''
@hwopt.accuracy(rtol=0.02, atol=1e-3)
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp())
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=wrong", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_export_failure_names_the_stage_and_other_tests_run(pytester):
    pytester.makepyfile(test_it=MODEL + '''
class Eigenvalues(torch.nn.Module):
    """Complex eigenvalues: neither ONNX exporter can translate them."""
    def forward(self, x):
        return torch.linalg.eigvals(x).abs()


def test_eigenvalues(hwopt_backend, hwopt_bench):
    hwopt_bench.model(Eigenvalues(), (torch.randn(4, 4),))


def test_fine(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp())
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=onnxruntime", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*ONNX export failed: dynamo: *; torchscript: *eigvals*"])


def test_unsupported_precision_skips(pytester):
    pytester.makepyfile(test_it=MODEL + '''
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp(), precision="fp16")
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=onnxruntime", "-rs",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*backend onnxruntime does not support precision fp16*"])


def test_int8_variant_is_named_with_its_precision(pytester, tmp_path):
    out = tmp_path / "r.json"
    pytester.makepyfile(test_it=MODEL + '''
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp(), precision="int8")
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=onnxruntime", f"--hwopt-json={out}",
                                "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    variants = {r["variant"] for r in json.loads(out.read_text())["results"]}
    assert variants == {"pytorch", "onnxruntime-int8"}


def test_artifact_cache_reused_and_corrupt_entry_rebuilt(pytester, tmp_path):
    pytester.makepyfile(test_it=MODEL + '''
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp())
''')

    def cached(run: int) -> bool:
        out = tmp_path / f"r{run}.json"
        result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=onnxruntime", f"--hwopt-json={out}")
        result.assert_outcomes(passed=1)
        doc = json.loads(out.read_text())
        return next(r for r in doc["results"] if r["variant"] == "onnxruntime")["onnx_cached"]

    assert cached(1) is False
    assert cached(2) is True
    for onnx_file in (pytester.path / ".pytest_cache" / "d" / "hwopt").glob("*.onnx"):
        onnx_file.write_bytes(b"not an onnx file")
    assert cached(3) is False, "a corrupt entry is rebuilt, not trusted"


def test_slow_preparations_are_announced(pytester):
    pytester.makeconftest(CUSTOM.replace('name = "same"', 'name = "same"\n    slow_to_prepare = True'))
    pytester.makepyfile(test_it=MODEL + '''
def test_mlp(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*mlp())
''')
    result = pytester.runpytest_subprocess(*ARGS, "--hwopt-backends=same", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*[[]hwopt: preparing same[]]*[[]hwopt: same ready in *s[]]*"])
