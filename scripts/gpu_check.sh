#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: train with the torch backend on the GPU (20 steps, 1 process, then every
# GPU when there are several), the DDP benchmark on the GPU, and the MindSpore backend on the GPU (or its
# one-line error where its GPU plugin cannot load), writing one summary file. Finishes in under 8 minutes
# (each step gets what is left of a 7.5-minute budget).
#
#   bash scripts/gpu_check.sh [SUMMARY]        # default: outputs/gpu_check/summary.txt
set -euo pipefail

cd "$(dirname "$0")/.."
SUMMARY=${1:-outputs/gpu_check/summary.txt}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BUDGET=450
START=$SECONDS
PY=${PYTHON:-python}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "error: no NVIDIA GPU here (nvidia-smi is missing or sees no GPU): run this on a GPU machine" >&2
    exit 2
fi
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)
GPUS=$(nvidia-smi -L | wc -l)
mkdir -p "$(dirname "$SUMMARY")"
{
    echo "gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "card: $CARD (x$GPUS)"
    echo "torch: $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -n 1)"
} > "$WORK/summary"

left() { echo $(( BUDGET - (SECONDS - START) )); }

# step NAME LIMIT COMMAND...: run with a timeout (the smaller of LIMIT and what is left), record the outcome
step() {
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS budget; budget=$(left)
    (( budget < limit )) && limit=$budget
    if (( limit < 20 )); then
        echo "$name: skipped (time budget spent)" >> "$WORK/summary"; return 0
    fi
    local status=0
    (cd "$WORK" && PYTHONPATH="$OLDPWD" timeout "$limit" "$@") > "$WORK/$name.out" 2> "$WORK/$name.err" || status=$?
    local took=$(( SECONDS - t0 ))
    if (( status == 0 )); then
        echo "$name: ok (${took}s)" >> "$WORK/summary"
    elif (( status == 124 )); then
        echo "$name: timed out after ${limit}s" >> "$WORK/summary"
    else
        echo "$name: failed, status $status (${took}s): $(grep -E '^error:|Error' "$WORK/$name.err" | tail -n 1)" >> "$WORK/summary"
    fi
    grep -E '^(metrics|checkpoint):' "$WORK/$name.out" | sed 's/^/    /' >> "$WORK/summary" || true
    return 0
}

ROOT=$PWD
FIT=(--data_path "$ROOT/data/bundled" --backbone clip_vitb32_384 --num_features 256 --batch_size 4 --base_size 520
     --crop_size 480 --max_steps 20 --no-pretrained --seed 0 --no_resume --base_lr 0.004 --accelerator gpu)
step torch_fit_1gpu 150 $PY "$ROOT/train_lseg.py" --exp_name gpu_torch_1 --backend torch --devices 1 "${FIT[@]}"
if (( GPUS > 1 )); then
    step "torch_fit_${GPUS}gpus" 150 $PY "$ROOT/train_lseg.py" --exp_name gpu_torch_all --backend torch --devices "$GPUS" "${FIT[@]}"
    PROCS="1,$GPUS"
else
    PROCS=1
fi
step bench_torch_gpu 120 $PY -m lang_seg.tools.bench_ddp --backends torch --accelerator gpu --processes "$PROCS" \
    --backbone clip_vitb32_384 --num_features 256 --batch_size 4 --crop_size 480 --base_size 520 --steps 10
sed 's/^/    /' "$WORK/bench_torch_gpu.out" >> "$WORK/summary" || true
step mindspore_fit_1gpu 150 $PY "$ROOT/train_lseg.py" --exp_name gpu_ms_1 --backend mindspore --devices 1 "${FIT[@]}"
echo "total: $(( SECONDS - START ))s" >> "$WORK/summary"

cp "$WORK/summary" "$SUMMARY"
cat "$SUMMARY"
