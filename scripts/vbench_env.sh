#!/usr/bin/env bash
# Build the separate Python environment in which `eval=vbench` runs the real vbench 0.1.5.
#
# vbench pins numpy<2 and transformers==4.33.2 and needs torchvision, none of which may enter the
# project's own environment (PyPI's torchvision does not import beside the CPU torch 2.13.0). So it
# lives in its own venv: torch 2.14.1 + torchvision 0.29.1 (they import together unpatched), the
# minimal working set of vbench's imports, then vbench itself without its dependency list.
#
#   scripts/vbench_env.sh [ENV_DIR]      default: $RELAXBENCH_VBENCH_ENV or ~/.cache/relaxbench/vbench-env
#
# Afterwards point the harness at it: eval=vbench eval.python=ENV_DIR/bin/python (the default path
# is the same as this script's). Weights are never downloaded: put VBench's weight layout in a folder
# and pass eval.weights_dir=THAT_FOLDER (it becomes VBENCH_CACHE_DIR).
set -euo pipefail

ENV_DIR="${1:-${RELAXBENCH_VBENCH_ENV:-$HOME/.cache/relaxbench/vbench-env}}"
PYTHON="${PYTHON:-python3.11}"

if ! command -v "$PYTHON" >/dev/null; then
  echo "error: $PYTHON not found (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

"$PYTHON" -m venv "$ENV_DIR"
PIP=("$ENV_DIR/bin/python" -m pip install --quiet)

# Core set: enough for vbench's temporal_flickering and dynamic_degree (RAFT ships inside vbench).
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1" "numpy<2" pillow decord opencv-python-headless \
  tqdm easydict scipy
# motion_smoothness reads AMT's config with omegaconf and imports imageio; the CLIP dimensions import
# openai-clip, whose own requirements would pull torchvision again, hence --no-deps with its needs
# beside it (ftfy, regex, and pkg_resources from setuptools<81).
"${PIP[@]}" omegaconf pyyaml imageio ftfy regex "setuptools<81"
"${PIP[@]}" --no-deps openai-clip vbench==0.1.5
# imaging_quality imports pyiqa's MUSIQ. pyiqa's own requirements pin transformers (==4.37.2 in 0.1.13,
# >=5 since 0.1.16) against vbench's ==4.33.2 and pull torchvision again; its MUSIQ needs none of them,
# only what pyiqa's package import touches: requests, huggingface_hub and pandas (numpy kept below 2).
"${PIP[@]}" requests huggingface_hub pandas "numpy<2"
"${PIP[@]}" --no-deps pyiqa==0.1.13

"$ENV_DIR/bin/python" - <<'PY'
import numpy, torch, torchvision, vbench  # noqa: F401  (import check)
from vbench.third_party.RAFT.core.raft import RAFT  # noqa: F401
import clip, vbench.motion_smoothness, vbench.imaging_quality  # noqa: F401
print(f"vbench env ok: torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}")
PY
echo "python: $ENV_DIR/bin/python"
