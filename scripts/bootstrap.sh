# Sourced by run_all.sh and run_tests.sh: sets $PY to a Python that has requirements.txt installed.
# 1. The active python3 (Colab, a conda env, an activated venv) when it already has every requirement;
# 2. else ./.venv, created and filled from requirements.txt on first use.
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_probe='import torch, torchvision, timm, pytorch_fid, pytorch_grad_cam, diffusers, sklearn, seaborn, pandas, tabulate, yaml, tqdm, tensorboard, papermill, nbconvert, latex2mathml, jupytext, ipykernel, pytest'
_has_reqs() { "$1" -c "$_probe" >/dev/null 2>&1; }

if [ -n "${CIFAR_REPORT_PYTHON:-}" ] && _has_reqs "$CIFAR_REPORT_PYTHON"; then
  PY="$CIFAR_REPORT_PYTHON"
elif [ -x "$_root/.venv/bin/python" ] && _has_reqs "$_root/.venv/bin/python"; then
  PY="$_root/.venv/bin/python"
elif command -v python3 >/dev/null && _has_reqs "$(command -v python3)"; then
  PY="$(command -v python3)"
else
  echo "[setup] creating $_root/.venv and installing requirements.txt (one time, a few minutes)" >&2
  python3 -m venv "$_root/.venv" || { echo "[setup] python3 -m venv failed; install python3-venv" >&2; exit 2; }
  "$_root/.venv/bin/python" -m pip install --quiet --upgrade pip >&2 || exit 2
  "$_root/.venv/bin/python" -m pip install --quiet -r "$_root/requirements.txt" >&2 \
    || { echo "[setup] pip install -r requirements.txt failed (see above)" >&2; exit 2; }
  PY="$_root/.venv/bin/python"
fi
export PATH="$(dirname "$PY"):$PATH"
# pytorch-fid looks for its Inception weights under $TORCH_HOME/hub/checkpoints; offline machines put them there.
export TORCH_HOME="${TORCH_HOME:-$HOME/.cache/torch}"
