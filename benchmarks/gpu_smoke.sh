#!/usr/bin/env bash
# GPU smoke check: a short GRPO run on a ~0.5B-parameter model built from a config (no hub access),
# reporting the GPU's name, sampling and training tokens/s and peak memory as one JSON line (last
# line of stdout). Finishes in under 5 minutes on one modern GPU.
#
#   benchmarks/gpu_smoke.sh                  # on a machine with CUDA
#   SMOKE_STEPS=3 benchmarks/gpu_smoke.sh    # fewer steps (default 5; the first is warm-up)
#   SMOKE_TINY=1 benchmarks/gpu_smoke.sh     # the same path, tiny model, on the CPU (a dry run)
#
# Needs python with torch (CUDA build), transformers, tokenizers, safetensors and rftgym's own
# dependencies; it installs nothing (the GPU machine may have no network). rftgym is imported
# from this checkout even when it is not pip-installed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || { echo "gpu_smoke: no '$PYTHON' on PATH (set PYTHON=...)" >&2; exit 2; }

# The repository root is the package: make `import rftgym` resolve to it without installing.
if ! (cd / && "$PYTHON" -c "import rftgym" 2>/dev/null); then
    SHIM="$(mktemp -d)"
    trap 'rm -rf "$SHIM"' EXIT
    ln -s "$REPO" "$SHIM/rftgym"
    export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
fi

missing="$(cd / && "$PYTHON" - <<'PY'
import importlib
names = ["torch", "transformers", "tokenizers", "safetensors", "numpy", "yaml", "gymnasium", "rftgym"]
bad = []
for n in names:
    try:
        importlib.import_module(n)
    except Exception as exc:
        bad.append(f"{n} ({type(exc).__name__}: {exc})")
print("; ".join(bad))
PY
)"
if [ -n "$missing" ]; then
    echo "gpu_smoke: cannot run, missing python packages: $missing" >&2
    exit 2
fi

if [ "${SMOKE_TINY:-0}" != "1" ]; then
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_smoke: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees no CUDA GPU here;" \
             "run it on a GPU machine, or SMOKE_TINY=1 for a CPU dry run" >&2
        exit 2
    fi
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 2>/dev/null || true
fi

cd "$REPO"
exec "$PYTHON" benchmarks/gpu_smoke.py
