#!/usr/bin/env bash
# The bench commands whose numbers are quoted in weights/README.md and the closing notes.
# Two streams of one CPU thread each (this project's machine has 2 cores): `bench/run_all.sh a`
# (grey) and `bench/run_all.sh b` (colour, OOD, reliability, engine); no argument runs both.
# Results: bench/results/*.json, logs in bench/results/logs/.
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
mkdir -p bench/results/logs
stream_a() {
  python bench/denoise.py --sets BSD68,Set12 --peer-images 12 --record
  python bench/restore.py --sets Set12 --tasks sr4,sr4_noisy,inpaint50,inpaint80,deblur --images 6 --steps 100 --name restore-set12
  python bench/uncertainty.py --images 01.png,02.png,05.png,08.png --strides 1,2 --smooth 1,2
  python bench/evaluate.py --sets Set12 --images 6
}
stream_b() {
  python bench/denoise.py --sets CBSD68 --sigmas 25 --peer-images 8 --out denoise-cbsd68 --record
  python bench/restore.py --sets CBSD68 --tasks sr4,colorize --images 4 --steps 100 --name restore-cbsd68
  python bench/ood.py --max-train 150
  python bench/reliability.py
  python bench/engine.py --images 5
}
stream_c() {  # session 2: Noise2Score models, restore with averaged samples, the 2048² memory run
  python bench/noise2score.py --sets BSD68,Set12 --configs gaussian:25,poisson:0.01,gamma:100 --peer-images 12 \
    --grid-models runs/n2s-gaussian15.safetensors,runs/n2s-gaussian50.safetensors,runs/n2s-poisson005.safetensors,runs/n2s-gamma50.safetensors
  python bench/restore.py --sets Set12 --tasks inpaint80 --images 6 --steps 100 --samples 2 --name restore-set12-inpaint80-samples2
  python bench/restore.py --sets none --big 2048 --name restore-big
  python bench/ood.py --configs grey --out ood-grey-exp
}
case "${1:-all}" in
  c) stream_c > bench/results/logs/stream-c.log 2>&1 ;;
  a) stream_a > bench/results/logs/stream-a.log 2>&1 ;;
  b) stream_b > bench/results/logs/stream-b.log 2>&1 ;;
  *) stream_a > bench/results/logs/stream-a.log 2>&1 & stream_b > bench/results/logs/stream-b.log 2>&1 & wait ;;
esac
