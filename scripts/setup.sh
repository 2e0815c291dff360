#!/usr/bin/env bash
# Create .venv (if missing) and install phylovi with its test extra into it.
# On machines that carry the CPU wheel torch==2.13.0 on disk, take that one
# rather than letting pip download a multi-GB CUDA build; override with
# PHYLOVI_TORCH="torch==X.Y" or PHYLOVI_TORCH="" to let pip choose.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PHYLOVI_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch" 2>/dev/null; then
    TORCH_SPEC=${PHYLOVI_TORCH-torch==2.13.0}
    if [ -n "$TORCH_SPEC" ]; then
        "$PY" -m pip install --quiet "$TORCH_SPEC"
    fi
fi
"$PY" -m pip install --quiet -e ".[test]"
