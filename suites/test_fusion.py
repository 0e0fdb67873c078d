"""Operator fusion: what ONNX Runtime's graph optimiser fuses, what it buys; torch.compile
graphs."""

from __future__ import annotations

import pytest
import torch
from models import MLP, SmallCNN, TinyGPT, seeded

from pytest_hwopt import hwopt

pytestmark = pytest.mark.fusion
pytest.importorskip("onnxruntime")


def ops(results, name: str) -> dict[str, int]:
    return results[name].extra["optimized_ops"]


def cnn_at_all_levels(hwopt_bench, batch: int):
    """The CNN from the graph as the model wrote it (BatchNorm not folded by the exporter)
    at three ORT levels, so the ratios are what ORT's optimiser does: fold BatchNorm, fuse
    Conv+ReLU (FusedConv, level "extended"), and on CPU re-lay convolutions out as NCHWc."""
    cnn, x = seeded(SmallCNN()), (torch.randn(batch, 3, 64, 64),)
    hwopt_bench.model(cnn, x, backend="ort-raw-none", name="ort-none")
    hwopt_bench.model(cnn, x, backend="ort-raw-extended", name="ort-extended")
    hwopt_bench.model(cnn, x, backend="ort-raw-all", name="ort-all")
    results = hwopt_bench.run()
    raw = ops(results, "ort-none")
    assert raw.get("Relu") == 4 and raw.get("BatchNormalization") == 4, raw
    extended = ops(results, "ort-extended")
    assert extended.get("com.microsoft:FusedConv") == 4, extended
    assert "BatchNormalization" not in extended and "Relu" not in extended, extended
    fused = ops(results, "ort-all")
    assert fused.get("com.microsoft.nchwc:Conv") == 4 and "Relu" not in fused, fused
    for level in ("extended", "all"):
        hwopt_bench.note(f"{level}_vs_none",
                         results["ort-none"].median_ms / results[f"ort-{level}"].median_ms)


@pytest.mark.parametrize("batch", [1, 8])
@hwopt.speedup(min=1.0, vs="ort-none", of="ort-all")
def test_ort_fuses_conv_relu_and_it_pays(hwopt_bench, batch):
    """ORT's optimiser pays (> 1x), with the fusions it claims counted in the graph.

    The 1.5x budget measured for the reference CNN (1.84-2.10x on the CI CPU) is not
    asserted: for this CNN, ORT's gain is the NCHWc re-layout ("all": 1.38-1.67x across
    runs at batch 1 and 8, each run's interval about +-0.05), while BatchNorm folding and
    Conv+ReLU fusion ("extended") buy only 1.03-1.07x, so 1.5x would flap. The ratios are
    in the notes of each run.
    """
    cnn_at_all_levels(hwopt_bench, batch)


def test_transformer_fusions_are_counted():
    """Gelu from Erf, FusedMatMul, SkipLayerNormalization; and Attention: 0 on this graph."""
    from pathlib import Path
    from tempfile import TemporaryDirectory

    import onnxruntime as ort

    from pytest_hwopt.backends.onnx_export import export, op_counts

    model, x = seeded(TinyGPT()), (torch.randint(0, 512, (1, 64)),)
    with TemporaryDirectory() as tmp:
        src = Path(tmp) / "gpt.onnx"
        export(model, x, src, exporters=("torchscript",))
        before = op_counts(src)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(tmp) / "gpt.opt.onnx")
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        after = op_counts(options.optimized_model_filepath)
    print(f"before: {before}\nafter: {after}")
    assert before.get("Erf") == 2 and "Gelu" not in before
    assert after.get("com.microsoft:Gelu", after.get("Gelu", 0)) == 2, after
    assert after.get("com.microsoft:FusedMatMul", 0) >= 1, after
    assert after.get("com.microsoft:SkipLayerNormalization", 0) >= 1, after
    # ORT's CPU optimiser does not recognise this attention pattern: say so, do not assume
    assert after.get("com.microsoft:Attention", 0) == 0


@hwopt.speedup(min={"cuda": 1.2}, vs="pytorch")
def test_torch_compile_mlp_has_no_graph_breaks(hwopt_bench):
    """Inductor compiles the MLP in one graph; a speedup is budgeted on CUDA only
    (0.94-1.20x measured on the 2-core CPU)."""
    name = hwopt_bench.model(seeded(MLP()), (torch.randn(32, 512),), backend="torch-compile")
    facts = hwopt_bench.run()[name].extra
    assert facts["graph_breaks"] == 0, facts["graph_break_reasons"]


@hwopt.requires(device="cuda")
@hwopt.speedup(min={"cuda": 2.0}, vs="pytorch")
def test_torch_compile_cuda_graphs_decoder_batch1(hwopt_bench):
    """CUDA graphs remove the launch overhead that dominates a small decoder at batch 1."""
    hwopt_bench.model(seeded(TinyGPT()), (torch.randint(0, 512, (1, 64)),),
                      backend="torch-compile")
