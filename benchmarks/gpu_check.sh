#!/usr/bin/env bash
# The GPU check: one command for a lent GPU machine (no network, torch already installed).
#
#   bash benchmarks/gpu_check.sh          # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry    # the whole script on the CPU at tiny sizes (or GPU_CHECK_DRY=1)
#
# Sections, each with a time cap, all under GPU_CHECK_BUDGET seconds (default 420, under the
# 8 minutes asked for): the per-step speed of the paper's B at 256x256, batch 1 and 32, under
# every precision and fast path (bench_fast_paths.py); training images/s (bench_training.py,
# also the real training loop); lucidrains' med-seg-diff-pytorch side by side when it is
# importable (bench_vs_lucidrains.py); the default model as the widget runs it
# (bench_sampling.py); the CUDA tests; and, with the time left, torch.compile's speed and
# its start-up cost (the break-even). JSON goes to benchmarks/results/ and to $OUT; last,
# recommend_defaults.py prints the defaults and goals the numbers support.
#
# The machine has no network: nothing is installed. pytest runs with -o filterwarnings=default:
# the project's warning filters name pydantic (a napari dependency), which that image lacks. The peer and the pure-Python packages
# the GPU image lacks (platformdirs, beartype) come in benchmarks/.peer_site, made here with
#   python -m pip install --no-deps --target benchmarks/.peer_site \
#       med-seg-diff-pytorch==0.3.3 beartype einops tqdm platformdirs
# and carried along (it is ignored by git).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=${GPU_CHECK_DRY:-0}
[[ "${1:-}" == "--dry" ]] && DRY=1
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/benchmarks/results/gpu_check_out}
mkdir -p "$OUT" "$ROOT/benchmarks/results"
export PYTHONPATH="$ROOT:$ROOT/training${PYTHONPATH:+:$PYTHONPATH}"
[[ -d "$ROOT/benchmarks/.peer_site" ]] && export PYTHONPATH="$PYTHONPATH:$ROOT/benchmarks/.peer_site"
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
LOG="$OUT/gpu_check.log"
: >"$LOG"

BUDGET=${GPU_CHECK_BUDGET:-420}
if [[ $DRY == 1 ]]; then
    BUDGET=${GPU_CHECK_BUDGET:-3000}  # shared 2-core CPUs: slow, but tiny sizes
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # a correctness run: one thread spins least on a busy CPU
    DRYFLAG=(--dry)
    SUFFIX=_dry
else
    DRYFLAG=()
    SUFFIX=
fi
START=$(date +%s)

say() { echo "== $* ($(($(date +%s) - START)) s)" | tee -a "$LOG"; }

# seconds for a section: its own cap, or what is left of the budget if less
cap() {
    local left=$((BUDGET - ($(date +%s) - START)))
    ((left < $1)) && echo $((left > 0 ? left : 0)) || echo "$1"
}

# run NAME CAP COMMAND...: a section under `timeout`, its output logged; a failure is logged, not fatal
run() {
    local name=$1 seconds
    seconds=$(cap "$2")
    shift 2
    if ((seconds < 10)); then
        say "$name: skipped, the budget is spent"
        return
    fi
    say "$name (cap ${seconds} s): $*"
    (cd "$ROOT/benchmarks" && timeout -k 10 "$seconds" "$@") >>"$LOG" 2>&1
    local code=$?
    say "$name: exit $code"
}

collect() {
    for name in "$@"; do
        [[ -f "$ROOT/benchmarks/results/$name$SUFFIX.json" ]] && cp "$ROOT/benchmarks/results/$name$SUFFIX.json" "$OUT/"
    done
}

say "gpu_check start, dry=$DRY, budget ${BUDGET} s"
{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; } >>"$LOG"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" >>"$LOG" 2>&1

if [[ $DRY == 1 ]]; then
    run "fast paths" 900 $PY bench_fast_paths.py --dry --variants "fp32 eager" "bf16 graphs" "fp32 channels_last eager"
    collect fast_paths_cpu
    run "training" 600 $PY bench_training.py --dry --channels-last both --trainer
    collect training_cpu
    if $PY -c "import med_seg_diff_pytorch" 2>/dev/null; then
        run "peer" 900 $PY bench_vs_lucidrains.py --dry
        collect vs_lucidrains_cpu
    else
        say "peer: med-seg-diff-pytorch is not importable, skipped"
    fi
    run "sampling" 600 $PY bench_sampling.py --dry
    collect sampling_cpu
    run "tests" 900 $PY -m pytest -q -p no:cacheprovider -o filterwarnings=default "$ROOT/tests/training/test_fast_paths.py" -k "auto_precision or defaults_per_device or graph_wrapper"
else
    # 1. the goal's numbers first: B at 256x256, batch 1 and 32, every precision and fast path
    run "fast paths" 140 $PY bench_fast_paths.py --device cuda --configs B --batches 1 32 --repeats 5 --time-cap 120
    collect fast_paths_cuda
    # 2. training: B at batch 32 and 64, float32 / bf16, NCHW / NHWC; then the real loop at 32
    run "training" 90 $PY bench_training.py --device cuda --configs B --batch 32 64 --repeats 5 --channels-last both --trainer --trainer-steps 25 --time-cap 60
    collect training_cuda
    # 3. the peer, same process, alternating
    if $PY -c "import med_seg_diff_pytorch" 2>/dev/null; then
        run "peer" 100 $PY bench_vs_lucidrains.py --device cuda --pairs B-256 S-256 --step-batch 1 32 --train-batch 32 --repeats 3 --time-cap 80
        collect vs_lucidrains_cuda
    else
        say "peer: med-seg-diff-pytorch is not importable, skipped"
    fi
    # 4. the shipped default model as the widget runs it (first press and later ones)
    run "sampling" 45 $PY bench_sampling.py --device cuda --plans ddim:3 ddpm:100 --ensembles 1 5 --repeats 3
    collect sampling_cuda
    # 5. the tests that touch CUDA
    run "tests" 90 $PY -m pytest -q -p no:cacheprovider -o filterwarnings=default -v "$ROOT/tests/training/test_fast_paths.py" "$ROOT/tests/training/test_segmenter.py" "$ROOT/tests/training/test_mixed_precision.py" "$ROOT/tests/training/test_trainer.py" -m "not slow"
    # 6. with what is left: torch.compile at batch 1 (its first run is the compile: the break-even)
    run "compile" 150 $PY bench_fast_paths.py --device cuda --configs B --batches 1 --repeats 5 --variants "bf16 compile+graphs" --name compile_cuda
    collect compile_cuda
fi
say "gpu_check done"
(cd "$ROOT/benchmarks" && $PY recommend_defaults.py --device "$([[ $DRY == 1 ]] && echo cpu || echo cuda)" --suffix "$SUFFIX") 2>&1 | tee -a "$LOG"
grep -E "ms/step|images/s|speed|passed|failed|error|Error|skipped|exit" "$LOG" | tail -60
