"""The environment saved with every result: machine, device, library versions, threads."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

from pytest_hwopt.hardware.devices import Device, cpu_facts

LIBRARIES = ("pytest", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino",
             "tensorrt", "nvidia-ml-py", "transformers")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results (read from metadata, not imported)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def collect(device: Device | None, threads: int) -> dict[str, object]:
    """Everything a reader needs to judge whether two results are comparable.

    Python, platform, host, library versions, ``threads`` and the thread variables
    set, the CPU's facts and, with a device, its name, facts and peaks (JSON-ready).
    """
    env: dict[str, object] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": platform.node(),
        "versions": versions(),
        "threads": threads,
        "thread_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        **cpu_facts(),
    }
    if device is not None:
        env["device"] = device.torch_device
        env["device_name"] = device.name
        env.update({k: v for k, v in device.facts.items() if k not in env})
        if device.peak:
            env["peak"] = device.peak
    return env
