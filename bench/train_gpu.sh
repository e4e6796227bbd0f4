#!/usr/bin/env bash
# Train the bundled-model candidates on one GPU, all at once (sized for about 15 minutes of one H200).
#
#   SET=grey-rgb-n2s DATA=../shared/data MINUTES=6.5 MORE_MINUTES=3.6 OUT=runs/gpu bash bench/train_gpu.sh     (2026-11-26, f9117ff)
#   SET=grey-continue CHECK=0 DATA=../shared/data MINUTES=8.2 MORE_MINUTES=3.2 MORE_LR=1.5e-4 OUT=runs/gpu bash bench/train_gpu.sh  (2026-11-26, 29a7460)
#   SET=rgb CHECK=0 WORKERS=4 DATA=../shared/data MINUTES=8.3 OUT=runs/gpu bash bench/train_gpu.sh                  (colour prior)
#   SET=rgb-continue SMOKE=0 CHECK=0 WORKERS=6 DATA=../shared/data MINUTES=6 OUT=runs/gpu bash bench/train_gpu.sh  (colour prior, 128² patches)
#
# The jobs of a set (grey-rgb-n2s: five, grey-continue: three, rgb: three, rgb-continue: two) share the GPU, each with --lr-schedule time so that its cosine
# decay ends at --time-limit whatever the throughput. A 10-second smoke run of every job comes first and
# stops the script if any fails (device time is scarce; SMOKE=0 skips it). MORE_MINUTES > 0 then resumes every run from
# its checkpoint for that long with a warm restart at lr MORE_LR (default 3e-4; the bundled models were
# made with this second phase run as a second call of the same commands). Models and logs land in $OUT.
set -u
DATA=${DATA:-../shared/data}
MINUTES=${MINUTES:-7}
OUT=${OUT:-runs/gpu}
WORK=${WORK:-/tmp/scoretool-gpu}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
DEVICE=${DEVICE:-cuda}
SET=${SET:-grey-rgb-n2s}  # which set of jobs: grey-rgb-n2s, grey-continue, rgb or rgb-continue (below)
WORKERS=${WORKERS:-2}
ST="python3 -m scoretool train --device $DEVICE --workers $WORKERS --lr-schedule time --steps 1000000 --quiet"

[ "$SET" = grey-rgb-n2s ] && python3 bench/make_noisy.py "$DATA/Train400" -o "$WORK/train400-gaussian25" --noise gaussian --sigma 25 >/dev/null

jobs_grey-rgb-n2s() {  # five trainings at once: prior-gray, prior-rgb and n2s-gaussian-gray continued, two small grey priors from scratch
  local m=$1 d=$2 x=${3:-} L=${4:-}
  $ST "$DATA/Train400" -o "$d/prior-gray.safetensors" --clean --init weights/prior-gray.safetensors --batch 128 --lr 5e-4 --time-limit "$m" $x >"$d/prior-gray$L.log" 2>&1 &
  $ST "$DATA/Train400" -o "$d/prior-gray-w16.safetensors" --clean --widths 16,32,64,128 --blocks 2 --batch 128 --lr 1e-3 --time-limit "$m" $x >"$d/prior-gray-w16$L.log" 2>&1 &
  $ST "$DATA/Train400" -o "$d/prior-gray-w24.safetensors" --clean --widths 24,48,96,192 --blocks 1 --batch 128 --lr 1e-3 --time-limit "$m" $x >"$d/prior-gray-w24$L.log" 2>&1 &
  $ST "$WORK/train400-gaussian25" -o "$d/n2s-gaussian-gray.safetensors" --noisy --noise gaussian --sigma 25 --sigma-min 0.005 --sigma-max 0.1 --init weights/n2s-gaussian-gray.safetensors --batch 128 --lr 5e-4 --time-limit "$m" $x >"$d/n2s-gaussian-gray$L.log" 2>&1 &
  $ST "$DATA/CBSD432" -o "$d/prior-rgb.safetensors" --clean --init weights/prior-rgb.safetensors --patch 96 --batch 64 --lr 5e-4 --time-limit "$m" $x >"$d/prior-rgb$L.log" 2>&1 &
}

jobs_grey-continue() {  # the grey priors continued with 96² patches; three jobs (processes time-share a GPU, so fewer jobs = more steps each)
  local m=$1 d=$2 x=${3:-} L=${4:-}
  $ST "$DATA/Train400" -o "$d/prior-gray-fast.safetensors" --clean --init weights/prior-gray-fast.safetensors --patch 96 --batch 128 --lr 3e-4 --time-limit "$m" $x >"$d/prior-gray-fast$L.log" 2>&1 &
  $ST "$DATA/Train400" -o "$d/prior-gray-fast-distil.safetensors" --clean --init weights/prior-gray-fast.safetensors --teacher weights/prior-gray.safetensors --patch 96 --batch 128 --lr 3e-4 --time-limit "$m" $x >"$d/prior-gray-fast-distil$L.log" 2>&1 &
  $ST "$DATA/Train400" -o "$d/prior-gray.safetensors" --clean --init weights/prior-gray.safetensors --patch 96 --batch 128 --lr 2e-4 --time-limit "$m" $x >"$d/prior-gray$L.log" 2>&1 &
}

jobs_rgb() {  # colour prior: prior-rgb grown wider (nets.widen keeps its function at the start) and continued as it is
  local m=$1 d=$2 x=${3:-} L=${4:-}
  $ST "$DATA/CBSD432" -o "$d/prior-rgb-w64.safetensors" --clean --init weights/prior-rgb.safetensors --widths 64,128,256 --patch 96 --batch 64 --lr 3e-4 --time-limit "$m" $x >"$d/prior-rgb-w64$L.log" 2>&1 &
  $ST "$DATA/CBSD432" -o "$d/prior-rgb-w48.safetensors" --clean --init weights/prior-rgb.safetensors --widths 48,96,192 --patch 96 --batch 64 --lr 3e-4 --time-limit "$m" $x >"$d/prior-rgb-w48$L.log" 2>&1 &
  $ST "$DATA/CBSD432" -o "$d/prior-rgb.safetensors" --clean --init weights/prior-rgb.safetensors --patch 96 --batch 64 --lr 2e-4 --time-limit "$m" $x >"$d/prior-rgb$L.log" 2>&1 &
}

jobs_rgb-continue() {  # prior-rgb continued on 128² patches as it is, and with half the patches' channels reordered
  local m=$1 d=$2 x=${3:-} L=${4:-}
  $ST "$DATA/CBSD432" -o "$d/prior-rgb.safetensors" --clean --init weights/prior-rgb.safetensors --patch 128 --batch 64 --lr 2e-4 --time-limit "$m" $x >"$d/prior-rgb$L.log" 2>&1 &
  $ST "$DATA/CBSD432" -o "$d/prior-rgb-permute.safetensors" --clean --init weights/prior-rgb.safetensors --colour-permute --patch 128 --batch 64 --lr 2e-4 --time-limit "$m" $x >"$d/prior-rgb-permute$L.log" 2>&1 &
}

jobs_at() {  # $1 = minutes, $2 = folder for the models, $3 = extra options (each job's log: $4.log)
  mkdir -p "$2"
  "jobs_$SET" "$@"
  local failed=0 pid
  for pid in $(jobs -p); do wait "$pid" || failed=$((failed + 1)); done
  [ $failed = 0 ] || { echo "$failed TRAINING JOB(S) FAILED (logs in $2)"; tail -n 5 "$2"/*.log; exit 4; }
}

rm -rf "$WORK/smoke" "$WORK/main"  # no model of an earlier run on a warm machine can pass for this one's

if [ "${SMOKE:-1}" != 0 ]; then
  jobs_at 0.15 "$WORK/smoke"
  ok=1
  for f in "$WORK"/smoke/*.log; do
    m=${f%.log}.safetensors
    if [ ! -s "$m" ]; then ok=0; echo "SMOKE FAILED: $m"; tail -n 15 "$f"; fi
  done
  [ $ok = 1 ] || exit 3
  echo "smoke ok: $(ls "$WORK"/smoke/*.log | wc -l) jobs"
fi
[ "$DEVICE" = cpu ] || [ "${CHECK:-1}" = 0 ] || python3 bench/device_check.py --device "$DEVICE" 2>&1 | tee "$OUT/device_check.json"

jobs_at "$MINUTES" "$WORK/main"
MORE_MINUTES=${MORE_MINUTES:-0}
[ "$MORE_MINUTES" = 0 ] || jobs_at "$MORE_MINUTES" "$WORK/main" "--resume --lr ${MORE_LR:-3e-4}" "-more"
for f in "$WORK"/main/*.safetensors; do
  case $f in *.ckpt.safetensors) ;; *) cp "$f" "$OUT/" ;; esac
done
tail -n 3 "$WORK"/main/*.log >"$OUT/train.log"
python3 -m scoretool weights "$OUT"/*.safetensors | tee -a "$OUT/train.log"  # steps, σ range, data of each
