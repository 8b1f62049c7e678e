#!/usr/bin/env bash
# Rebuild the report: run every chapter notebook with papermill under one parameter profile, export HTML.
#   ./run_all.sh [--profile auto|smoke|quick|colab|full|full-long] [--only 01,03] [--data PATH] [--hours H] [--yes]
#                [--gpus N [--nnodes M --node-rank R --master HOST:PORT]]
# On a GPU, auto picks the largest profile projected to fit --hours (default 4); a profile projected over it runs
# only with --yes. --gpus N first trains every run of the chapters on N processes per node under torchrun
# (one GPU each; on a CPU, N gloo processes), then renders the notebooks, which find every run finished.
# Outputs go to outputs/<profile>/ (or $CIFAR_REPORT_OUTPUTS/<profile>/): tables, figures, notebooks, html/.
set -uo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
ARGS="$*"
PROFILE=auto ONLY="" DATA="" HOURS=4 YES="" GPUS="" NNODES=1 NODE_RANK="" MASTER=""
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a value}"; shift 2 ;;
    --only) ONLY="${2:?--only needs a list like 01,03}"; shift 2 ;;
    --data) DATA="${2:?--data needs a path}"; shift 2 ;;
    --hours) HOURS="${2:?--hours needs a number of hours}"; shift 2 ;;
    --yes) YES="--yes"; shift ;;
    --gpus) GPUS="${2:?--gpus needs a number of processes per node}"; shift 2 ;;
    --nnodes) NNODES="${2:?--nnodes needs a number of nodes}"; shift 2 ;;
    --node-rank) NODE_RANK="${2:?--node-rank needs the rank of this node, 0 to nnodes-1}"; shift 2 ;;
    --master) MASTER="${2:?--master needs HOST:PORT of node 0}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -n "$GPUS" ] && ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
  echo "[run_all] --gpus $GPUS: expected a number of processes per node, e.g. --gpus 4" >&2; exit 2
fi
if [ "$NNODES" != 1 ] && { [ -z "$GPUS" ] || [ -z "$NODE_RANK" ] || [[ "$MASTER" != *:* ]]; }; then
  echo "[run_all] --nnodes $NNODES needs --gpus N, --node-rank R and --master HOST:PORT of node 0" >&2
  exit 2
fi
source scripts/bootstrap.sh

# why CUDA is unusable here ("" when it works): the torch build or the driver
CUDA_WHY=$("$PY" -c "import torch
if torch.cuda.is_available(): print('')
elif torch.version.cuda is None: print(f'this torch {torch.__version__} is a CPU-only build')
else: print(f'torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU: none present, or its driver is missing or older than CUDA {torch.version.cuda}')")
if [ "$PROFILE" = auto ] && [ -n "$CUDA_WHY" ] && command -v nvidia-smi >/dev/null 2>&1 \
   && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  echo "[run_all] nvidia-smi lists a GPU but $CUDA_WHY; fix that, or pick a profile with --profile" >&2
  exit 2
fi
if [[ "$PROFILE" == full* ]] && [ -n "$CUDA_WHY" ] && [ -z "${CIFAR_REPORT_ALLOW_CPU_FULL:-}" ]; then
  echo "[run_all] --profile $PROFILE is sized for a GPU, but $CUDA_WHY. Use --profile quick on this" \
       "machine, or set CIFAR_REPORT_ALLOW_CPU_FULL=1 to run it on the CPU anyway (days)." >&2
  exit 2
fi
if [ "$PROFILE" = auto ] && [ -z "$CUDA_WHY" ]; then
  # a GPU: the largest profile projected to fit --hours on it (FLOP count + a 1 s matmul probe); it says why
  PROFILE=$("$PY" bench/budget.py --choose --limit-hours "$HOURS") || {
    PROFILE=full; echo "[run_all] profile auto -> full (bench/budget.py --choose failed)"; }
elif [ "$PROFILE" = auto ]; then
  PROFILE=quick
  echo "[run_all] profile auto -> quick (CUDA not found); choose another with --profile smoke|quick|colab|full|full-long"
else
  echo "[run_all] profile $PROFILE"
fi
# an unknown profile stops here with the profiles the params files define, not in every chapter's notebook
"$PY" -c "import sys; from lib import params as P
try:
    [P.load(p.stem, sys.argv[1]) for p in sorted(P.PARAMS_DIR.glob('[0-9][0-9]_*.yaml'))]
except P.ParamError as err:
    sys.exit(f'[run_all] --profile: {err}')" "$PROFILE" || exit 2
# on a GPU: how long this profile will take on it, before hours are spent (FLOP count + a 1 s matmul probe)
if [ -z "$CUDA_WHY" ]; then
  start_err=$(mktemp)
  "$PY" bench/budget.py --profile "$PROFILE" --start-line --limit-hours "$HOURS" $YES 2>"$start_err"
  case $? in
    0) ;;
    3) cat "$start_err" >&2; rm -f "$start_err"; exit 2 ;;  # projected over --hours, and no --yes
    *) echo "[run_all] (no projected wall time: bench/budget.py --start-line failed)" ;;
  esac
  rm -f "$start_err"
fi
if [ -n "$GPUS" ] && [ -z "$CUDA_WHY" ]; then
  have=$("$PY" -c "import torch; print(torch.cuda.device_count())")
  if [ "$GPUS" -gt "$have" ]; then
    echo "[run_all] --gpus $GPUS, but this node has $have GPU(s); pass --gpus $have" >&2; exit 2
  fi
fi
export CIFAR_REPORT_OUTPUTS="${CIFAR_REPORT_OUTPUTS:-$ROOT/outputs}"
OUT="$CIFAR_REPORT_OUTPUTS/$PROFILE"
mkdir -p "$OUT/notebooks" "$OUT/html" "$OUT/logs"
# torchrun's arguments for --gpus: one node, or node NODE_RANK of NNODES meeting at MASTER
launch_on_nodes() {
  local nodes=(--standalone)
  [ "$NNODES" != 1 ] && nodes=(--nnodes "$NNODES" --node-rank "$NODE_RANK" --master-addr "${MASTER%:*}"
                               --master-port "${MASTER##*:}")
  local args=(--profile "$PROFILE")
  [ -n "$ONLY" ] && args+=(--only "$ONLY")
  [ -n "$DATA" ] && args+=(--data "$DATA")
  echo "[run_all] training the runs on $GPUS process(es) per node x $NNODES node(s)" \
       "(log: $OUT/logs/launch.log)"
  # on a CPU, each process uses as many threads as a notebook would (torchrun's default is 1): CPU float sums
  # depend on the thread count, and the same count trains the same weights as a single-process run
  local threads=()
  if [ -n "$CUDA_WHY" ] && [ -z "${OMP_NUM_THREADS:-}" ]; then
    threads=(OMP_NUM_THREADS="$("$PY" -c 'import torch; print(torch.get_num_threads())')")
  fi
  env "${threads[@]}" "$PY" -m torch.distributed.run "${nodes[@]}" --nproc-per-node "$GPUS" \
    -m lib.train.launch "${args[@]}" 2>&1 | tee -a "$OUT/logs/launch.log"
  return "${PIPESTATUS[0]}"
}
if [ "$NNODES" != 1 ] && [ "$NODE_RANK" != 0 ]; then  # node 0 holds the lock and renders the notebooks
  launch_on_nodes; rc=$?
  if [ "$rc" = 0 ]; then
    echo "[run_all] node $NODE_RANK: its share of the runs is trained; node 0 renders the notebooks into $OUT"
  else
    echo "[run_all] node $NODE_RANK: the launch failed (exit $rc); node 0's summary names the failed runs" >&2
  fi
  exit "$rc"
fi
# one writer per profile: a second run_all.sh or a notebook on the same profile stops, saying who holds it
"$PY" -m lib.storage lock "$OUT" $$ "./run_all.sh $ARGS" || exit 1
trap 'rm -rf "$OUT/.lock"' EXIT
export CIFAR_REPORT_LOCK="$OUT/.lock"
# torch.compile's kernels persist across runs of this profile: a rerun or a resumed chapter does not recompile
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$OUT/cache/inductor}"
export CIFAR_REPORT_PROGRESS=log   # one plain line per evaluation instead of progress-bar frames in the HTML
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning:matplotlib}"

failed=() done_=() times=() ran_logs=()
start_all=$(date +%s)
if [ -n "$GPUS" ]; then
  t0=$(date +%s)
  if launch_on_nodes; then
    echo "[run_all] every run trained ($(( $(date +%s) - t0 )) s); rendering the notebooks"
  else
    failed+=("training on $GPUS process(es) per node: some runs failed (the summary above," \
             "$OUT/logs/launch.log); their notebooks train them again")
  fi
fi
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  ch="$(basename "$nb" .ipynb)"
  if [ -n "$ONLY" ] && [[ ",$ONLY," != *",${ch:0:2},"* ]]; then continue; fi
  echo "[run_all] $ch: running (log: $OUT/logs/$ch.log)"
  ran_logs+=("$OUT/logs/$ch.log")
  t0=$(date +%s)
  tmp="$OUT/notebooks/.$ch.running.ipynb"
  args=(-p profile "$PROFILE")
  [ -n "$DATA" ] && args+=(-p data "$DATA")
  if "$PY" -m papermill "$nb" "$tmp" "${args[@]}" --cwd notebooks --no-progress-bar --log-output \
        >"$OUT/logs/$ch.log" 2>&1; then
    mv "$tmp" "$OUT/notebooks/$ch.ipynb"
    if "$PY" -m lib.report.export chapter "$OUT/notebooks/$ch.ipynb" "$OUT/html" >>"$OUT/logs/$ch.log" 2>&1; then
      done_+=("$ch ($(( $(date +%s) - t0 )) s)")
      times+=("$ch=$(( $(date +%s) - t0 ))=ok")
      echo "[run_all] $ch: done in $(( $(date +%s) - t0 )) s"
    else
      failed+=("$ch: HTML export failed, see $OUT/logs/$ch.log")
      times+=("$ch=$(( $(date +%s) - t0 ))=export failed")
    fi
  else
    failed+=("$ch: notebook failed after $(( $(date +%s) - t0 )) s; the partly executed notebook is $tmp, the log $OUT/logs/$ch.log")
    times+=("$ch=$(( $(date +%s) - t0 ))=failed")
    echo "[run_all] $ch: FAILED (previous outputs left untouched)"
    tail -n 15 "$OUT/logs/$ch.log" | sed 's/^/    /'
  fi
done
if [ -n "$GPUS" ]; then  # fit logs "<run>: step i/n" for every run it trains: none should be in a notebook
  trained_in=$(grep -lE ': step [0-9]+/[0-9]+ ' "${ran_logs[@]}" 2>/dev/null)
  if [ -z "$trained_in" ]; then echo "[run_all] no run trained in a notebook: the launch trained them all"
  else echo "[run_all] runs trained inside a notebook (not finished by the launch): $trained_in"; fi
fi
"$PY" -m lib.report.export finish "$OUT" >"$OUT/logs/export.log" 2>&1 \
  || failed+=("index page / report.html: see $OUT/logs/export.log")
echo "[run_all] report: $OUT/html/index.html ($(( $(date +%s) - start_all )) s)"
# run.json, after a whole-report run: how long each chapter took, and where (see scripts/readme.py record)
if [ -z "$ONLY" ]; then
  "$PY" - "$OUT/run.json" "$PROFILE" "$(( $(date +%s) - start_all ))" "./run_all.sh $ARGS" "${times[@]}" \
    <<'EOF' || echo "[run_all] could not write $OUT/run.json" >&2
import json, subprocess, sys
path, profile, seconds, command, *times = sys.argv[1:]
ctx = json.loads(subprocess.run([sys.executable, "scripts/readme.py", "context", command],
                                capture_output=True, text=True, check=True).stdout)
chapters = {t.split("=")[0]: int(t.split("=")[1]) for t in times}
status = {t.split("=")[0]: t.split("=", 2)[2] for t in times}
run = {"profile": profile, "seconds": int(seconds), "chapters": chapters, "status": status, **ctx}
open(path, "w").write(json.dumps(run, indent=1) + "\n")
EOF
fi
for d in "${done_[@]}"; do echo "  ok      $d"; done
if [ ${#failed[@]} -gt 0 ]; then
  for f in "${failed[@]}"; do echo "  FAILED  $f"; done
  exit 1
fi
