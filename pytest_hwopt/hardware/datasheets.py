"""Published peaks of NVIDIA GPUs, from vendor datasheets, and how a device name finds its entry.

Figures are dense (without 2:4 sparsity). A device name such as
``NVIDIA H100 80GB HBM3`` matches the first entry whose keys all appear in it as
whole words and none of whose excluded words do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypedDict

DATASHEET = "published datasheet"


class PublishedPeakRecord(TypedDict):
    """A datasheet entry as saved with results: GB/s, and TFLOP/s per dtype."""

    name: str
    gbs: float
    tflops: dict[str, float]
    source: str


@dataclass(frozen=True)
class PublishedPeak:
    """Datasheet peaks of one GPU: memory bandwidth (GB/s) and dense TFLOP/s per dtype.

    ``fp32`` is the non-tensor (CUDA core) rate; ``tf32``, ``fp16`` and ``bf16``
    are dense tensor-core rates with FP32 accumulation.
    """

    name: str
    keys: tuple[str, ...]  # all must appear as words in the device name
    gbs: float
    tflops: dict[str, float]
    source: str
    exclude: tuple[str, ...] = ()

    def matches(self, device_name: str) -> bool:
        """Whether every key and no excluded word appears in ``device_name`` (as words)."""
        words = _words(device_name)
        return (all(_has(words, k) for k in self.keys)
                and not any(_has(words, k) for k in self.exclude))

    def to_dict(self) -> PublishedPeakRecord:
        return {"name": self.name, "gbs": self.gbs, "tflops": dict(self.tflops),
                "source": self.source}


def _words(name: str) -> str:
    """``name`` lower-cased, split on anything but letters and digits, padded with spaces."""
    return " " + " ".join(re.split(r"[^a-z0-9]+", name.lower())).strip() + " "


def _has(words: str, key: str) -> bool:
    return _words(key) in words


def _sheet(doc: str) -> str:
    return f"{DATASHEET}: {doc} (dense, without sparsity)"


# Most specific first: the first entry whose keys all appear in the name wins.
PUBLISHED: tuple[PublishedPeak, ...] = (
    PublishedPeak("NVIDIA H200 SXM", ("h200",), 4800.0,
                  {"fp32": 67.0, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
                  _sheet("NVIDIA H200 Tensor Core GPU datasheet"), exclude=("nvl",)),
    PublishedPeak("NVIDIA H100 PCIe", ("h100", "pcie"), 2000.0,
                  {"fp32": 51.0, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0},
                  _sheet("NVIDIA H100 Tensor Core GPU datasheet, PCIe")),
    PublishedPeak("NVIDIA H100 SXM", ("h100",), 3350.0,
                  {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
                  _sheet("NVIDIA H100 Tensor Core GPU datasheet, SXM"),
                  exclude=("pcie", "nvl")),
    PublishedPeak("NVIDIA A100 SXM4 80GB", ("a100", "sxm4", "80gb"), 2039.0,
                  {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
                  _sheet("NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM")),
    PublishedPeak("NVIDIA A100 80GB PCIe", ("a100", "80gb"), 1935.0,
                  {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
                  _sheet("NVIDIA A100 Tensor Core GPU datasheet, 80GB PCIe")),
    PublishedPeak("NVIDIA A100 40GB", ("a100",), 1555.0,
                  {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
                  _sheet("NVIDIA A100 Tensor Core GPU datasheet, 40GB")),
    PublishedPeak("NVIDIA L40S", ("l40s",), 864.0,
                  {"fp32": 91.6, "tf32": 183.0, "fp16": 362.0, "bf16": 362.0},
                  _sheet("NVIDIA L40S datasheet")),
    PublishedPeak("NVIDIA L4", ("l4",), 300.0,
                  {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0},
                  _sheet("NVIDIA L4 Tensor Core GPU datasheet")),
    PublishedPeak("NVIDIA A10", ("a10",), 600.0,
                  {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0},
                  _sheet("NVIDIA A10 Tensor Core GPU datasheet")),
    PublishedPeak("NVIDIA T4", ("t4",), 320.0,
                  {"fp32": 8.1, "fp16": 65.0},
                  _sheet("NVIDIA T4 Tensor Core GPU datasheet; FP16 mixed precision")),
    PublishedPeak("NVIDIA GeForce RTX 4090", ("rtx", "4090"), 1008.0,
                  {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2},
                  _sheet("NVIDIA Ada Lovelace architecture whitepaper, RTX 4090, "
                         "FP32 accumulate")),
)


def published_peak(device_name: str) -> PublishedPeakRecord | None:
    """Datasheet peaks for a device name such as ``NVIDIA H100 80GB HBM3``, or None."""
    for entry in PUBLISHED:
        if entry.matches(device_name):
            return entry.to_dict()
    return None
