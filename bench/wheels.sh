#!/usr/bin/env bash
# Wheels for bench/gpu_check.sh on an offline GPU node whose Python lacks some measuring packages.
#   bench/wheels.sh DIR [--only diffusers,pytorch-fid] [--skip scipy] [--python-version 3.12] [--platform TAG]
#   bench/wheels.sh --list [--only ...] [--skip ...]     (print what it would download, and exit)
# Run it where pip reaches a package index; it downloads into DIR the pinned timm, diffusers, pytorch-fid,
# pandas, PyYAML and scipy (requirements.txt; --only: just the ones gpu_check.sh said the node lacks)
# and everything they need, except what every CUDA image with
# torch has: torch, torchvision, numpy, pillow, triton and NVIDIA's libraries. The versions are the ones
# this checkout's environment resolved (its .venv, or $CIFAR_REPORT_PYTHON). Binary wheels for the GPU
# node's Python (--python-version, default this Python's) and platform; prints the total size. --skip
# leaves out more packages the node is known to have (scipy alone is 34 MB).
# On the GPU node: bench/gpu_check.sh --wheels DIR --data ... installs them with pip --no-index.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR="" LIST="" PYVER="" PLATFORMS=() SKIP="" ONLY="timm,diffusers,pytorch-fid,pandas,PyYAML,scipy"
while [ $# -gt 0 ]; do
  case "$1" in
    --list) LIST=1; shift ;;
    --skip) SKIP="${2:?--skip needs a comma-separated list}"; shift 2 ;;
    --only) ONLY="${2:?--only needs a comma-separated list}"; shift 2 ;;
    --python-version) PYVER="${2:?--python-version needs X.Y}"; shift 2 ;;
    --platform) PLATFORMS+=(--platform "${2:?--platform needs a tag}"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "wheels.sh: unknown option $1" >&2; exit 2 ;;
    *) DIR="$1"; shift ;;
  esac
done
[ -n "$DIR" ] || [ -n "$LIST" ] || { sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
PY="${CIFAR_REPORT_PYTHON:-}"
[ -z "$PY" ] && [ -x .venv/bin/python ] && PY="$PWD/.venv/bin/python"
[ -z "$PY" ] && PY="$(command -v python3 || true)"
# what the measuring packages need, pinned as this environment resolved them
pins=$(ONLY="$ONLY" SKIP="$SKIP" "$PY" - <<'EOF'
import importlib.metadata as md
import os
import re
import sys

from packaging.markers import Marker

SKIP = {"torch", "torchvision", "numpy", "pillow", "triton"}  # on every CUDA image that has torch
SKIP |= {re.sub(r"[-_.]+", "-", s).lower() for s in os.environ["SKIP"].split(",") if s}
todo, pins = os.environ["ONLY"].split(","), {}
while todo:
    name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
    if name in pins or name in SKIP or name.startswith("nvidia-"):
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        sys.exit(f"wheels.sh: {sys.executable} has no {name}; run ./run_tests.sh -k params once (it "
                 "installs requirements.txt into .venv), or set CIFAR_REPORT_PYTHON")
    pins[name] = dist.version
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        if marker and ("extra" in marker or not Marker(marker).evaluate()):
            continue
        todo.append(re.split(r"[ <>=!~\[(]", spec.strip())[0])
print(" ".join(f"{k}=={v}" for k, v in sorted(pins.items())))
EOF
) || exit 2
if [ -n "$LIST" ]; then echo "$pins" | tr ' ' '\n'; exit 0; fi
PYVER="${PYVER:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
if [ ${#PLATFORMS[@]} -eq 0 ]; then
  for n in 17 24 27 28 31 34 35; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
  PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
fi
mkdir -p "$DIR" || exit 2
echo "[wheels] for Python $PYVER: $pins"
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$PYVER" \
  "${PLATFORMS[@]}" -d "$DIR" $pins || { echo "wheels.sh: pip download failed (see above)" >&2; exit 2; }
echo "[wheels] $(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR;" \
     "on the GPU node: bench/gpu_check.sh --wheels $DIR --data ..."
