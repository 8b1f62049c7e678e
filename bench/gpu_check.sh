#!/usr/bin/env bash
# Device check for the full profile: one call of under 7 minutes on a GPU node, offline (shrunk on a CPU).
#   bench/gpu_check.sh --data CIFAR10_ARCHIVE [--fid-weights PTH] [--out DIR] [--work DIR] [--limit-s S]
#                      [--wheels DIR]
# Needs only python3 with the measuring packages: torch, torchvision, timm, numpy, pandas, PyYAML,
# diffusers, pytorch-fid (and scipy, which it brings); torch 2.11 or newer (tested: 2.11.0, 2.14.1). It
# uses the machine's own python3 (or $CIFAR_REPORT_PYTHON, or this checkout's .venv) and never creates
# an environment or downloads. Missing packages: run bench/wheels.sh DIR where pip reaches an index,
# bring DIR along, and pass --wheels DIR (installed with pip --no-index into the working folder).
# --out (default outputs/bench/) receives only gpu_check.json and gpu_check.log; the decoded data,
# checkpoints and compiled kernels go to a working folder (in --work DIR, else the system's temporary
# folder) that is removed at the end. Without --fid-weights, Inception is timed with random weights.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="" WEIGHTS="" OUT="${BENCH_DIR:-$PWD/outputs/bench}" WORK_IN="" LIMIT="" WHEELS=""
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="${2:?--data needs a path}"; shift 2 ;;
    --fid-weights) WEIGHTS="${2:?--fid-weights needs a path}"; shift 2 ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --work) WORK_IN="${2:?--work needs a folder}"; shift 2 ;;
    --limit-s) LIMIT="${2:?--limit-s needs seconds}"; shift 2 ;;
    --wheels) WHEELS="${2:?--wheels needs the folder bench/wheels.sh filled}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for f in "$DATA" "$WEIGHTS"; do
  [ -z "$f" ] || [ "$f" = synthetic ] || [ -e "$f" ] || { echo "gpu_check.sh: no such file: $f" >&2; exit 2; }
done
# the working folder: always a fresh subfolder, so removing it never touches anything of the user's
mkdir -p "$OUT" ${WORK_IN:+"$WORK_IN"} || exit 2
WORK="$(mktemp -d "${WORK_IN:-${TMPDIR:-/tmp}}/gpu_check.XXXXXX")" || exit 2
trap 'rm -rf "$WORK"' EXIT
OUT="$(cd "$OUT" && pwd)"

# the interpreter: $CIFAR_REPORT_PYTHON, else this checkout's .venv, else python3 (no venv is made)
PY="${CIFAR_REPORT_PYTHON:-}"
[ -z "$PY" ] && [ -x .venv/bin/python ] && PY="$PWD/.venv/bin/python"
[ -z "$PY" ] && PY="$(command -v python3 || true)"
[ -n "$PY" ] || { echo "gpu_check.sh: no python3 found; set CIFAR_REPORT_PYTHON" >&2; exit 2; }
if [ -n "$WHEELS" ]; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "gpu_check.sh: --wheels $WHEELS holds no .whl files" >&2; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" "$WHEELS"/*.whl \
    || { echo "gpu_check.sh: pip could not install the wheels in $WHEELS (see above)" >&2; exit 2; }
  # appended after the machine's own packages: the wheels only fill what it lacks
  export CIFAR_CHECK_SITE="$WORK/site"
fi
missing=$("$PY" - <<'EOF'
import importlib, os, sys
if os.environ.get("CIFAR_CHECK_SITE"):
    sys.path.append(os.environ["CIFAR_CHECK_SITE"])
needs = {"torch": "torch", "torchvision": "torchvision", "timm": "timm", "numpy": "numpy",
         "pandas": "pandas", "yaml": "PyYAML", "diffusers": "diffusers", "pytorch_fid": "pytorch-fid",
         "scipy": "scipy"}
lacks = []
for mod, dist in needs.items():
    try:
        importlib.import_module(mod)
    except ImportError:
        lacks.append(dist)
print(" ".join(lacks))
if "torch" not in lacks:
    import torch
    if tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 11):
        print(f"gpu_check.sh: note: torch {torch.__version__} is older than the oldest tested (2.11)",
              file=sys.stderr)
EOF
)
if [ -n "$missing" ]; then
  only=$(echo "$missing" | tr ' ' ',')
  pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "gpu_check.sh: $PY lacks: $missing. Where pip reaches a package index, run" \
       "bench/wheels.sh DIR --only $only --python-version $pyver, bring DIR here and rerun with --wheels DIR." >&2
  exit 2
fi

export CIFAR_REPORT_CACHE="$WORK/cache" TORCHINDUCTOR_CACHE_DIR="$WORK/inductor"
export CIFAR_REPORT_PROGRESS=log PYTHONUNBUFFERED=1
export TORCH_HOME="$WORK/torch_home"  # holds only the weights linked below: nothing is downloaded
if [ -n "$WEIGHTS" ]; then
  mkdir -p "$TORCH_HOME/hub/checkpoints"
  ln -s "$(cd "$(dirname "$WEIGHTS")" && pwd)/$(basename "$WEIGHTS")" \
        "$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth"
fi
args=(--out "$OUT" --work "$WORK")
[ -n "$DATA" ] && args+=(--data "$DATA")
# the check ends itself before its limit; the shell cuts it there in any case, keeping the saved JSON
if [ -z "$LIMIT" ]; then
  LIMIT=3600  # a CPU: the shrunk run proves the paths
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU && LIMIT=420
fi
args+=(--limit-s "$LIMIT")
timeout -k 5 "$LIMIT" "$PY" bench/gpu_check.py "${args[@]}" 2>&1 | tee "$OUT/gpu_check.log"
rc="${PIPESTATUS[0]}"
[ "$rc" = 124 ] && echo "gpu_check.sh: cut at $LIMIT s; $OUT/gpu_check.json keeps every section finished before" \
  | tee -a "$OUT/gpu_check.log"
exit "$rc"
