#!/usr/bin/env bash
# Every CUDA path of pytest-hwopt in one command, within 8 minutes:
#
#     bash scripts/gpu-check.sh [OUTDIR] [PYTEST ARGS...]
#
# Runs the GPU check's tests (tests/gpu, one test per CUDA path, then the shipped suites
# on cuda) and writes OUTDIR/gpu-check.json and OUTDIR/gpu-check.md (see
# tests/gpu/conftest.py); OUTDIR defaults to docs/results/gpu-check. Exit status 0 when
# every check held or CUDA is not usable here (every section then says why it skipped),
# else pytest's.
# Needs pytest and NumPy (the plugin's own dependency) and, for the sections to run, an
# NVIDIA GPU with a CUDA build of PyTorch. Optional pieces, each section skipped with
# the reason without it: nvidia-ml-py (NVML), triton and a C compiler (torch.compile),
# onnxruntime-gpu with onnx (ONNX Runtime), tensorrt (native TensorRT). Installs nothing
# from the network: if the plugin is not installed it tries an editable install of this
# checkout without an index, dependencies or build isolation (needs hatchling locally),
# and otherwise runs from the checkout via PYTHONPATH.
set -u

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/docs/results/gpu-check}"
shift || true
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."

py="${PYTHON:-}"
if [ -z "$py" ]; then
    if command -v python >/dev/null 2>&1; then py=python; else py=python3; fi
fi

if ! "$py" -c "import pytest, numpy" >/dev/null 2>&1; then
    echo "[gpu-check] $py cannot import pytest and numpy; the check needs both" \
         "(pip install 'pytest>=8' numpy)" >&2
    exit 2
fi
"$py" - <<'EOF' || true
import importlib.util
pieces = {"torch": "the CUDA sections", "pynvml": "NVML (nvidia-ml-py)",
          "triton": "torch.compile on CUDA", "onnxruntime": "ONNX Runtime (onnxruntime-gpu)",
          "onnx": "the ONNX export", "tensorrt": "native TensorRT"}
missing = [f"{name} ({what})" for name, what in pieces.items()
           if importlib.util.find_spec(name) is None]
print("[gpu-check] optional pieces missing, their sections skip:",
      ", ".join(missing) if missing else "none")
EOF

has_plugin() {
    "$py" - <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import entry_points
sys.exit(0 if any(ep.name == "hwopt" for ep in entry_points(group="pytest11")) else 1)
EOF
}

if ! has_plugin; then
    if "$py" -m pip install -e . --no-index --no-deps --no-build-isolation -q \
            >"$out/pip-install.log" 2>&1; then
        echo "[gpu-check] installed this checkout (editable, no deps)"
    else
        echo "[gpu-check] editable install failed (see $out/pip-install.log); using PYTHONPATH"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# the tests keep a 470 s budget (a section that needs more than is left skips, with the
# reason); this is the backstop. Warnings are shown, not turned into failures, as the
# checks are about measurements.
timeout -k 10 480 "$py" -m pytest tests/gpu --gpu-check-out="$out" --gpu-check-budget-s=470 \
    -p no:cacheprovider -W default -v -rs "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "[gpu-check] timed out after 480 s; partial report in $out/gpu-check.json"
fi
exit "$rc"
