#!/usr/bin/env bash
# The GPU checks of issue 8 in ONE device call (a session that is lent a GPU gets ~15 minutes of
# device time in all, one command at most 10):
#   1. benchmarks/train_speed.py --device cuda --amp: step times of +TFAM, +GIRL and full against
#      ERM (target full/ERM <= 1.25) and ours against the reference ST-GCN;
#   2. the synthetic GPU recipe (configs/ablate_synth.yaml, 3 folds x 3 seeds): ERM, +TFAM, +GIRL,
#      full and ERM at twice the epochs (METHOD.md's convergence check), PROCS processes sharing one
#      OUT (runs are locked, seed-major, so whole seeds finish first), stopped at a deadline; then
#      `piumr ablate --summary-only` writes the tables of what finished.
#
# From the repository root, through the device tool (`.whl`: wheels the device image lacks, see
# benchmarks/README.md, "gpu_session.sh"):
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=590)
# The real dev benchmark instead (its imported store travels; the model is tiny, so more processes):
#   run(command="CONFIG=configs/ablate_signs_dev.yaml SEEDS=0,1 PROCS=8 VARIANTS=erm,aug,tfam,girl,full,erm-2x
#       EXTRA='--epochs 240 --girl-warmup 80 --girl-ramp 48' bash benchmarks/gpu_session.sh", carry=[".whl", "artifacts/keypoints/signs_dev"])
# A dry run of the plumbing on this CPU machine (tiny sizes, ~3 minutes):
#   DEVICE=cpu BUDGET_S=150 OUT=/tmp/gpu_dry bash benchmarks/gpu_session.sh
# Everything comes back in $OUT (8 files at most: the device tool's limit).
set -u
OUT=${OUT:-artifacts/gpu_session}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-450}          # seconds from the start after which training stops
PROCS=${PROCS:-4}                  # ablate processes on the one GPU (the model is small)
VARIANTS=${VARIANTS:-erm,tfam,girl,full,erm-2x}
CONFIG=${CONFIG:-configs/ablate_synth.yaml}   # or configs/ablate_signs_dev.yaml: carry artifacts/keypoints/signs_dev
SEEDS=${SEEDS:-0,1,2}                         # a count (3) or a comma list (0,1 / 0,)
EXTRA=${EXTRA:-}                              # more ablate options for every run, e.g. "--epochs 240"
ABL=${ABL:-/tmp/piumr_gpu_ablation}
START=$(date +%s)
mkdir -p "$OUT" "$ABL"
OUT_ABS=$(cd "$OUT" && pwd)
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
export PYTHONPATH=$PWD
if ! $PY -c "import pydantic" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then   # the device image lacks it
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu_session: could not install the wheels in .whl" >&2; exit 1; }
    export PYTHONPATH=/tmp/site:$PWD
fi
log() { echo "$(date +%H:%M:%S) gpu_session: $*" | tee -a "$OUT/session.log"; }

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/session.log" 2>&1
    SPEED_ARGS=(--device cuda --amp --repeats 12)
    TRAIN_ARGS=()
else   # the dry run: tiny sizes, the same plumbing
    SPEED_ARGS=(--quick)
    TRAIN_ARGS=(--epochs 1 --max-steps-per-epoch 2 --num-workers 0 --folds 2 --base-channels 4 --num-blocks 3
                --clip-len 16 --test-clips 1)
fi
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'numpy', numpy.__version__)" \
    2>&1 | tee -a "$OUT/session.log"

log "1/2 train_speed ${SPEED_ARGS[*]}"
timeout 150 $PY benchmarks/train_speed.py "${SPEED_ARGS[@]}" > "$OUT/train_speed.txt" 2>&1
log "train_speed exit $? ($(grep -c . "$OUT/train_speed.txt") lines)"

# the one ablation, for the training processes and the summary alike
ABLATE=(-m cli.main ablate --config "$CONFIG" -o "$ABL" --device "$DEVICE" --variants "$VARIANTS"
        --seeds "$SEEDS" "${TRAIN_ARGS[@]}" $EXTRA)
ablate() {   # one ablate process, stopped at the deadline
    local left=$(( START + BUDGET_S - $(date +%s) ))
    [ "$left" -gt 10 ] || return 0
    timeout --signal=TERM "$left" $PY "${ABLATE[@]}"
}
log "2/2 ablation ($VARIANTS, $PROCS processes) into $ABL, deadline ${BUDGET_S}s"
ablate > "$ABL/proc1.out" 2>&1 &
FIRST=$!
for _ in $(seq 120); do   # the first process generates the synthetic store; the others start once it is there
    grep -q "ablation: " "$ABL/ablate.log" 2>/dev/null && break
    kill -0 "$FIRST" 2> /dev/null || { log "the first ablate process ended early: $(tail -n 1 "$ABL/proc1.out")"; break; }
    sleep 2
done
for i in $(seq 2 "$PROCS"); do
    ablate > "$ABL/proc$i.out" 2>&1 &
    sleep 3
done
wait
log "training stopped; summarising what finished"
$PY "${ABLATE[@]}" --summary-only > "$OUT/summary.txt" 2>&1
log "summary exit $?"
for f in ablation.md ablation_2x.md ablate.log; do
    [ -f "$ABL/$f" ] && cp "$ABL/$f" "$OUT/"
done
# every run's per-epoch history, test result and config, for the tables' second look
(cd "$ABL" && tar czf "$OUT_ABS/runs.tar.gz" ablation.csv ablation_runs.csv \
    runs/*/metrics.json runs/*/eval_test.json runs/*/config.yaml 2>/dev/null) || true
log "done in $(( $(date +%s) - START ))s; files: $(ls "$OUT" | tr '\n' ' ')"
