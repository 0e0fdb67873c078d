#!/usr/bin/env bash
# Every CUDA path of pytest-hwopt in one command, within 8 minutes:
#
#     bash scripts/gpu-check.sh OUTDIR
#
# Writes OUTDIR/gpu-check.json and OUTDIR/gpu-check.md (see scripts/gpu_check.py).
# Needs an NVIDIA GPU with PyTorch already installed; installs nothing from the
# network. If the plugin is not installed it tries an editable install of this
# checkout without dependencies or build isolation (needs hatchling locally), and
# otherwise runs from the checkout via PYTHONPATH.
set -u

out="${1:-gpu-check-out}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."

py="${PYTHON:-}"
if [ -z "$py" ]; then
    if command -v python >/dev/null 2>&1; then py=python; else py=python3; fi
fi

has_plugin() {
    "$py" - <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import entry_points
sys.exit(0 if any(ep.name == "hwopt" for ep in entry_points(group="pytest11")) else 1)
EOF
}

if ! has_plugin; then
    if "$py" -m pip install -e . --no-deps --no-build-isolation -q \
            >"$out/pip-install.log" 2>&1; then
        echo "[gpu-check] installed this checkout (editable, no deps)"
    else
        echo "[gpu-check] editable install failed (see $out/pip-install.log); using PYTHONPATH"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# the script keeps its own 470 s budget; this is the backstop
timeout -k 10 480 "$py" scripts/gpu_check.py "$out"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "[gpu-check] timed out after 480 s; partial report in $out/gpu-check.json"
fi
exit "$rc"
