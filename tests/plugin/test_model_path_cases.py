"""hwopt_bench.model() with what users hand it: outputs with ``None`` and nested structures,
Hugging Face models, several inputs in one test, failures worth a clear message, edited code
under a warm export cache, and what the run leaves behind."""

from __future__ import annotations

import json

import pytest

# torch cannot be imported twice in one process, so these sessions run in subprocesses
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

ARGS = ("--hwopt-device=cpu", "--hwopt-max-time=1", "--hwopt-warmup-ms=5",
        "--hwopt-min-rounds=4", "--hwopt-block-ms=2", "--hwopt-threads=1",
        "--hwopt-backends=onnxruntime")
NO_CACHE = ("-p", "no:cacheprovider")

PROJ = '''
import torch
from pytest_hwopt import hwopt


class Proj(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 8)

    def forward(self, x):
        h = self.proj(x)
        return h * 2


def proj():
    torch.manual_seed(0)
    return Proj()
'''


def test_outputs_the_exporter_flattens_are_compared_as_the_module_returns_them(pytester):
    pytester.makepyfile(test_it=PROJ + '''
class WithNone(Proj):
    def forward(self, x):
        return self.proj(x), None


class Nested(Proj):
    def forward(self, x):
        h = self.proj(x)
        return {"logits": h, "extra": (h.sum(-1), None, [h * 2])}


@hwopt.accuracy(atol=1e-4)
def test_optional_none(hwopt_backend, hwopt_bench):
    torch.manual_seed(0)
    hwopt_bench.model(WithNone(), (torch.randn(4, 16),))


def test_nested(hwopt_backend, hwopt_bench):
    torch.manual_seed(0)
    hwopt_bench.model(Nested(), (torch.randn(4, 16),))
''')
    result = pytester.runpytest_subprocess(*ARGS, *NO_CACHE)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_optional_none*accuracy vs pytorch*onnxruntime*passed*"])


def test_a_hugging_face_model_output(pytester):
    pytest.importorskip("transformers")
    pytester.makepyfile(test_it='''
import torch
from transformers import BertConfig, BertModel


def test_tiny_bert(hwopt_backend, hwopt_bench):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    ids = torch.randint(0, 64, (2, 8))
    hwopt_bench.model(BertModel(config).eval(), (ids,))
''')
    result = pytester.runpytest_subprocess(*ARGS, *NO_CACHE)
    result.assert_outcomes(passed=1)


def test_a_model_returning_a_kv_cache_fails_once_with_the_fix(pytester):
    pytest.importorskip("transformers")
    pytester.makepyfile(test_it='''
import torch
from transformers import GPT2Config, GPT2LMHeadModel


def gpt2(**kwargs):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        **kwargs)
    return GPT2LMHeadModel(config).eval(), (torch.randint(0, 64, (1, 8)),)


def test_with_cache(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*gpt2())


def test_without_cache(hwopt_backend, hwopt_bench):
    hwopt_bench.model(*gpt2(use_cache=False))
''')
    result = pytester.runpytest_subprocess(*ARGS, *NO_CACHE)
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "use_cache=False" in text
    assert "\x1b[96m" not in text and "This is step 1/3" not in text
    assert "During handling of the above exception" not in text
    failure = text.split("_ test_with_cache", 1)[1].split("short test summary", 1)[0]
    assert failure.count("is a DynamicCache") == 1, failure  # printed once


def test_export_failure_keeps_the_cause_without_escape_codes(pytester):
    pytester.makepyfile(test_it=PROJ + '''
class Branchy(Proj):
    def forward(self, x):
        h = self.proj(x)
        if h.sum() > 0:  # data-dependent control flow
            return h
        return -h


def test_branchy(hwopt_backend, hwopt_bench):
    torch.manual_seed(0)
    hwopt_bench.model(Branchy(), (torch.randn(4, 16),))
''')
    # only the dynamo exporter: its message is the one wrapped in boilerplate
    pytester.makeconftest('''
def pytest_hwopt_backends(config):
    from pytest_hwopt.backends.cache import ArtifactCache
    from pytest_hwopt.backends.ort import OnnxRuntimeBackend

    return [OnnxRuntimeBackend(ArtifactCache(None), name="ort-dynamo", exporters=("dynamo",))]
''')
    result = pytester.runpytest_subprocess(*ARGS[:-1], "--hwopt-backends=ort-dynamo", *NO_CACHE)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    result.stdout.fnmatch_lines(["*ONNX export failed: dynamo: TorchExportError: *data-dependent"
                                 "* -- fix: the model branches on a tensor's values*"])
    assert "\x1b[" not in text and "This is step 1/3" not in text
    assert "Create an issue" not in text
    assert "During handling of the above exception" not in text


SEVERAL = PROJ + '''
model = proj()
big, small = torch.randn(64, 16), torch.randn(1, 16)


def test_two_inputs(hwopt_bench):
    hwopt_bench.model(model, (big,), name="ort-bs64", backend="onnxruntime")
    hwopt_bench.model(model, (small,), name="ort-bs1", backend="onnxruntime")


@hwopt.speedup(min=0.01, vs="pytorch", of="ort-bs1")
def test_vs_own_reference(hwopt_bench):
    hwopt_bench.model(model, (big,), name="ort-bs64", backend="onnxruntime")
    hwopt_bench.model(model, (small,), name="ort-bs1", backend="onnxruntime")


@hwopt.speedup(min=0.01, vs="pytorch")
def test_ambiguous(hwopt_bench):
    hwopt_bench.model(model, (big,), name="ort-bs64", backend="onnxruntime")
    hwopt_bench.model(model, (small,), name="ort-bs1", backend="onnxruntime")
'''


def test_each_candidate_is_compared_with_the_eager_run_of_its_own_inputs(pytester, tmp_path):
    out = tmp_path / "r.json"
    pytester.makepyfile(test_it=SEVERAL)
    result = pytester.runpytest_subprocess(*ARGS, *NO_CACHE, f"--hwopt-json={out}")
    result.assert_outcomes(passed=2, failed=1)
    text = result.stdout.str()
    # the failure's own text (the short summary repeats it, untruncated where CI is set)
    failure = text.split("short test summary", 1)[0]
    assert failure.count("hwopt: hwopt.speedup(min=0.01): vs='pytorch' is ambiguous: the test "
                         "has 2 references, one per module and inputs: 'pytorch-ort-bs64' (of "
                         "ort-bs64), 'pytorch-ort-bs1' (of ort-bs1)") == 1  # printed once
    assert "During handling of the above exception" not in text
    doc = json.loads(out.read_text())
    results = [r for r in doc["results"] if r["test"].endswith("test_two_inputs")]
    assert {r["variant"]: r.get("reference") for r in results} == {
        "pytorch-ort-bs64": None, "ort-bs64": "pytorch-ort-bs64",
        "pytorch-ort-bs1": None, "ort-bs1": "pytorch-ort-bs1"}
    pairs = {(c["kind"], c["variant"], c["vs"]) for c in doc["checks"]
             if c["test"].endswith("test_two_inputs")}
    assert pairs == {("accuracy", "ort-bs64", "pytorch-ort-bs64"),
                     ("accuracy", "ort-bs1", "pytorch-ort-bs1"),
                     ("speedup", "ort-bs64", "pytorch-ort-bs64"),
                     ("speedup", "ort-bs1", "pytorch-ort-bs1")}
    [speedup] = [c for c in doc["checks"] if c["test"].endswith("test_vs_own_reference")
                 and c["kind"] == "speedup" and c["status"] != "reported"]
    assert (speedup["variant"], speedup["vs"]) == ("ort-bs1", "pytorch-ort-bs1")


def test_an_edited_forward_is_exported_again(pytester, tmp_path):
    test_file = pytester.makepyfile(test_it=PROJ + '''
def test_proj(hwopt_backend, hwopt_bench):
    torch.manual_seed(0)
    hwopt_bench.model(proj(), (torch.randn(4, 16),))
''')

    def run(n: int) -> bool:
        out = tmp_path / f"r{n}.json"
        result = pytester.runpytest_subprocess(*ARGS, f"--hwopt-json={out}")
        result.assert_outcomes(passed=1)
        row = next(r for r in json.loads(out.read_text())["results"]
                   if r["variant"] == "onnxruntime")
        if row["from_cache"]:
            result.stdout.fnmatch_lines(["*test_proj*onnxruntime*from cache*"])
        return bool(row["from_cache"])

    assert run(1) is False
    assert run(2) is True
    # same class, weights and shapes; other code: the old graph must not be used
    test_file.write_text(test_file.read_text().replace("return h * 2",
                                                       "return torch.relu(h) * 2"))
    assert run(3) is False


def test_no_export_folder_outlives_a_run_without_pytest_cache(pytester, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    pytester.makepyfile(test_it=PROJ + '''
def test_proj(hwopt_backend, hwopt_bench):
    model = proj().train()
    hwopt_bench.model(model, (torch.randn(4, 16),))
    assert not model.training  # documented: the model path puts the module in eval mode
''')
    result = pytester.runpytest_subprocess(*ARGS, *NO_CACHE)
    result.assert_outcomes(passed=1)
    assert not [p for p in scratch.iterdir() if p.name.startswith("pytest-hwopt-")]
