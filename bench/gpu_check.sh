#!/usr/bin/env bash
# Device check for the full profile, in under 10 minutes on one GPU (it also runs on a CPU, shrunk).
#   bench/gpu_check.sh [--data CIFAR10_ARCHIVE_OR_FOLDER] [--fid-weights pt_inception-2015-12-05-6726825d.pth]
# Needs no network: CIFAR-10 and the FID weights are passed by path (without --data it uses the synthetic set
# and says so). Writes the full log to $BENCH_DIR (default outputs/bench/) and prints a short table last.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="" WEIGHTS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="${2:?--data needs a path}"; shift 2 ;;
    --fid-weights) WEIGHTS="${2:?--fid-weights needs a path}"; shift 2 ;;
    *) sed -n '2,5p' "$0"; exit 2 ;;
  esac
done
source scripts/bootstrap.sh
export BENCH_DIR="${BENCH_DIR:-$PWD/outputs/bench}"
mkdir -p "$BENCH_DIR"
if [ -n "$WEIGHTS" ]; then
  [ -f "$WEIGHTS" ] || { echo "--fid-weights: no file $WEIGHTS" >&2; exit 2; }
  export TORCH_HOME="$BENCH_DIR/torch_home"
  mkdir -p "$TORCH_HOME/hub/checkpoints"
  ln -sf "$(cd "$(dirname "$WEIGHTS")" && pwd)/$(basename "$WEIGHTS")" \
        "$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth"
fi
export CIFAR_REPORT_CACHE="${CIFAR_REPORT_CACHE:-$BENCH_DIR/cache}"
export CIFAR_REPORT_PROGRESS=log
args=()
[ -n "$DATA" ] && args+=(--data "$DATA")
timeout 570 "$PY" bench/gpu_check.py "${args[@]}" --out "$BENCH_DIR" 2>&1 | tee "$BENCH_DIR/gpu_check.log"
exit "${PIPESTATUS[0]}"
